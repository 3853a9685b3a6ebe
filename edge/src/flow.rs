//! The request logic: cache lookup, origin fetch under a deadline, verification, then cache and
//! serve. Generic over [`Platform`], so it runs natively in tests and on Workers in production.

use prewarm_shared::Digest;

use crate::config::Config;
use crate::deadline::race;
use crate::decode::zstd_bounded;
use crate::error::EdgeError;
use crate::policy::{
    canonical_tag_body, check_len, check_origin_status, content_coding, encoded_object_headers,
    object_headers, object_plan, object_reply_headers, origin_request_headers, size_limit,
    tag_headers, verify_object, with_cache_status, CacheStatus, Coding, Headers, Plan,
    MAX_TAG_BODY_SIZE,
};
use crate::route::{route, Kind, Route};
use prewarm_shared::conditional::none_match;
use prewarm_shared::encoding::{accepts_zstd, worth_encoding};

/// What the request logic needs from the runtime: the edge cache, the origin, a timer.
///
/// # Contract
/// - `cache_get` never fails the request: an unreadable cache is reported as a miss (and logged
///   by the implementation), so the edge degrades to a proxy rather than to an error.
/// - `cache_put` stores after the reply is sent (`ctx.wait_until` on Workers) and is only ever
///   handed bytes that already passed verification.
/// - `read_body` stops with [`EdgeError::UpstreamTooLarge`] once more than `limit` bytes arrive.
#[allow(async_fn_in_trait)] // Workers is single-threaded: callers want no `Send` bound.
pub trait Platform {
    /// A response body the runtime can pass through without copying it into Wasm memory.
    type Body;
    async fn cache_get(&self, key: &str) -> Option<Cached<Self::Body>>;
    fn cache_put(&self, key: String, headers: Headers, bytes: &[u8]);
    /// GETs `url` from the origin with exactly `headers` (and whatever the runtime adds).
    async fn origin_get(
        &self,
        url: &str,
        headers: &Headers,
    ) -> Result<Upstream<Self::Body>, EdgeError>;
    async fn read_body(&self, body: Self::Body, limit: u64) -> Result<Vec<u8>, EdgeError>;
    async fn sleep(&self, ms: u64);
}

/// A cache hit: the stored body and, when known, its length.
#[derive(Debug)]
pub struct Cached<B> {
    pub size: Option<u64>,
    pub body: B,
}

/// The origin's answer before its body is read.
#[derive(Debug)]
pub struct Upstream<B> {
    pub status: u16,
    pub content_length: Option<u64>,
    /// The `Content-Encoding` field, all of its lines joined with `, `.
    pub content_encoding: Option<String>,
    pub body: B,
}

/// A reply body: nothing, bytes in hand, or a platform body passed straight through.
#[derive(Debug, PartialEq, Eq)]
pub enum Body<B> {
    Empty,
    Bytes(Vec<u8>),
    Pass(B),
}

/// What the adapter turns into a platform response.
#[derive(Debug)]
pub struct Reply<B> {
    pub status: u16,
    pub headers: Headers,
    pub body: Body<B>,
}

impl<B> Reply<B> {
    /// The JSON error reply, `{"error":{"code","message"}}` with the error's status and headers.
    pub fn from_error(err: &EdgeError) -> Self {
        let body = serde_json::to_vec(&err.body()).unwrap_or_default();
        Reply {
            status: err.status(),
            headers: err.headers(),
            body: Body::Bytes(body),
        }
    }

    fn from_plan(plan: Plan, mut bytes: Vec<u8>) -> Self {
        let body = match plan.body {
            None => Body::Empty,
            Some(span) if span.start == 0 && span.end >= bytes.len() => Body::Bytes(bytes),
            Some(span) => {
                bytes.truncate(span.end);
                Body::Bytes(bytes.split_off(span.start.min(bytes.len())))
            }
        };
        Reply {
            status: plan.status,
            headers: plan.headers,
            body,
        }
    }
}

/// One incoming request, as the adapter read it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub method: &'a str,
    /// The worker's own `scheme://host[:port]`, the base of cache keys.
    pub self_origin: &'a str,
    pub path: &'a str,
    pub range: Option<&'a str>,
    /// The `If-None-Match` field, all of its lines joined with `, ` as Fetch `Headers` does.
    pub if_none_match: Option<&'a str>,
    /// The `Accept-Encoding` field, joined the same way.
    pub accept_encoding: Option<&'a str>,
}

/// Answers one request. Routing errors come first, so a write is a 405 even on a misconfigured
/// edge; every other path needs a valid [`Config`].
pub async fn handle<P: Platform>(
    p: &P,
    config: Result<Config, EdgeError>,
    req: Incoming<'_>,
) -> Result<Reply<P::Body>, EdgeError> {
    let routed = route(req.method, req.path)?;
    let config = config?;
    let key = routed.route.cache_key(req.self_origin);
    match &routed.route {
        Route::Health => Ok(Reply {
            status: 200,
            headers: vec![
                ("content-type", "application/json".to_string()),
                ("cache-control", "no-store".to_string()),
            ],
            body: Body::Bytes(br#"{"status":"ok"}"#.to_vec()),
        }),
        Route::Object { kind, digest } => {
            let obj = Object {
                kind: *kind,
                digest,
                head: routed.head,
                range: req.range,
                if_none_match: req.if_none_match,
                // Only a full GET from a client that names zstd; HEAD and ranges are identity.
                zstd: !routed.head
                    && req.range.is_none()
                    && req.accept_encoding.is_some_and(accepts_zstd),
            };
            let keys = Keys {
                identity: key,
                zstd: routed.route.encoded_cache_key(req.self_origin),
            };
            object(p, &config, &routed.route, keys, obj).await
        }
        // The origin sends no ETag for a tag and ignores `If-None-Match` there; so does the edge.
        Route::Tag { .. } => tag(p, &config, &routed.route, key, routed.head).await,
    }
}

struct Object<'a> {
    kind: Kind,
    digest: &'a Digest,
    head: bool,
    range: Option<&'a str>,
    if_none_match: Option<&'a str>,
    /// Whether this request gets the zstd representation when the edge has one.
    zstd: bool,
}

/// The two cache entries of one object: identity bytes, and their zstd encoding if it paid.
struct Keys {
    identity: String,
    zstd: String,
}

impl Object<'_> {
    /// `304 Not Modified`: the headers a `200` would carry (ETag, the immutable Cache-Control),
    /// no body and so no `Content-Length`.
    fn not_modified<B>(&self, cache: CacheStatus) -> Reply<B> {
        Reply {
            status: 304,
            headers: object_reply_headers(object_headers(self.kind, self.digest), cache),
            body: Body::Empty,
        }
    }

    /// A `200` with the zstd representation.
    fn encoded<B>(&self, cache: CacheStatus, body: Body<B>) -> Reply<B> {
        Reply {
            status: 200,
            headers: object_reply_headers(encoded_object_headers(self.kind, self.digest), cache),
            body,
        }
    }
}

/// Serves a block or manifest: from the cache, else fetched, verified and cached.
///
/// Two representations may be cached, each under its own key: the identity bytes, always, and
/// the origin's zstd encoding of them when it sent one (the miss path asks for it). A full GET
/// from a client that names zstd gets the zstd entry when there is one; everything else (HEAD,
/// ranges, other clients, or no zstd entry) gets identity. Replies say `Vary: Accept-Encoding`.
///
/// A matching `If-None-Match` turns either path into a `304`. It is decided before `Range`
/// (RFC 9110 §13.2.2), so it wins over a range, even an unsatisfiable one, as at the origin.
///
/// The `304` is only ever sent for an object the edge knows exists: from a cache hit, or
/// after a miss has fetched and verified the object (and filled the cache) exactly as an
/// unconditional request would. The digest alone would fix *what* the client holds, but not
/// *whether* the origin has it: the origin answers `404` for a digest it lacks (never pushed
/// there, or deleted from its store, or the client's ETag came from another deployment), and a
/// `304` straight from the URL would claim otherwise. The price is one verified origin fetch
/// per object per cache, the same one the first plain `GET` pays. Forwarding the condition (or
/// a `HEAD`) would save that transfer once but leave the cache cold, so every later
/// conditional request would reach the origin again; this way they are all answered from the
/// cache alone.
async fn object<P: Platform>(
    p: &P,
    config: &Config,
    route: &Route,
    keys: Keys,
    obj: Object<'_>,
) -> Result<Reply<P::Body>, EdgeError> {
    let not_modified = obj.if_none_match.is_some_and(|f| none_match(f, obj.digest));
    if obj.zstd && !not_modified {
        if let Some(hit) = p.cache_get(&keys.zstd).await {
            return Ok(obj.encoded(CacheStatus::Hit, Body::Pass(hit.body)));
        }
    }
    // Identity is the object's own entry: a hit proves it exists (for a 304), and it serves
    // HEAD, ranges and every client that does not ask for zstd. With only identity cached, a
    // zstd client gets identity too: the edge never compresses.
    if let Some(hit) = p.cache_get(&keys.identity).await {
        if not_modified {
            // Present in the cache; its body is never read.
            return Ok(obj.not_modified(CacheStatus::Hit));
        }
        if obj.range.is_none() {
            // The common case streams straight from the cache, never entering Wasm memory.
            let mut headers =
                object_reply_headers(object_headers(obj.kind, obj.digest), CacheStatus::Hit);
            let body = if obj.head {
                if let Some(size) = hit.size {
                    headers.push(("content-length", size.to_string()));
                }
                Body::Empty
            } else {
                Body::Pass(hit.body)
            };
            return Ok(Reply {
                status: 200,
                headers,
                body,
            });
        }
        let bytes = p.read_body(hit.body, size_limit(obj.kind)).await?;
        let plan = plan(&obj, bytes.len(), CacheStatus::Hit)?;
        return Ok(Reply::from_plan(plan, bytes));
    }
    let fetched = fetch_object(p, config, route, &obj).await?;
    // Only verified bytes get here. The whole object is stored (a 206 cannot be cached), and
    // any range is then cut from the bytes in hand. The zstd bytes are stored beside them
    // under their own key, so later zstd clients get them from the cache.
    p.cache_put(
        keys.identity,
        object_headers(obj.kind, obj.digest),
        &fetched.identity,
    );
    if let Some(encoded) = &fetched.zstd {
        p.cache_put(
            keys.zstd,
            encoded_object_headers(obj.kind, obj.digest),
            encoded,
        );
    }
    if not_modified {
        return Ok(obj.not_modified(CacheStatus::Miss));
    }
    if let (true, Some(encoded)) = (obj.zstd, fetched.zstd) {
        return Ok(obj.encoded(CacheStatus::Miss, Body::Bytes(encoded)));
    }
    let plan = plan(&obj, fetched.identity.len(), CacheStatus::Miss)?;
    Ok(Reply::from_plan(plan, fetched.identity))
}

/// A verified object from the origin: its bytes, and the origin's zstd encoding of them when
/// the origin sent one that saves at least a tenth.
struct Fetched {
    identity: Vec<u8>,
    zstd: Option<Vec<u8>>,
}

/// Fetches a whole object, asking for zstd. A zstd body is decoded with a hard bound (the
/// object's size limit) and the decoded bytes must hash to the digest, exactly as identity
/// bytes must; a body that fails either is a 502 and nothing of it is kept.
async fn fetch_object<P: Platform>(
    p: &P,
    config: &Config,
    route: &Route,
    obj: &Object<'_>,
) -> Result<Fetched, EdgeError> {
    let limit = size_limit(obj.kind);
    let (coding, body) = fetch_checked(p, config, route, true, limit).await?;
    let fetched = match content_coding(coding.as_deref())? {
        Coding::Identity => Fetched {
            identity: body,
            zstd: None,
        },
        Coding::Zstd => {
            let identity =
                zstd_bounded(&body, limit).map_err(|source| EdgeError::UpstreamDecode {
                    what: route.describe(),
                    source,
                })?;
            let pays = worth_encoding(identity.len() as u64, body.len() as u64);
            Fetched {
                identity,
                zstd: pays.then_some(body),
            }
        }
    };
    verify_object(obj.kind, obj.digest, &fetched.identity)?;
    Ok(fetched)
}

fn plan(obj: &Object<'_>, len: usize, cache: CacheStatus) -> Result<Plan, EdgeError> {
    object_plan(obj.kind, obj.digest, len as u64, obj.range, obj.head, cache)
}

async fn tag<P: Platform>(
    p: &P,
    config: &Config,
    route: &Route,
    key: String,
    head: bool,
) -> Result<Reply<P::Body>, EdgeError> {
    let ttl = config.tag_ttl_seconds;
    if ttl > 0 {
        if let Some(hit) = p.cache_get(&key).await {
            let body = if head {
                Body::Empty
            } else {
                Body::Pass(hit.body)
            };
            let headers = with_cache_status(tag_headers(ttl), CacheStatus::Hit);
            return Ok(Reply {
                status: 200,
                headers,
                body,
            });
        }
    }
    let (_, raw) = fetch_checked(p, config, route, false, MAX_TAG_BODY_SIZE).await?;
    let body = canonical_tag_body(&raw)?;
    if ttl > 0 {
        p.cache_put(key, tag_headers(ttl), &body);
    }
    let headers = with_cache_status(tag_headers(ttl), CacheStatus::Miss);
    let body = if head { Body::Empty } else { Body::Bytes(body) };
    Ok(Reply {
        status: 200,
        headers,
        body,
    })
}

/// GETs `route` from the origin (asking for zstd if `zstd`) and reads at most `limit` bytes,
/// all under one deadline. Returns the body's `Content-Encoding` with its bytes. A zstd body
/// is held to the same `limit` as identity bytes: the origin sends one only when it is smaller.
async fn fetch_checked<P: Platform>(
    p: &P,
    config: &Config,
    route: &Route,
    zstd: bool,
    limit: u64,
) -> Result<(Option<String>, Vec<u8>), EdgeError> {
    let what = route.describe();
    let url = route.origin_url(&config.origin);
    let work = async {
        let upstream = p.origin_get(&url, &origin_request_headers(zstd)).await?;
        check_origin_status(upstream.status, &what)?;
        check_len(limit, &what, upstream.content_length)?;
        let body = p.read_body(upstream.body, limit).await?;
        Ok((upstream.content_encoding, body))
    };
    let ms = config.origin_timeout_ms;
    race(work, p.sleep(ms))
        .await
        .unwrap_or(Err(EdgeError::OriginTimeout { ms }))
}
