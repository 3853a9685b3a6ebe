//! The relayed miss on Workers: the origin's body is teed inside the runtime to the native
//! hasher (`crypto.DigestStream`), to the cache and to the client, so no byte of it is copied
//! into Wasm memory. The cache's copy is put only once the digest matched. A streamed client's
//! copy flows at once except for its last chunk, which is released only for a body that
//! matched ([`HoldBack`]); the chunks pass through Wasm as handles, never as bytes.

use prewarm_shared::Digest;
use std::cell::RefCell;
use std::rc::Rc;
use worker::crypto::{DigestStream, DigestStreamAlgorithm};

use worker::js_sys::futures::{future_to_promise, JsFuture};
use worker::js_sys::{Array, Function, Object, Promise, Reflect};
use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::web_sys::{ReadableStream, TransformStream};
use worker::{console_error, Cache, Context, Response, ResponseBody};

use super::{build, digest_of, native_digest};
use crate::error::EdgeError;
use crate::flow::{Relay, RelayMode};

/// How a relayed body ended.
enum Outcome {
    Matched,
    Mismatch(Digest),
    /// The origin's body broke off (reset, or the deadline's abort signal).
    Broken(JsValue),
}

/// The client's copy of a streamed body: it flows as it arrives, except for the latest chunk,
/// which is held back until the digest is known. The last chunk is therefore released only
/// for a body that matched; for any other the stream errors instead. The body goes out with
/// the origin's `Content-Length` (a `FixedLengthStream`), so a client cut short by a
/// mismatch has fewer bytes than declared: a broken response whatever the proxies in between
/// do with the error.
struct HoldBack {
    /// What the client reads.
    readable: ReadableStream,
    /// Ends when the client's copy has gone through (or failed).
    done: JsFuture,
    /// Settles the verdict the last chunk waits for: `true` releases it.
    settle: Box<dyn FnOnce(bool)>,
    /// The callbacks the stream calls into; they must live until it has ended.
    _callbacks: (Closure<TransformFn>, Closure<FlushFn>),
}

type TransformFn = dyn FnMut(JsValue, JsValue) -> Result<(), JsValue>;
type FlushFn = dyn FnMut(JsValue) -> Promise;

fn enqueue(controller: &JsValue, chunk: &JsValue) -> Result<(), JsValue> {
    let enqueue: Function = Reflect::get(controller, &"enqueue".into())?.dyn_into()?;
    enqueue.call1(controller, chunk).map(drop)
}

impl HoldBack {
    fn new(source: &ReadableStream, len: u64) -> Result<HoldBack, JsValue> {
        let mut settle_fns = None;
        let verdict = Promise::new(&mut |resolve, reject| settle_fns = Some((resolve, reject)));
        let (resolve, reject) = settle_fns.ok_or("Promise::new did not call back")?;
        let held: Rc<RefCell<Option<JsValue>>> = Rc::default();
        let latest = held.clone();
        let transform = Closure::<TransformFn>::new(move |chunk: JsValue, controller: JsValue| {
            match latest.replace(Some(chunk)) {
                Some(previous) => enqueue(&controller, &previous),
                None => Ok(()),
            }
        });
        let flush = Closure::<FlushFn>::new(move |controller: JsValue| {
            let (held, verdict) = (held.clone(), verdict.clone());
            future_to_promise(async move {
                JsFuture::from(verdict).await?;
                if let Some(last) = held.borrow_mut().take() {
                    enqueue(&controller, &last)?;
                }
                Ok(JsValue::UNDEFINED)
            })
        });
        let transformer = Object::new();
        Reflect::set(&transformer, &"transform".into(), transform.as_ref())?;
        Reflect::set(&transformer, &"flush".into(), flush.as_ref())?;
        let held_back = TransformStream::new_with_transformer(&transformer)?;
        let sized = fixed_length_stream(len)?;
        let into_held = source.pipe_to(&held_back.writable());
        let out = held_back.readable().pipe_to(&sized.writable());
        Ok(HoldBack {
            readable: sized.readable(),
            done: JsFuture::from(Promise::all(&Array::of2(&into_held, &out))),
            settle: Box::new(move |matched| {
                let settled = if matched {
                    resolve.call0(&JsValue::UNDEFINED)
                } else {
                    let why = JsValue::from_str("the body does not match its digest");
                    reject.call1(&JsValue::UNDEFINED, &why)
                };
                if let Err(e) = settled {
                    console_error!("settling a held-back body failed: {e:?}");
                }
            }),
            _callbacks: (transform, flush),
        })
    }

    /// Releases or errors the last chunk, then waits for the client's copy to finish.
    async fn finish(self, matched: bool) {
        (self.settle)(matched);
        let _ = self.done.await;
    }
}

/// `new FixedLengthStream(len)`: a byte stream sent with `Content-Length: len`. An identity
/// stream where the runtime has none (the length is then not declared).
fn fixed_length_stream(len: u64) -> Result<TransformStream, JsValue> {
    let ctor = Reflect::get(&worker::js_sys::global(), &"FixedLengthStream".into())?;
    match ctor.dyn_into::<Function>() {
        Ok(ctor) => {
            let args = Array::of1(&JsValue::from_f64(len as f64));
            Ok(Reflect::construct(&ctor, &args)?.unchecked_into())
        }
        Err(_) => identity_stream(),
    }
}

/// `new IdentityTransformStream()`: a byte stream the runtime pumps natively. Any standard
/// `TransformStream` where the runtime has none.
fn identity_stream() -> Result<TransformStream, JsValue> {
    let ctor = Reflect::get(&worker::js_sys::global(), &"IdentityTransformStream".into())?;
    match ctor.dyn_into::<Function>() {
        Ok(ctor) => Ok(Reflect::construct(&ctor, &Array::new())?.unchecked_into()),
        Err(_) => TransformStream::new(),
    }
}

fn tee(stream: &ReadableStream) -> (ReadableStream, ReadableStream) {
    let both = stream.tee();
    (both.get(0).unchecked_into(), both.get(1).unchecked_into())
}

fn runtime(e: JsValue) -> EdgeError {
    EdgeError::Runtime(Box::new(worker::Error::from(e)))
}

/// See [`crate::flow::Platform::relay`].
pub(super) async fn relay(
    ctx: &Context,
    body: Response,
    relay: Relay,
) -> Result<Option<Response>, EdgeError> {
    let source = match body.body() {
        ResponseBody::Stream(stream) => stream.clone(),
        // No stream to tee (an empty body): hash what there is.
        ResponseBody::Empty | ResponseBody::Body(_) => return in_hand(ctx, body, relay).await,
    };
    let (to_hash, rest) = tee(&source);
    let hasher = DigestStream::new(DigestStreamAlgorithm::Sha256);
    let hashed = JsFuture::from(to_hash.pipe_to(hasher.raw()));
    let (to_cache, to_client) = match relay.mode {
        RelayMode::Drain => (rest, None),
        RelayMode::Stream | RelayMode::Verify => {
            let (a, b) = tee(&rest);
            (a, Some(b))
        }
    };
    let client_gate = match (relay.mode, &to_client) {
        (RelayMode::Stream, Some(client)) => {
            Some(HoldBack::new(client, relay.len).map_err(runtime)?)
        }
        _ => None,
    };

    // The cache's copy waits in the tee, inside the runtime, until the digest is known, and is
    // put only then. A put of a stream that later errors is not safe to rely on: under
    // `wrangler dev` the rejected put of a body aborted after its last byte still stored it.
    let expected = relay.expected;
    let (key, headers) = (relay.key.clone(), relay.headers.clone());
    let verdict = async move {
        let outcome = match hashed.await {
            Err(e) => Outcome::Broken(e),
            Ok(_) => match hasher.digest().await {
                Err(e) => Outcome::Broken(e.into()),
                Ok(raw) => match digest_of(raw.into()) {
                    Ok(d) if d == expected => Outcome::Matched,
                    Ok(d) => Outcome::Mismatch(d),
                    Err(e) => Outcome::Broken(e.into()),
                },
            },
        };
        if !matches!(outcome, Outcome::Matched) {
            cancel(Some(to_cache));
            return (outcome, None);
        }
        let put =
            build(200, &headers, ResponseBody::Stream(to_cache)).map(|stored| put(key, stored));
        if let Err(e) = &put {
            console_error!("edge cache put skipped: {e}");
        }
        (outcome, put.ok())
    };

    match (relay.mode, client_gate, to_client) {
        (RelayMode::Stream, Some(gate), _) => {
            let readable = gate.readable.clone();
            let key = relay.key;
            ctx.wait_until(async move {
                let (outcome, put) = verdict.await;
                gate.finish(matches!(outcome, Outcome::Matched)).await;
                if let Some(put) = put {
                    put.await;
                }
                match outcome {
                    Outcome::Matched => {}
                    Outcome::Mismatch(actual) => {
                        let err = EdgeError::Integrity { expected, actual };
                        console_error!("{key}: client body aborted: {}", err.log_line());
                    }
                    Outcome::Broken(e) => {
                        console_error!("{key}: origin body broke off, client body aborted: {e:?}");
                    }
                }
            });
            let reply = build(200, &Vec::new(), ResponseBody::Stream(readable))
                .map_err(|e| EdgeError::Runtime(Box::new(e)))?;
            Ok(Some(reply))
        }
        (_, _, client) => match verdict.await {
            (Outcome::Matched, put) => {
                if let Some(put) = put {
                    // After the reply: the client never waits for the cache write.
                    ctx.wait_until(put);
                }
                client
                    .map(|c| build(200, &Vec::new(), ResponseBody::Stream(c)))
                    .transpose()
                    .map_err(|e| EdgeError::Runtime(Box::new(e)))
            }
            (Outcome::Mismatch(actual), _) => {
                cancel(client);
                Err(EdgeError::Integrity { expected, actual })
            }
            (Outcome::Broken(e), _) => {
                cancel(client);
                Err(EdgeError::ReadFailed(Box::new(worker::Error::from(e))))
            }
        },
    }
}

/// Puts a verified response into the default cache, for `ctx.wait_until`.
async fn put(key: String, stored: Response) {
    if let Err(e) = Cache::default().put(key.as_str(), stored).await {
        console_error!("edge cache put failed for {key}: {e}");
    }
}

fn cancel(stream: Option<ReadableStream>) {
    if let Some(stream) = stream {
        let _ = stream.cancel();
    }
}

/// A body the runtime already holds as bytes: hash them natively, then cache and hand them on.
async fn in_hand(
    ctx: &Context,
    mut body: Response,
    relay: Relay,
) -> Result<Option<Response>, EdgeError> {
    let bytes = body
        .bytes()
        .await
        .map_err(|e| EdgeError::ReadFailed(Box::new(e)))?;
    let array = worker::js_sys::Uint8Array::from(bytes.as_slice());
    let actual = native_digest(&array)
        .await
        .map_err(|e| EdgeError::Runtime(Box::new(e)))?;
    if actual != relay.expected {
        return Err(EdgeError::Integrity {
            expected: relay.expected,
            actual,
        });
    }
    let stored = build(200, &relay.headers, ResponseBody::Body(bytes.clone()))
        .map_err(|e| EdgeError::Runtime(Box::new(e)))?;
    let key = relay.key;
    ctx.wait_until(async move {
        if let Err(e) = Cache::default().put(key.as_str(), stored).await {
            console_error!("edge cache put failed for {key}: {e}");
        }
    });
    Ok((relay.mode != RelayMode::Drain)
        .then(|| Response::from_bytes(bytes).ok())
        .flatten())
}
