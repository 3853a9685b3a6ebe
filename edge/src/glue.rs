//! The Workers entry point: a thin adapter from `Request`/`Env`/`Cache`/`Fetch` to [`crate::flow`].

mod relay;

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use prewarm_shared::Digest;
use worker::js_sys::futures::JsFuture;
use worker::js_sys::{Function, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{
    console_error, console_warn, event, AbortSignal, Cache, Context, Delay, EncodeBody, Env, Fetch,
    Headers as JsHeaders, Method, Request, RequestInit, Response, ResponseBody, ResponseBuilder,
};

use crate::config::Config;
use crate::error::EdgeError;
use crate::flow::{handle, Body, Cached, Incoming, Platform, Relay, Reply, Upstream};
use crate::origins::{Memory, Place};
use crate::policy::{check_len, only_if_cached, Headers};

/// [`Platform`] on Cloudflare Workers: the default Cache API cache, global `fetch`, `setTimeout`,
/// the runtime's SHA-256 (`crypto.subtle`, `crypto.DigestStream`) and its streams.
struct Workers<'a> {
    ctx: &'a Context,
    cache: Cache,
}

thread_local! {
    /// The failed-origin memory of this isolate (one thread; it lives as long as the isolate).
    static MEMORY: &'static Memory = Box::leak(Box::default());
}

fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok())
}

impl Platform for Workers<'_> {
    type Body = Response;

    async fn cache_get(&self, key: &str) -> Option<Cached<Response>> {
        match self.cache.get(key, false).await {
            Ok(Some(resp)) => Some(Cached {
                size: content_length(&resp),
                body: resp,
            }),
            Ok(None) => None,
            Err(e) => {
                console_error!("edge cache read failed for {key}, treating as a miss: {e}");
                None
            }
        }
    }

    fn cache_put(&self, key: String, headers: Headers, bytes: &[u8]) {
        let resp = match build(200, &headers, ResponseBody::Body(bytes.to_vec())) {
            Ok(resp) => resp,
            Err(e) => {
                console_error!("edge cache put skipped for {key}: {e}");
                return;
            }
        };
        // After the reply: the client never waits for the cache write.
        self.ctx.wait_until(async move {
            if let Err(e) = Cache::default().put(key.as_str(), resp).await {
                console_error!("edge cache put failed for {key}: {e}");
            }
        });
    }

    async fn origin_get(
        &self,
        url: &str,
        headers: &Headers,
        timeout_ms: u64,
    ) -> Result<Upstream<Response>, EdgeError> {
        let runtime = |e| EdgeError::Runtime(Box::new(e));
        let js = JsHeaders::new();
        for (name, value) in headers {
            js.set(name, value).map_err(runtime)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(js);
        let req = Request::new_with_init(url, &init).map_err(runtime)?;
        // The signal bounds the body too: a relayed body that stalls past the deadline errors,
        // and an errored body is never cached and never completes at the client.
        let ms = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
        let signal = AbortSignal::from(worker::web_sys::AbortSignal::timeout_with_u32(ms));
        let resp = Fetch::Request(req)
            .send_with_signal(&signal)
            .await
            .map_err(|e| {
                if signal.aborted() {
                    EdgeError::OriginTimeout { ms: timeout_ms }
                } else {
                    EdgeError::OriginUnreachable(Box::new(e))
                }
            })?;
        Ok(Upstream {
            status: resp.status_code(),
            content_length: content_length(&resp),
            content_encoding: resp.headers().get("content-encoding").ok().flatten(),
            body: resp,
        })
    }

    async fn read_body(&self, mut body: Response, limit: u64) -> Result<Vec<u8>, EdgeError> {
        let mut stream = match body.body() {
            ResponseBody::Empty => return Ok(Vec::new()),
            ResponseBody::Body(bytes) => {
                check_len(limit, "body", Some(bytes.len() as u64))?;
                return Ok(bytes.clone());
            }
            ResponseBody::Stream(_) if content_length(&body).is_some_and(|n| n <= limit) => {
                // Declared and within the limit: one `arrayBuffer()` and one copy into Wasm,
                // far cheaper than a promise per stream chunk. The length is checked again
                // after reading, and the digest check catches anything else.
                let bytes = body
                    .bytes()
                    .await
                    .map_err(|e| EdgeError::ReadFailed(Box::new(e)))?;
                check_len(limit, "body", Some(bytes.len() as u64))?;
                return Ok(bytes);
            }
            ResponseBody::Stream(_) => body
                .stream()
                .map_err(|e| EdgeError::ReadFailed(Box::new(e)))?,
        };
        let mut out = Vec::new();
        while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await
        {
            let chunk = chunk.map_err(|e| EdgeError::ReadFailed(Box::new(e)))?;
            check_len(limit, "body", Some((out.len() + chunk.len()) as u64))?;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    async fn digest(&self, bytes: &[u8]) -> Result<Digest, EdgeError> {
        native_digest(&Uint8Array::from(bytes))
            .await
            .map_err(|e| EdgeError::Runtime(Box::new(e)))
    }

    async fn relay(&self, body: Response, relay: Relay) -> Result<Option<Response>, EdgeError> {
        relay::relay(self.ctx, body, relay).await
    }

    async fn sleep(&self, ms: u64) {
        Delay::from(Duration::from_millis(ms)).await;
    }

    fn now_ms(&self) -> u64 {
        worker::js_sys::Date::now() as u64
    }

    fn memory(&self) -> &Memory {
        MEMORY.with(|m| *m)
    }

    fn warn(&self, line: String) {
        console_warn!("{line}");
    }
}

/// SHA-256 by the runtime (`crypto.subtle.digest`), not by Wasm code.
pub(crate) async fn native_digest(data: &Uint8Array) -> worker::Result<Digest> {
    let crypto = Reflect::get(&worker::js_sys::global(), &JsValue::from_str("crypto"))?;
    let subtle = Reflect::get(&crypto, &JsValue::from_str("subtle"))?;
    let digest: Function = Reflect::get(&subtle, &JsValue::from_str("digest"))?.dyn_into()?;
    let promise: Promise = digest
        .call2(&subtle, &JsValue::from_str("SHA-256"), data)?
        .dyn_into()?;
    digest_of(JsFuture::from(promise).await?)
}

/// A digest from the `ArrayBuffer` a native hasher resolved to.
pub(crate) fn digest_of(buffer: JsValue) -> worker::Result<Digest> {
    let raw: [u8; 32] = Uint8Array::new(&buffer)
        .to_vec()
        .try_into()
        .map_err(|_| worker::Error::RustError("SHA-256 gave other than 32 bytes".into()))?;
    Ok(Digest::from_bytes(raw))
}

/// Builds a platform response from a status, a header list and a body. A body that carries a
/// `Content-Encoding` is already encoded (the origin's verified zstd bytes): `encodeBody:
/// "manual"` keeps the runtime from encoding it a second time.
pub(crate) fn build(
    status: u16,
    headers: &Headers,
    body: ResponseBody,
) -> worker::Result<Response> {
    let js = JsHeaders::new();
    let mut encoded = false;
    for (name, value) in headers {
        encoded |= name.eq_ignore_ascii_case("content-encoding");
        js.set(name, value)?;
    }
    let builder = ResponseBuilder::new().with_status(status).with_headers(js);
    let builder = if encoded {
        builder.with_encode_body(EncodeBody::Manual)
    } else {
        builder
    };
    Ok(builder.body(body))
}

fn into_response(reply: Reply<Response>) -> worker::Result<Response> {
    let body = match reply.body {
        Body::Empty => ResponseBody::Empty,
        Body::Bytes(bytes) => ResponseBody::Body(bytes),
        Body::Pass(resp) => resp.into_parts().1,
    };
    build(reply.status, &reply.headers, body)
}

/// Where the request arrived: `request.cf.colo` and `request.cf.continent`, when present.
fn place_of(req: &Request) -> (Option<String>, Option<String>) {
    let Ok(cf) = Reflect::get(req.inner(), &JsValue::from_str("cf")) else {
        return (None, None);
    };
    if !cf.is_object() {
        return (None, None);
    }
    let field = |name: &str| {
        Reflect::get(&cf, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
    };
    (field("colo"), field("continent"))
}

/// The client's own `Accept-Encoding`. The header a worker sees is not the client's: Cloudflare
/// (and `wrangler dev`, like it) replaces it with the codings Cloudflare compresses with itself
/// (`br, gzip`) and keeps the client's field in `request.cf.clientAcceptEncoding`. The header
/// is read only when the request has no `cf` object at all.
fn client_accept_encoding(req: &Request) -> Option<String> {
    use worker::js_sys::Reflect;
    use worker::wasm_bindgen::JsValue;
    match Reflect::get(req.inner(), &JsValue::from_str("cf")) {
        Ok(cf) if cf.is_object() => Reflect::get(&cf, &JsValue::from_str("clientAcceptEncoding"))
            .ok()
            .and_then(|v| v.as_string()),
        _ => req.headers().get("accept-encoding").ok().flatten(),
    }
}

async fn respond(req: &Request, env: &Env, ctx: &Context) -> Reply<Response> {
    let url = match req.url() {
        Ok(url) => url,
        Err(e) => return Reply::from_error(&EdgeError::Runtime(Box::new(e))),
    };
    let method = req.method().to_string();
    let range = req.headers().get("range").ok().flatten();
    let if_none_match = req.headers().get("if-none-match").ok().flatten();
    let accept_encoding = client_accept_encoding(req);
    let only_if_cached = req
        .headers()
        .get("cache-control")
        .ok()
        .flatten()
        .is_some_and(|v| only_if_cached(&v));
    let (colo, continent) = place_of(req);
    // A secret and a var are both plain strings to the worker; secrets are read first.
    let config = Config::from_vars(|name| {
        env.secret(name)
            .or_else(|_| env.var(name))
            .ok()
            .map(|v| v.to_string())
    });
    let platform = Workers {
        ctx,
        cache: Cache::default(),
    };
    let incoming = Incoming {
        method: &method,
        self_origin: &url.origin().ascii_serialization(),
        path: url.path(),
        range: range.as_deref(),
        if_none_match: if_none_match.as_deref(),
        accept_encoding: accept_encoding.as_deref(),
        only_if_cached,
        place: Place {
            colo: colo.as_deref(),
            continent: continent.as_deref(),
        },
    };
    match handle(&platform, config, incoming).await {
        Ok(reply) => reply,
        Err(err) => {
            if err.status() >= 500 {
                console_error!("{method} {}: {}", url.path(), err.log_line());
            }
            Reply::from_error(&err)
        }
    }
}

/// The fetch handler. Every outcome is an HTTP response with a JSON error body; it returns
/// `Err` (a thrown exception) only if even a plain 500 cannot be built.
#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let reply = respond(&req, &env, &ctx).await;
    into_response(reply).or_else(|e| {
        console_error!("building the response failed: {e}");
        Response::error(
            "{\"error\":{\"code\":\"internal\",\"message\":\"internal error at the edge\"}}",
            500,
        )
    })
}
