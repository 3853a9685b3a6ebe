//! Header and integrity policy: what the edge stores, what it sends, and what it refuses.

use std::ops::Range;

use prewarm_shared::wire::{TagBody, IMMUTABLE_CACHE_CONTROL, MAX_BLOCK_SIZE};
use prewarm_shared::{content_range, decide_range, Digest, RangeDecision};

use crate::config::Secret;
use crate::error::EdgeError;
use crate::route::Kind;
use prewarm_shared::conditional::object_etag;
use prewarm_shared::encoding::{encoded_etag, ZSTD};

/// Largest manifest the edge buffers to verify. A Workers isolate has 128 MB of memory and the
/// bytes are held twice (verify, then cache and serve); a 40k-file runtime's manifest is ~10 MB.
pub const MAX_MANIFEST_SIZE: u64 = 32 << 20;

/// Largest tag body the edge reads: `{"digest":"sha256:<64 hex>"}` is 79 bytes.
pub const MAX_TAG_BODY_SIZE: u64 = 4 << 10;

/// Response header telling whether the edge cache answered (`hit`) or the origin did (`miss`).
pub const CACHE_STATUS_HEADER: &str = "x-prewarm-cache";

/// A header list, applied in order by the adapter.
pub type Headers = Vec<(&'static str, String)>;

/// Where a response came from, reported in [`CACHE_STATUS_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
}

impl CacheStatus {
    fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        }
    }
}

/// The most bytes the edge accepts from the origin for one object of `kind`.
pub fn size_limit(kind: Kind) -> u64 {
    match kind {
        Kind::Block => MAX_BLOCK_SIZE,
        Kind::Manifest => MAX_MANIFEST_SIZE,
    }
}

/// Maps the origin's status to success or the error the client sees: 404 stays 404, anything
/// else but 200 is the origin's fault (502), never passed through as if it were content.
pub fn check_origin_status(status: u16, what: &str) -> Result<(), EdgeError> {
    match status {
        200 => Ok(()),
        404 => Err(EdgeError::NotFound {
            what: what.to_string(),
        }),
        status => Err(EdgeError::UpstreamStatus { status }),
    }
}

/// Refuses an oversized body from its declared or actual length, before buffering any more.
pub fn check_len(limit: u64, what: &str, len: Option<u64>) -> Result<(), EdgeError> {
    match len {
        Some(len) if len > limit => Err(EdgeError::UpstreamTooLarge {
            what: what.to_string(),
            len,
            limit,
        }),
        _ => Ok(()),
    }
}

/// The integrity gate: bytes from the origin are cached and served only if they hash to the
/// digest in the URL. Anything else is a 502 and goes nowhere. `actual` is the platform's hash
/// of the `len` bytes in hand.
pub fn verify_object(
    kind: Kind,
    expected: &Digest,
    len: u64,
    actual: Digest,
) -> Result<(), EdgeError> {
    let what = format!("{} {expected}", kind.noun());
    check_len(size_limit(kind), &what, Some(len))?;
    if actual != *expected {
        return Err(EdgeError::Integrity {
            expected: *expected,
            actual,
        });
    }
    Ok(())
}

/// Parses the origin's tag body strictly and re-encodes it canonically, so the edge caches and
/// serves only a well-formed `{"digest":"sha256:…"}`.
pub fn canonical_tag_body(bytes: &[u8]) -> Result<Vec<u8>, EdgeError> {
    let body: TagBody = serde_json::from_slice(bytes).map_err(EdgeError::BadTagBody)?;
    serde_json::to_vec(&body).map_err(EdgeError::BadTagBody)
}

/// Headers stored with a verified object in the edge cache. `Cache-Control` is what makes the
/// Cache API keep it: immutable, a year, because the bytes under a digest never change.
pub fn object_headers(kind: Kind, digest: &Digest) -> Headers {
    let content_type = match kind {
        Kind::Block => "application/octet-stream",
        Kind::Manifest => "application/json",
    };
    vec![
        ("content-type", content_type.to_string()),
        ("cache-control", IMMUTABLE_CACHE_CONTROL.to_string()),
        ("etag", object_etag(digest)),
        ("accept-ranges", "bytes".to_string()),
    ]
}

/// How an origin body is coded (its `Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Zstd,
}

/// Headers of a request the edge sends to the origin. For a block or manifest (`zstd`) it asks
/// for zstd, the edge's own choice and never the client's `Accept-Encoding`: the edge decodes
/// it, hashes the identity bytes and keeps both representations. For a tag it asks for
/// identity, explicitly, so the runtime's `fetch` offers no codings of its own.
pub fn origin_request_headers(zstd: bool, token: Option<&Secret>) -> Headers {
    let coding = if zstd { ZSTD } else { "identity" };
    let mut headers = vec![("accept-encoding", coding.to_string())];
    if let Some(token) = token {
        headers.push(("authorization", format!("Bearer {}", token.expose())));
    }
    headers
}

/// The coding of an origin body from its `Content-Encoding` (all lines joined): absent or
/// `identity`, or exactly `zstd`. Anything else (gzip, several codings) is refused, never
/// hashed as if it were the object.
pub fn content_coding(field: Option<&str>) -> Result<Coding, EdgeError> {
    match field.map(str::trim) {
        None => Ok(Coding::Identity),
        Some(v) if v.is_empty() || v.eq_ignore_ascii_case("identity") => Ok(Coding::Identity),
        Some(v) if v.eq_ignore_ascii_case(ZSTD) => Ok(Coding::Zstd),
        Some(v) => Err(EdgeError::UpstreamCoding {
            coding: v.chars().take(64).collect(),
        }),
    }
}

/// Headers stored with, and sent for, the zstd representation of a verified object: the
/// identity headers with `Content-Encoding: zstd` and the weak ETag, since the strong one names
/// the identity bytes.
pub fn encoded_object_headers(kind: Kind, digest: &Digest) -> Headers {
    let mut headers = object_headers(kind, digest);
    for (name, value) in &mut headers {
        if *name == "etag" {
            *value = encoded_etag(digest);
        }
    }
    headers.push(("content-encoding", ZSTD.to_string()));
    headers
}

/// The headers a client gets for a block or manifest: the stored ones, `Vary: Accept-Encoding`
/// (the same URL has two representations) and the cache status. `Vary` is added here rather
/// than stored: each representation has its own cache key, and a stored `Vary` would only
/// invite the cache to split entries by the lookup request's headers.
pub fn object_reply_headers(stored: Headers, status: CacheStatus) -> Headers {
    let mut headers = with_cache_status(stored, status);
    headers.push(("vary", "accept-encoding".to_string()));
    headers
}

/// Headers for a tag resolution, stored and sent: tags move, so they live `ttl` seconds.
pub fn tag_headers(ttl_seconds: u64) -> Headers {
    vec![
        ("content-type", "application/json".to_string()),
        ("cache-control", format!("public, max-age={ttl_seconds}")),
    ]
}

/// Adds the cache-status header to a stored header list, for the client's copy.
pub fn with_cache_status(mut headers: Headers, status: CacheStatus) -> Headers {
    headers.push((CACHE_STATUS_HEADER, status.as_str().to_string()));
    headers
}

/// How to answer for an object whose bytes are in hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub status: u16,
    pub headers: Headers,
    /// Which bytes to send; `None` for HEAD.
    pub body: Option<Range<usize>>,
}

/// Plans a 200 or 206 for an object of `size` bytes, honouring one `Range`. The runtime sets
/// `Content-Length` for a body; a HEAD answer states it explicitly.
pub fn object_plan(
    kind: Kind,
    digest: &Digest,
    size: u64,
    range: Option<&str>,
    head: bool,
    cache: CacheStatus,
) -> Result<Plan, EdgeError> {
    let mut headers = object_reply_headers(object_headers(kind, digest), cache);
    let (status, span) = match decide_range(range, size) {
        RangeDecision::Full => (200, 0..size),
        RangeDecision::Partial(r) => {
            headers.push(("content-range", content_range(Some(&r), size)));
            (206, r)
        }
        RangeDecision::Unsatisfiable => return Err(EdgeError::RangeNotSatisfiable { size }),
    };
    if head {
        headers.push(("content-length", (span.end - span.start).to_string()));
    }
    // Sizes are bounded by `size_limit`, far below usize::MAX even on wasm32.
    let span = usize::try_from(span.start).unwrap_or(usize::MAX)
        ..usize::try_from(span.end).unwrap_or(usize::MAX);
    Ok(Plan {
        status,
        headers,
        body: (!head).then_some(span),
    })
}

/// Whether a `Cache-Control` request field carries `only-if-cached` (RFC 9111 §5.2.1.7):
/// directive names are case-insensitive, members comma-separated, arguments ignored.
pub fn only_if_cached(field: &str) -> bool {
    field.split(',').any(|member| {
        let name = member.split('=').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("only-if-cached")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_statuses() {
        assert!(check_origin_status(200, "x").is_ok());
        assert_eq!(
            check_origin_status(404, "block x").unwrap_err().status(),
            404
        );
        for s in [206, 301, 400, 401, 500, 503] {
            assert_eq!(
                check_origin_status(s, "x").unwrap_err().status(),
                502,
                "{s}"
            );
        }
    }

    #[test]
    fn integrity_gate() {
        let good = b"the right bytes".to_vec();
        let d = Digest::of(&good);
        let check =
            |bytes: &[u8]| verify_object(Kind::Block, &d, bytes.len() as u64, Digest::of(bytes));
        assert!(check(&good).is_ok());
        let mut bad = good.clone();
        bad[3] ^= 1;
        let err = check(&bad).unwrap_err();
        assert_eq!((err.status(), err.code()), (502, "upstream_integrity"));
        let err = check(&good[..5]).unwrap_err();
        assert_eq!(err.status(), 502);
        let err = verify_object(Kind::Block, &d, MAX_BLOCK_SIZE + 1, d).unwrap_err();
        assert_eq!(err.code(), "upstream_too_large");
        let err = check_len(size_limit(Kind::Block), "b", Some(MAX_BLOCK_SIZE + 1)).unwrap_err();
        assert_eq!(err.code(), "upstream_too_large");
        assert!(check_len(size_limit(Kind::Manifest), "m", Some(MAX_BLOCK_SIZE + 1)).is_ok());
        assert!(check_len(1, "m", None).is_ok());
    }

    #[test]
    fn tag_bodies_are_validated_and_canonical() {
        let d = Digest::of(b"m");
        let body = format!("{{ \"digest\" : \"{d}\" }}");
        let canon = canonical_tag_body(body.as_bytes()).unwrap();
        assert_eq!(canon, format!("{{\"digest\":\"{d}\"}}").into_bytes());
        for bad in [
            "{}",
            "{\"digest\":\"sha256:00\"}",
            "<html>",
            "{\"digest\":1,\"x\":2}",
        ] {
            let err = canonical_tag_body(bad.as_bytes()).unwrap_err();
            assert_eq!(
                (err.status(), err.code()),
                (502, "upstream_bad_body"),
                "{bad}"
            );
        }
    }

    #[test]
    fn origin_requests_and_codings() {
        let h = origin_request_headers(false, None);
        assert_eq!(h, vec![("accept-encoding", "identity".to_string())]);
        let h = origin_request_headers(true, None);
        assert_eq!(h, vec![("accept-encoding", "zstd".to_string())]);
        assert_eq!(content_coding(None).unwrap(), Coding::Identity);
        assert_eq!(content_coding(Some("identity")).unwrap(), Coding::Identity);
        assert_eq!(content_coding(Some(" ZSTD ")).unwrap(), Coding::Zstd);
        for bad in ["gzip", "zstd, gzip", "br"] {
            let err = content_coding(Some(bad)).unwrap_err();
            assert_eq!((err.status(), err.code()), (502, "upstream_bad_encoding"));
        }
    }

    #[test]
    fn header_policy() {
        let d = Digest::of(b"x");
        let h = object_headers(Kind::Manifest, &d);
        assert!(h.contains(&("cache-control", IMMUTABLE_CACHE_CONTROL.to_string())));
        assert!(h.contains(&("etag", format!("\"{d}\""))));
        assert!(h.contains(&("content-type", "application/json".to_string())));
        let z = encoded_object_headers(Kind::Manifest, &d);
        assert!(z.contains(&("etag", format!("W/\"{d}\""))));
        assert!(z.contains(&("content-encoding", "zstd".to_string())));
        assert!(!z.iter().any(|(n, v)| *n == "etag" && !v.starts_with("W/")));
        let r = object_reply_headers(h, CacheStatus::Hit);
        assert!(r.contains(&("vary", "accept-encoding".to_string())));
        let h = tag_headers(60);
        assert!(h.contains(&("cache-control", "public, max-age=60".to_string())));
    }

    #[test]
    fn plans() {
        let d = Digest::of(b"0123456789");
        let p = object_plan(Kind::Block, &d, 10, None, false, CacheStatus::Miss).unwrap();
        assert_eq!((p.status, p.body), (200, Some(0..10)));
        assert!(p
            .headers
            .contains(&(CACHE_STATUS_HEADER, "miss".to_string())));
        let p = object_plan(
            Kind::Block,
            &d,
            10,
            Some("bytes=2-4"),
            false,
            CacheStatus::Hit,
        )
        .unwrap();
        assert_eq!((p.status, p.body.clone()), (206, Some(2..5)));
        assert!(p
            .headers
            .contains(&("content-range", "bytes 2-4/10".to_string())));
        let p = object_plan(
            Kind::Block,
            &d,
            10,
            Some("bytes=-3"),
            true,
            CacheStatus::Hit,
        )
        .unwrap();
        assert_eq!((p.status, p.body.clone()), (206, None));
        assert!(p.headers.contains(&("content-length", "3".to_string())));
        let err = object_plan(
            Kind::Block,
            &d,
            10,
            Some("bytes=10-"),
            false,
            CacheStatus::Hit,
        )
        .unwrap_err();
        assert_eq!(err.status(), 416);
    }
}
