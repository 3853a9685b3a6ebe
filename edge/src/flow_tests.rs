//! The request logic end to end against a fake platform: cache, origin and timer in memory.

mod conditional;
mod encoding;
mod failover;
mod only_if_cached;
mod relay;

use std::cell::RefCell;
use std::collections::HashMap;

use prewarm_shared::wire::IMMUTABLE_CACHE_CONTROL;
use prewarm_shared::Digest;

use crate::config::{Config, OriginSpec};
use crate::deadline::tests::run;
use crate::error::EdgeError;
use crate::flow::{handle, Body, Cached, Incoming, Platform, Relay, RelayMode, Reply, Upstream};
use crate::origins::{Memory, Place};
use crate::policy::{Headers, CACHE_STATUS_HEADER};

/// How the fake origin answers one URL.
#[derive(Clone)]
enum Origin {
    Answer(u16, Vec<u8>),
    /// A `200` with this `Content-Encoding` and these bytes, whatever the request asked for.
    Coded(&'static str, Vec<u8>),
    /// These zstd bytes when the request asks for zstd, else the bytes they decode to: what
    /// the real origin does.
    Negotiated(Vec<u8>),
    /// Declares a length it never sends (checked before reading).
    Declares(u64),
    Unreachable,
    Hang,
}

#[derive(Default)]
struct Fake {
    origin: HashMap<String, Origin>,
    cache: RefCell<HashMap<String, (Headers, Vec<u8>)>>,
    origin_hits: RefCell<Vec<String>>,
    /// The headers of each origin request, in order.
    origin_headers: RefCell<Vec<Headers>>,
    /// Every relay, with the mode it ran in.
    relays: RefCell<Vec<RelayMode>>,
    /// Keys of streamed relays whose client body was cut off because the digest did not match.
    aborted: RefCell<Vec<String>>,
    memory: Memory,
    now: std::cell::Cell<u64>,
    warnings: RefCell<Vec<String>>,
}

impl Platform for Fake {
    type Body = Vec<u8>;

    async fn cache_get(&self, key: &str) -> Option<Cached<Vec<u8>>> {
        let cache = self.cache.borrow();
        let (_, bytes) = cache.get(key)?;
        Some(Cached {
            size: Some(bytes.len() as u64),
            body: bytes.clone(),
        })
    }

    fn cache_put(&self, key: String, headers: Headers, bytes: &[u8]) {
        self.cache
            .borrow_mut()
            .insert(key, (headers, bytes.to_vec()));
    }

    async fn origin_get(
        &self,
        url: &str,
        headers: &Headers,
        _timeout_ms: u64,
    ) -> Result<Upstream<Vec<u8>>, EdgeError> {
        self.origin_hits.borrow_mut().push(url.to_string());
        self.origin_headers.borrow_mut().push(headers.clone());
        let asks_zstd = headers
            .iter()
            .any(|(n, v)| *n == "accept-encoding" && v == "zstd");
        match self
            .origin
            .get(url)
            .cloned()
            .unwrap_or(Origin::Answer(404, Vec::new()))
        {
            Origin::Answer(status, body) => Ok(Upstream {
                status,
                content_length: Some(body.len() as u64),
                content_encoding: None,
                body,
            }),
            Origin::Coded(coding, body) => Ok(Upstream {
                status: 200,
                content_length: Some(body.len() as u64),
                content_encoding: Some(coding.into()),
                body,
            }),
            Origin::Negotiated(encoded) if asks_zstd => Ok(Upstream {
                status: 200,
                content_length: Some(encoded.len() as u64),
                content_encoding: Some("zstd".into()),
                body: encoded,
            }),
            Origin::Negotiated(encoded) => {
                let body = zstd::decode_all(encoded.as_slice()).unwrap();
                Ok(Upstream {
                    status: 200,
                    content_length: Some(body.len() as u64),
                    content_encoding: None,
                    body,
                })
            }
            Origin::Declares(len) => Ok(Upstream {
                status: 200,
                content_length: Some(len),
                content_encoding: None,
                body: Vec::new(),
            }),
            Origin::Unreachable => Err(EdgeError::OriginUnreachable(Box::new(
                std::io::Error::other("refused"),
            ))),
            Origin::Hang => std::future::pending().await,
        }
    }

    async fn read_body(&self, body: Vec<u8>, limit: u64) -> Result<Vec<u8>, EdgeError> {
        crate::policy::check_len(limit, "body", Some(body.len() as u64))?;
        Ok(body)
    }

    async fn digest(&self, bytes: &[u8]) -> Result<Digest, EdgeError> {
        Ok(Digest::of(bytes))
    }

    /// Hashes with `sha2` (the native build's stand-in for the runtime's hasher) and plays each
    /// mode's outcome: a matching body is cached and handed on; a wrong one is never cached,
    /// and a streamed one reaches the client cut short, as its errored stream would.
    async fn relay(&self, body: Vec<u8>, relay: Relay) -> Result<Option<Vec<u8>>, EdgeError> {
        self.relays.borrow_mut().push(relay.mode);
        assert_eq!(
            body.len() as u64,
            relay.len,
            "the fake sends what it declares"
        );
        let actual = Digest::of(&body);
        if actual == relay.expected {
            self.cache_put(relay.key, relay.headers, &body);
            return Ok((relay.mode != RelayMode::Drain).then_some(body));
        }
        if relay.mode == RelayMode::Stream {
            self.aborted.borrow_mut().push(relay.key);
            let mut cut = body;
            cut.pop();
            return Ok(Some(cut));
        }
        Err(EdgeError::Integrity {
            expected: relay.expected,
            actual,
        })
    }

    async fn sleep(&self, _ms: u64) {}

    fn now_ms(&self) -> u64 {
        self.now.get()
    }

    fn memory(&self) -> &Memory {
        &self.memory
    }

    fn warn(&self, line: String) {
        self.warnings.borrow_mut().push(line);
    }
}

const ORIGIN: &str = "http://origin.test";
const EDGE: &str = "https://edge.test";

fn config(ttl: u64) -> Result<Config, EdgeError> {
    let mut config = Config::single(ORIGIN);
    config.origin_timeout_ms = 1000;
    config.tag_ttl_seconds = ttl;
    Ok(config)
}

/// A config with these origins, in this order.
fn origins(list: &[(&str, Option<&str>)]) -> Result<Config, EdgeError> {
    let mut config = config(60)?;
    config.origins = list
        .iter()
        .map(|(url, region)| OriginSpec {
            url: url.to_string(),
            region: region.map(Into::into),
        })
        .collect();
    Ok(config)
}

fn get(fake: &Fake, method: &str, path: &str, range: Option<&str>) -> Reply<Vec<u8>> {
    get_with(fake, config(60), method, path, range)
}

fn get_with(
    fake: &Fake,
    config: Result<Config, EdgeError>,
    method: &str,
    path: &str,
    range: Option<&str>,
) -> Reply<Vec<u8>> {
    send(fake, config, method, path, range, None)
}

fn send(
    fake: &Fake,
    config: Result<Config, EdgeError>,
    method: &str,
    path: &str,
    range: Option<&str>,
    if_none_match: Option<&str>,
) -> Reply<Vec<u8>> {
    send_with(fake, config, method, path, [range, if_none_match, None])
}

/// A request with every header the edge reads: `[range, if_none_match, accept_encoding]`.
fn send_with(
    fake: &Fake,
    config: Result<Config, EdgeError>,
    method: &str,
    path: &str,
    [range, if_none_match, accept_encoding]: [Option<&str>; 3],
) -> Reply<Vec<u8>> {
    let req = Incoming {
        method,
        self_origin: EDGE,
        path,
        range,
        if_none_match,
        accept_encoding,
        only_if_cached: false,
        place: Place::default(),
    };
    run(handle(fake, config, req)).unwrap_or_else(|e| Reply::from_error(&e))
}

fn header<'a>(reply: &'a Reply<Vec<u8>>, name: &str) -> Option<&'a str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

fn bytes(reply: Reply<Vec<u8>>) -> Vec<u8> {
    match reply.body {
        Body::Empty => Vec::new(),
        Body::Bytes(b) | Body::Pass(b) => b,
    }
}

fn error_code(reply: Reply<Vec<u8>>) -> String {
    let v: serde_json::Value = serde_json::from_slice(&bytes(reply)).unwrap();
    v["error"]["code"].as_str().unwrap().to_string()
}

fn block(fake: &mut Fake, content: &[u8], served: Origin) -> String {
    let d = Digest::of(content);
    let path = format!("/v1/blocks/{d}");
    fake.origin.insert(format!("{ORIGIN}{path}"), served);
    path
}

#[test]
fn miss_then_hit_reaches_the_origin_once() {
    let mut fake = Fake::default();
    let content = b"runtime bytes".to_vec();
    let path = block(&mut fake, &content, Origin::Answer(200, content.clone()));
    let first = get(&fake, "GET", &path, None);
    assert_eq!(first.status, 200);
    assert_eq!(header(&first, CACHE_STATUS_HEADER), Some("miss"));
    assert_eq!(bytes(first), content);
    let second = get(&fake, "GET", &path, None);
    assert_eq!(header(&second, CACHE_STATUS_HEADER), Some("hit"));
    assert_eq!(
        header(&second, "cache-control"),
        Some(IMMUTABLE_CACHE_CONTROL)
    );
    assert!(
        matches!(second.body, Body::Pass(_)),
        "a full hit streams the cached body"
    );
    assert_eq!(bytes(second), content);
    assert_eq!(fake.origin_hits.borrow().len(), 1);
    let cache = fake.cache.borrow();
    let (stored_headers, stored) = cache.get(&format!("{EDGE}{path}")).unwrap();
    assert_eq!(stored, &content);
    assert!(stored_headers.contains(&("cache-control", IMMUTABLE_CACHE_CONTROL.to_string())));
}

#[test]
fn origin_requests_ask_for_zstd_for_zstd_clients_only() {
    let mut fake = Fake::default();
    let content = b"identity bytes".to_vec();
    let path = block(&mut fake, &content, Origin::Answer(200, content.clone()));
    let other = b"other bytes".to_vec();
    let zpath = block(&mut fake, &other, Origin::Answer(200, other.clone()));
    let tag = "/v1/runtimes/py/tags/v1";
    let body = format!("{{\"digest\":\"{}\"}}", Digest::of(b"m"));
    fake.origin
        .insert(format!("{ORIGIN}{tag}"), Origin::Answer(200, body.into()));
    assert_eq!(get(&fake, "GET", &path, None).status, 200);
    let zstd_client = send_with(&fake, config(60), "GET", &zpath, [None, None, Some("zstd")]);
    assert_eq!(zstd_client.status, 200);
    assert_eq!(get(&fake, "GET", tag, None).status, 200);
    let sent = fake.origin_headers.borrow();
    let codings: Vec<Vec<&str>> = sent
        .iter()
        .map(|headers| {
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("accept-encoding"))
                .map(|(_, v)| v.as_str())
                .collect()
        })
        .collect();
    // A client that does not ask for zstd costs no decoding: identity is relayed as it comes.
    assert_eq!(codings, [["identity"], ["zstd"], ["identity"]]);
}

#[test]
fn a_wrong_byte_is_502_and_never_cached() {
    let mut fake = Fake::default();
    let content = b"good bytes".to_vec();
    let mut evil = content.clone();
    evil[0] ^= 0x20;
    let path = block(&mut fake, &content, Origin::Answer(200, evil));
    for _ in 0..2 {
        let reply = get(&fake, "GET", &path, None);
        assert_eq!(reply.status, 502);
        assert_eq!(error_code(reply), "upstream_integrity");
    }
    assert!(fake.cache.borrow().is_empty());
    assert_eq!(
        fake.origin_hits.borrow().len(),
        2,
        "the bad bytes were not served from cache"
    );
    let reply = get(&fake, "GET", &path, Some("bytes=0-1"));
    assert_eq!(reply.status, 502, "a range never skips verification");
}

#[test]
fn ranges_on_miss_and_hit_cache_the_whole_block() {
    let mut fake = Fake::default();
    let content = b"0123456789".to_vec();
    let path = block(&mut fake, &content, Origin::Answer(200, content.clone()));
    let miss = get(&fake, "GET", &path, Some("bytes=2-4"));
    assert_eq!(
        (miss.status, header(&miss, "content-range")),
        (206, Some("bytes 2-4/10"))
    );
    assert_eq!(bytes(miss), b"234");
    assert_eq!(fake.cache.borrow().values().next().unwrap().1, content);
    let hit = get(&fake, "GET", &path, Some("bytes=-3"));
    assert_eq!(
        (hit.status, header(&hit, CACHE_STATUS_HEADER)),
        (206, Some("hit"))
    );
    assert_eq!(bytes(hit), b"789");
    let whole = get(&fake, "GET", &path, Some("bytes=0-1,4-5"));
    assert_eq!(whole.status, 200);
    let past = get(&fake, "GET", &path, Some("bytes=10-"));
    assert_eq!(
        (past.status, header(&past, "content-range")),
        (416, Some("bytes */10"))
    );
    assert_eq!(fake.origin_hits.borrow().len(), 1);
}

#[test]
fn head_verifies_and_warms_without_a_body() {
    let mut fake = Fake::default();
    let content = b"head me".to_vec();
    let path = block(&mut fake, &content, Origin::Answer(200, content.clone()));
    let miss = get(&fake, "HEAD", &path, None);
    assert_eq!(
        (miss.status, header(&miss, "content-length")),
        (200, Some("7"))
    );
    assert_eq!(miss.body, Body::Empty);
    let hit = get(&fake, "HEAD", &path, None);
    assert_eq!(
        (
            header(&hit, CACHE_STATUS_HEADER),
            header(&hit, "content-length")
        ),
        (Some("hit"), Some("7"))
    );
    assert_eq!(hit.body, Body::Empty);
}

#[test]
fn origin_failures_map_to_clear_errors_and_are_not_cached() {
    let mut fake = Fake::default();
    let cases = [
        (
            b"gone".as_slice(),
            Origin::Answer(404, b"{}".to_vec()),
            404,
            "not_found",
        ),
        (
            b"boom",
            Origin::Answer(500, Vec::new()),
            502,
            "upstream_error",
        ),
        (b"dead", Origin::Unreachable, 502, "origin_unreachable"),
        (b"slow", Origin::Hang, 504, "origin_timeout"),
        (
            b"huge",
            Origin::Declares(1 << 40),
            502,
            "upstream_too_large",
        ),
    ];
    for (content, served, status, code) in cases {
        let path = block(&mut fake, content, served);
        let reply = get(&fake, "GET", &path, None);
        assert_eq!(reply.status, status, "{code}");
        assert_eq!(header(&reply, "content-type"), Some("application/json"));
        assert_eq!(error_code(reply), code);
    }
    assert!(fake.cache.borrow().is_empty());
}

#[test]
fn manifests_are_verified_like_blocks() {
    let mut fake = Fake::default();
    let manifest = br#"{"schema":"prewarm.snapshot.v1"}"#.to_vec();
    let d = Digest::of(&manifest);
    let url = format!("{ORIGIN}/v1/manifests/{d}");
    fake.origin
        .insert(url, Origin::Answer(200, manifest.clone()));
    let reply = get(&fake, "GET", &format!("/v1/manifests/{d}"), None);
    assert_eq!(header(&reply, "content-type"), Some("application/json"));
    assert_eq!(bytes(reply), manifest);
    let other = Digest::of(b"other");
    fake.origin.insert(
        format!("{ORIGIN}/v1/manifests/{other}"),
        Origin::Answer(200, manifest),
    );
    let reply = get(&fake, "GET", &format!("/v1/manifests/{other}"), None);
    assert_eq!(reply.status, 502);
}

#[test]
fn tags_are_cached_for_their_ttl_only() {
    let mut fake = Fake::default();
    let d = Digest::of(b"manifest");
    let path = "/v1/runtimes/py/tags/v1";
    let body = format!("{{\"digest\": \"{d}\"}}").into_bytes();
    fake.origin
        .insert(format!("{ORIGIN}{path}"), Origin::Answer(200, body));
    let first = get(&fake, "GET", path, None);
    assert_eq!(header(&first, "cache-control"), Some("public, max-age=60"));
    assert_eq!(bytes(first), format!("{{\"digest\":\"{d}\"}}").into_bytes());
    let second = get(&fake, "GET", path, None);
    assert_eq!(header(&second, CACHE_STATUS_HEADER), Some("hit"));
    assert_eq!(fake.origin_hits.borrow().len(), 1);

    let uncached = Fake {
        origin: fake.origin.clone(),
        ..Fake::default()
    };
    for _ in 0..2 {
        let reply = get_with(&uncached, config(0), "GET", path, None);
        assert_eq!(header(&reply, CACHE_STATUS_HEADER), Some("miss"));
    }
    assert!(uncached.cache.borrow().is_empty());
    assert_eq!(uncached.origin_hits.borrow().len(), 2);

    fake.origin.insert(
        format!("{ORIGIN}/v1/runtimes/py/tags/bad"),
        Origin::Answer(200, b"<html>".to_vec()),
    );
    let bad = get(&fake, "GET", "/v1/runtimes/py/tags/bad", None);
    assert_eq!(
        (bad.status, error_code(bad)),
        (502, "upstream_bad_body".to_string())
    );
}

#[test]
fn writes_are_refused_even_when_misconfigured() {
    let fake = Fake::default();
    let broken = || Err(EdgeError::Config("var ORIGIN_URL is not set".into()));
    let reply = get_with(&fake, broken(), "PUT", "/v1/runtimes/py/tags/v1", None);
    assert_eq!(
        (reply.status, header(&reply, "allow")),
        (405, Some("GET, HEAD"))
    );
    let reply = get_with(&fake, broken(), "GET", "/healthz", None);
    assert_eq!(
        (reply.status, error_code(reply)),
        (500, "edge_misconfigured".to_string())
    );
    let reply = get(&fake, "GET", "/healthz", None);
    assert_eq!(reply.status, 200);
    assert!(fake.origin_hits.borrow().is_empty());
}

#[test]
fn the_origin_token_goes_to_the_origin_as_a_bearer() {
    let mut fake = Fake::default();
    let content = b"private origin".to_vec();
    let path = block(&mut fake, &content, Origin::Answer(200, content.clone()));
    let vars = |name: &str| match name {
        "ORIGIN_URL" => Some(ORIGIN.to_string()),
        "ORIGIN_TOKEN" => Some("t0ken".to_string()),
        _ => None,
    };
    let reply = get_with(&fake, Config::from_vars(vars), "GET", &path, None);
    assert_eq!(bytes(reply), content);
    let sent = fake.origin_headers.borrow();
    assert!(sent[0].contains(&("authorization", "Bearer t0ken".to_string())));
}
