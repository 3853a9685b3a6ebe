//! The relayed miss on Workers: the origin's body is verified by the runtime's native SHA-256
//! and passed to the cache and the client without a byte of it being copied into Wasm memory.
//! By default it is read whole into the runtime and hashed with `crypto.subtle.digest`
//! ([`whole`]); with `STREAM_ABOVE_BYTES` a large body is teed to `crypto.DigestStream`, the
//! cache and the client, and the client's last chunk is held back until the digest matched
//! ([`streamed`]). In both, the cache gets the body only after the digest matched.

use prewarm_shared::Digest;
use std::cell::RefCell;
use std::rc::Rc;
use worker::crypto::{DigestStream, DigestStreamAlgorithm};

use worker::js_sys::futures::{future_to_promise, JsFuture};
use worker::js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::web_sys::{self, ReadableStream, TransformStream};
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
    match (relay.mode, body.body()) {
        (RelayMode::Stream, ResponseBody::Stream(stream)) => {
            let stream = stream.clone();
            streamed(ctx, &stream, relay)
        }
        _ => whole(ctx, body, relay).await,
    }
}

/// Verify or drain: the body is read whole into a runtime `ArrayBuffer` (never into Wasm
/// memory), hashed there with `crypto.subtle.digest`, and only then cached and handed on. Under
/// `wrangler dev` this cost about half the CPU of teeing the stream into a `DigestStream`
/// (docs/BENCHMARKS.md).
async fn whole(ctx: &Context, body: Response, relay: Relay) -> Result<Option<Response>, EdgeError> {
    let broke = |e: JsValue| EdgeError::ReadFailed(Box::new(worker::Error::from(e)));
    let buffer: ArrayBuffer = match body.body() {
        ResponseBody::Stream(stream) => {
            let resp =
                web_sys::Response::new_with_opt_readable_stream(Some(stream)).map_err(runtime)?;
            let promise = resp.array_buffer().map_err(runtime)?;
            JsFuture::from(promise)
                .await
                .map_err(broke)?
                .dyn_into()
                .map_err(runtime)?
        }
        ResponseBody::Body(bytes) => Uint8Array::from(bytes.as_slice()).buffer(),
        ResponseBody::Empty => ArrayBuffer::new(0),
    };
    let bytes = Uint8Array::new(&buffer);
    let actual = native_digest(&bytes)
        .await
        .map_err(|e| EdgeError::Runtime(Box::new(e)))?;
    if actual != relay.expected {
        return Err(EdgeError::Integrity {
            expected: relay.expected,
            actual,
        });
    }
    let stored = js_response(&relay.headers, &bytes).map_err(runtime)?;
    let key = relay.key;
    ctx.wait_until(async move {
        if let Err(e) = put_js(&key, &stored).await {
            console_error!("edge cache put failed for {key}: {e:?}");
        }
    });
    if relay.mode == RelayMode::Drain {
        return Ok(None);
    }
    let reply = js_response(&Vec::new(), &bytes).map_err(runtime)?;
    Ok(Some(Response::from(reply)))
}

/// A runtime response whose body is bytes already in the runtime: no copy through Wasm, and a
/// known length (`Content-Length`, not chunked) for the cache and the client.
fn js_response(
    headers: &crate::policy::Headers,
    bytes: &Uint8Array,
) -> Result<web_sys::Response, JsValue> {
    let js = web_sys::Headers::new()?;
    for (name, value) in headers {
        js.set(name, value)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(200);
    init.set_headers(&js);
    web_sys::Response::new_with_opt_buffer_source_and_init(Some(bytes), &init)
}

/// `caches.default.put(key, response)` with the runtime's response as it is: going through
/// `worker::Cache` would rebuild it around its body stream.
async fn put_js(key: &str, stored: &web_sys::Response) -> Result<(), JsValue> {
    let caches = Reflect::get(&worker::js_sys::global(), &"caches".into())?;
    let cache = Reflect::get(&caches, &"default".into())?;
    let put: Function = Reflect::get(&cache, &"put".into())?.dyn_into()?;
    let promise: Promise = put.call2(&cache, &key.into(), stored)?.dyn_into()?;
    JsFuture::from(promise).await.map(drop)
}

/// Stream (`STREAM_ABOVE_BYTES`): the client's first bytes do not wait for the origin's last.
/// The body is teed inside the runtime to a `crypto.DigestStream`, to the cache's copy (put
/// only once the digest matched, and cancelled otherwise) and to the client's copy, whose last
/// chunk is held back until then ([`HoldBack`]).
fn streamed(
    ctx: &Context,
    source: &ReadableStream,
    relay: Relay,
) -> Result<Option<Response>, EdgeError> {
    let (to_hash, rest) = tee(source);
    let hasher = DigestStream::new(DigestStreamAlgorithm::Sha256);
    let hashed = JsFuture::from(to_hash.pipe_to(hasher.raw()));
    let (to_cache, to_client) = tee(&rest);
    let gate = HoldBack::new(&to_client, relay.len).map_err(runtime)?;
    let readable = gate.readable.clone();
    let expected = relay.expected;
    let (key, headers) = (relay.key, relay.headers);
    // The cache's copy waits in the tee, inside the runtime, until the digest is known. A put
    // of a stream that later errors is not safe to rely on: under `wrangler dev` the rejected
    // put of a body aborted after its last byte still stored it.
    ctx.wait_until(async move {
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
        let matched = matches!(outcome, Outcome::Matched);
        let stored = if matched {
            build(200, &headers, ResponseBody::Stream(to_cache)).ok()
        } else {
            let _ = to_cache.cancel();
            None
        };
        gate.finish(matched).await;
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
        if let Some(stored) = stored {
            put(key, stored).await;
        }
    });
    let reply = build(200, &Vec::new(), ResponseBody::Stream(readable))
        .map_err(|e| EdgeError::Runtime(Box::new(e)))?;
    Ok(Some(reply))
}

/// Puts a verified response into the default cache, for `ctx.wait_until`.
async fn put(key: String, stored: Response) {
    if let Err(e) = Cache::default().put(key.as_str(), stored).await {
        console_error!("edge cache put failed for {key}: {e}");
    }
}
