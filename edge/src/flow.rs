//! The request logic: cache lookup, origin fetch under a deadline, verification, then cache and
//! serve. Generic over [`Platform`], so it runs natively in tests and on Workers in production.

use prewarm_shared::Digest;

use crate::config::Config;
use crate::deadline::race;
use crate::decode::zstd_bounded;
use crate::error::EdgeError;
use crate::origins::{fails_over, order, Memory, Place};
use crate::policy::{
    canonical_tag_body, check_len, check_origin_status, content_coding, encoded_object_headers,
    object_headers, object_plan, object_reply_headers, origin_request_headers, size_limit,
    tag_headers, verify_object, with_cache_status, CacheStatus, Coding, Headers, Plan,
    MAX_TAG_BODY_SIZE,
};
use crate::route::{route, Kind, Route};
use prewarm_shared::conditional::none_match;
use prewarm_shared::encoding::{accepts_zstd, worth_encoding};

/// What the request logic needs from the runtime: the edge cache, the origins, hashing, a
/// timer and a clock.
///
/// # Contract
/// - `cache_get` never fails the request: an unreadable cache is reported as a miss (and logged
///   by the implementation), so the edge degrades to a proxy rather than to an error.
/// - `cache_put` stores after the reply is sent (`ctx.wait_until` on Workers) and is only ever
///   handed bytes that already passed verification.
/// - `read_body` stops with [`EdgeError::UpstreamTooLarge`] once more than `limit` bytes arrive.
/// - `relay` commits its cache entry only if the body hashes to `relay.expected`, and never lets
///   a body that does not end a stream cleanly (see [`Relay`]).
/// - `origin_get` bounds the whole round trip, body included, by `timeout_ms`: a body that is
///   still arriving then errors (the caller races the headers against the same deadline).
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
        timeout_ms: u64,
    ) -> Result<Upstream<Self::Body>, EdgeError>;
    async fn read_body(&self, body: Self::Body, limit: u64) -> Result<Vec<u8>, EdgeError>;
    /// SHA-256 of bytes in hand (the runtime's native implementation on Workers).
    async fn digest(&self, bytes: &[u8]) -> Result<Digest, EdgeError>;
    /// Sends an origin body of known length into the cache and, depending on `relay.mode`, to
    /// the client, hashing it on the way, without the bytes passing through the request logic.
    /// Returns the client's body for [`RelayMode::Stream`] and [`RelayMode::Verify`], `None`
    /// for [`RelayMode::Drain`].
    ///
    /// # Errors
    /// [`EdgeError::Integrity`] for a body that hashes to another digest (never for `Stream`,
    /// whose status has gone out: the client's body errors instead), and
    /// [`EdgeError::ReadFailed`] for a body that broke off.
    async fn relay(&self, body: Self::Body, relay: Relay) -> Result<Option<Self::Body>, EdgeError>;
    async fn sleep(&self, ms: u64);
    /// Milliseconds since the epoch, for the memory of failed origins.
    fn now_ms(&self) -> u64;
    /// The failed-origin memory, kept as long as the platform keeps state (an isolate).
    fn memory(&self) -> &Memory;
    /// Logs something the client never sees (an origin that failed over).
    fn warn(&self, line: String);
}

/// How [`Platform::relay`] treats the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// Answer at once and stream: the client's body flows while it is hashed, and its end is
    /// held back until the digest matched. On a mismatch the client's body errors before it
    /// is complete: a client can never read a whole, well-formed 200 with wrong bytes. Only
    /// for bodies over `STREAM_ABOVE_BYTES`, when that is set.
    Stream,
    /// Hash first (the body waits in the runtime, never in Wasm), then answer; a mismatch is a
    /// clean 502, and a body that broke off can still be fetched from the next origin.
    Verify,
    /// Cache and hash only, no client body (HEAD, or a 304 on a miss).
    Drain,
}

/// One relay: what the body must hash to, how long it says it is, where it is cached.
#[derive(Debug, Clone)]
pub struct Relay {
    pub expected: Digest,
    pub len: u64,
    pub key: String,
    pub headers: Headers,
    pub mode: RelayMode,
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
    /// `Cache-Control: only-if-cached` (RFC 9111 §5.2.1.7): answer from the edge cache or
    /// `504`, never asking an origin.
    pub only_if_cached: bool,
    /// Where the request arrived, for choosing an origin.
    pub place: Place<'a>,
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
                only_if_cached: req.only_if_cached,
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
            let src = Source {
                config: &config,
                route: &routed.route,
                place: req.place,
            };
            object(p, &src, keys, obj).await
        }
        // The origin sends no ETag for a tag and ignores `If-None-Match` there; so does the edge.
        Route::Tag { .. } => {
            let src = Source {
                config: &config,
                route: &routed.route,
                place: req.place,
            };
            tag(p, &src, key, routed.head, req.only_if_cached).await
        }
    }
}

struct Object<'a> {
    kind: Kind,
    digest: &'a Digest,
    head: bool,
    only_if_cached: bool,
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
    src: &Source<'_>,
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
    if obj.only_if_cached {
        return Err(EdgeError::NotCached {
            what: obj.digest.to_string(),
        });
    }
    // A full identity GET, a HEAD and a 304 relay the origin's bytes through the runtime's own
    // streams and hasher, never through Wasm. Ranges and zstd clients need the bytes in hand
    // (to cut a range, to decode zstd), so they read them.
    let relay = obj.range.is_none() && (!obj.zstd || not_modified);
    let limit = size_limit(obj.kind);
    let want = if relay {
        Want::Relay {
            limit,
            relay: Relay {
                expected: *obj.digest,
                len: 0,
                key: keys.identity.clone(),
                headers: object_headers(obj.kind, obj.digest),
                mode: if obj.head || not_modified {
                    RelayMode::Drain
                } else {
                    RelayMode::Stream
                },
            },
        }
    } else {
        Want::Bytes { limit }
    };
    let ask_zstd = obj.zstd && !not_modified;
    let (coding, body) = match from_origins(p, src, ask_zstd, &want).await? {
        Got::Relayed { len, body } => {
            if not_modified {
                return Ok(obj.not_modified(CacheStatus::Miss));
            }
            let mut headers =
                object_reply_headers(object_headers(obj.kind, obj.digest), CacheStatus::Miss);
            let body = match body {
                Some(body) => Body::Pass(body),
                None => {
                    headers.push(("content-length", len.to_string()));
                    Body::Empty
                }
            };
            return Ok(Reply {
                status: 200,
                headers,
                body,
            });
        }
        Got::Bytes { coding, bytes } => (coding, bytes),
    };
    let fetched = verify_fetched(p, src.route, &obj, coding.as_deref(), body).await?;
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

/// Checks an object body read into memory. A zstd body is decoded with a hard bound (the
/// object's size limit) and the decoded bytes must hash to the digest, exactly as identity
/// bytes must; a body that fails either is a 502 and nothing of it is kept. The hash is the
/// platform's (native SHA-256 on Workers).
async fn verify_fetched<P: Platform>(
    p: &P,
    route: &Route,
    obj: &Object<'_>,
    coding: Option<&str>,
    body: Vec<u8>,
) -> Result<Fetched, EdgeError> {
    let limit = size_limit(obj.kind);
    let fetched = match content_coding(coding)? {
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
    let actual = p.digest(&fetched.identity).await?;
    verify_object(obj.kind, obj.digest, fetched.identity.len() as u64, actual)?;
    Ok(fetched)
}

fn plan(obj: &Object<'_>, len: usize, cache: CacheStatus) -> Result<Plan, EdgeError> {
    object_plan(obj.kind, obj.digest, len as u64, obj.range, obj.head, cache)
}

async fn tag<P: Platform>(
    p: &P,
    src: &Source<'_>,
    key: String,
    head: bool,
    only_if_cached: bool,
) -> Result<Reply<P::Body>, EdgeError> {
    let ttl = src.config.tag_ttl_seconds;
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
    if only_if_cached {
        return Err(EdgeError::NotCached {
            what: "this tag".to_string(),
        });
    }
    let want = Want::Bytes {
        limit: MAX_TAG_BODY_SIZE,
    };
    let raw = match from_origins(p, src, false, &want).await? {
        Got::Bytes { bytes, .. } => bytes,
        Got::Relayed { .. } => {
            let bug = std::io::Error::other("a tag body was relayed, not read");
            return Err(EdgeError::Runtime(Box::new(bug)));
        }
    };
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

/// What one request fetches, from which origins.
struct Source<'a> {
    config: &'a Config,
    route: &'a Route,
    place: Place<'a>,
}

/// What to do with an origin body once its headers are in.
enum Want {
    /// Read it into memory, at most `limit` bytes.
    Bytes { limit: u64 },
    /// Relay it ([`Platform::relay`]) if it is identity bytes of a declared length, within
    /// `limit`; otherwise read it as for `Bytes`. `relay.len` is filled in from the origin.
    Relay { limit: u64, relay: Relay },
}

impl Want {
    fn limit(&self) -> u64 {
        match self {
            Want::Bytes { limit } | Want::Relay { limit, .. } => *limit,
        }
    }
}

/// An origin body, read or relayed.
enum Got<B> {
    Bytes {
        /// The body's `Content-Encoding`.
        coding: Option<String>,
        bytes: Vec<u8>,
    },
    Relayed {
        len: u64,
        /// The client's body, unless the relay drained it.
        body: Option<B>,
    },
}

/// Tries the origins in [`order`] until one answers: on a connect error, a timeout, a 5xx or a
/// body that broke off ([`fails_over`]) it remembers the origin as down for
/// `origin_retry_after_ms` and tries the next. Any other outcome, a 404 or wrong bytes
/// included, is the answer. With every origin failing, the last failure is returned.
///
/// Blocks and manifests are verified against their digest whichever origin sent them. A tag
/// is the one answer origins can disagree on (one was pushed to before the other): the edge
/// takes the first origin in this order that answers, and caches that for `TAG_TTL_SECONDS`.
async fn from_origins<P: Platform>(
    p: &P,
    src: &Source<'_>,
    zstd: bool,
    want: &Want,
) -> Result<Got<P::Body>, EdgeError> {
    let config = src.config;
    let mut last = None;
    for origin in order(&config.origins, src.place, p.memory(), p.now_ms()) {
        let url = src.route.origin_url(&origin.url);
        match attempt(p, config, src.route, &url, zstd, want).await {
            Err(err) if fails_over(&err) => {
                let until = p.now_ms().saturating_add(config.origin_retry_after_ms);
                p.memory().mark_down(&origin.url, until);
                p.warn(format!("origin {} failed: {}", origin.url, err.log_line()));
                last = Some(err);
            }
            done => {
                p.memory().mark_up(&origin.url);
                return done;
            }
        }
    }
    Err(last.unwrap_or_else(|| EdgeError::Config("no origin configured".into())))
}

/// One origin, one deadline for headers and body (the relay's streamed body is bounded by the
/// platform: see [`Platform::origin_get`]).
async fn attempt<P: Platform>(
    p: &P,
    config: &Config,
    route: &Route,
    url: &str,
    zstd: bool,
    want: &Want,
) -> Result<Got<P::Body>, EdgeError> {
    let what = route.describe();
    let ms = config.origin_timeout_ms;
    let work = async {
        let headers = origin_request_headers(zstd, config.origin_token.as_ref());
        let upstream = p.origin_get(url, &headers, ms).await?;
        check_origin_status(upstream.status, &what)?;
        check_len(want.limit(), &what, upstream.content_length)?;
        if let (Want::Relay { relay, .. }, Some(len)) = (want, upstream.content_length) {
            if content_coding(upstream.content_encoding.as_deref())? == Coding::Identity {
                let mut relay = relay.clone();
                relay.len = len;
                let streams = config.stream_above.is_some_and(|above| len > above);
                if relay.mode == RelayMode::Stream && !streams {
                    relay.mode = RelayMode::Verify;
                }
                let body = p.relay(upstream.body, relay).await?;
                return Ok(Got::Relayed { len, body });
            }
        }
        let bytes = p.read_body(upstream.body, want.limit()).await?;
        Ok(Got::Bytes {
            coding: upstream.content_encoding,
            bytes,
        })
    };
    race(work, p.sleep(ms))
        .await
        .unwrap_or(Err(EdgeError::OriginTimeout { ms }))
}
