//! Conditional requests (`If-None-Match`) through the request logic, against the fake platform.

use prewarm_shared::wire::IMMUTABLE_CACHE_CONTROL;
use prewarm_shared::Digest;

use super::{block, bytes, config, error_code, get, header, send, Fake, Origin, EDGE, ORIGIN};
use crate::flow::{Body, Reply};
use crate::policy::CACHE_STATUS_HEADER;

/// A request carrying `If-None-Match: if_none_match`.
fn get_if(
    fake: &Fake,
    method: &str,
    path: &str,
    range: Option<&str>,
    if_none_match: &str,
) -> Reply<Vec<u8>> {
    send(fake, config(60), method, path, range, Some(if_none_match))
}

/// Asserts a `304`: no body, no length, and the ETag and immutable policy a `200` would carry.
fn assert_not_modified(reply: &Reply<Vec<u8>>, digest: &Digest, cache: &str) {
    assert_eq!(reply.status, 304);
    assert_eq!(reply.body, Body::Empty);
    assert_eq!(header(reply, "content-length"), None);
    assert_eq!(
        header(reply, "etag"),
        Some(format!("\"{digest}\"").as_str())
    );
    assert_eq!(
        header(reply, "cache-control"),
        Some(IMMUTABLE_CACHE_CONTROL)
    );
    assert_eq!(header(reply, CACHE_STATUS_HEADER), Some(cache));
}

#[test]
fn if_none_match_on_a_cached_object_is_304_without_the_origin() {
    let mut fake = Fake::default();
    let content = b"0123456789".to_vec();
    let d = Digest::of(&content);
    let path = block(&mut fake, &content, Origin::Answer(200, content.clone()));
    assert_eq!(get(&fake, "GET", &path, None).status, 200);
    let etag = format!("\"{d}\"");
    let weak = format!("W/{etag}");
    let listed = format!("\"sha256:{}\", {etag}", Digest::of(b"other").hex());
    for (method, range, field) in [
        ("GET", None, etag.as_str()),
        ("HEAD", None, etag.as_str()),
        ("GET", None, weak.as_str()),
        ("GET", None, listed.as_str()),
        ("GET", None, "*"),
        // If-None-Match is evaluated before Range, even an unsatisfiable one.
        ("GET", Some("bytes=2-4"), etag.as_str()),
        ("GET", Some("bytes=10-"), etag.as_str()),
    ] {
        let reply = get_if(&fake, method, &path, range, field);
        assert_not_modified(&reply, &d, "hit");
    }
    // Another ETag is an ordinary request.
    let other = format!("\"sha256:{}\"", Digest::of(b"other").hex());
    let full = get_if(&fake, "GET", &path, None, &other);
    assert_eq!(full.status, 200);
    assert_eq!(bytes(full), content);
    let part = get_if(&fake, "GET", &path, Some("bytes=2-4"), &other);
    assert_eq!(part.status, 206);
    assert_eq!(bytes(part), b"234");
    assert_eq!(fake.origin_hits.borrow().len(), 1, "only the first GET");
}

#[test]
fn if_none_match_on_a_miss_is_304_after_a_verified_fetch() {
    let mut fake = Fake::default();
    let content = b"not yet at this edge".to_vec();
    let d = Digest::of(&content);
    let path = block(&mut fake, &content, Origin::Answer(200, content.clone()));
    let etag = format!("\"{d}\"");
    let first = get_if(&fake, "GET", &path, None, &etag);
    assert_not_modified(&first, &d, "miss");
    assert_eq!(fake.origin_hits.borrow().len(), 1);
    // The fetch filled the cache: the next conditional and plain requests are hits.
    assert_eq!(
        fake.cache.borrow().get(&format!("{EDGE}{path}")).unwrap().1,
        content
    );
    assert_not_modified(&get_if(&fake, "HEAD", &path, None, &etag), &d, "hit");
    let plain = get(&fake, "GET", &path, None);
    assert_eq!(header(&plain, CACHE_STATUS_HEADER), Some("hit"));
    assert_eq!(bytes(plain), content);
    assert_eq!(fake.origin_hits.borrow().len(), 1);
}

#[test]
fn if_none_match_never_claims_a_missing_or_corrupt_object() {
    let mut fake = Fake::default();
    let good = b"good bytes".to_vec();
    let mut evil = good.clone();
    evil[0] ^= 1;
    let corrupt = block(&mut fake, &good, Origin::Answer(200, evil));
    let gone = block(&mut fake, b"gone", Origin::Answer(404, b"{}".to_vec()));
    let dead = block(&mut fake, b"dead", Origin::Unreachable);
    for (path, status, code) in [
        (&gone, 404, "not_found"),
        (&corrupt, 502, "upstream_integrity"),
        (&dead, 502, "origin_unreachable"),
    ] {
        let digest = path.trim_start_matches("/v1/blocks/");
        for field in [format!("\"{digest}\""), "*".to_string()] {
            let reply = get_if(&fake, "GET", path, None, &field);
            assert_eq!(reply.status, status, "{path} {field}");
            assert_eq!(error_code(reply), code);
        }
    }
    assert!(fake.cache.borrow().is_empty());
}

#[test]
fn if_none_match_on_a_manifest() {
    let mut fake = Fake::default();
    let manifest = br#"{"schema":"prewarm.snapshot.v1"}"#.to_vec();
    let d = Digest::of(&manifest);
    let path = format!("/v1/manifests/{d}");
    fake.origin.insert(
        format!("{ORIGIN}{path}"),
        Origin::Answer(200, manifest.clone()),
    );
    let reply = get_if(&fake, "GET", &path, None, &format!("\"{d}\""));
    assert_not_modified(&reply, &d, "miss");
    assert_eq!(header(&reply, "content-type"), Some("application/json"));
    let reply = get_if(&fake, "GET", &path, None, "\"sha256:nope\"");
    assert_eq!(bytes(reply), manifest);
}

#[test]
fn tags_ignore_if_none_match_like_the_origin() {
    let mut fake = Fake::default();
    let d = Digest::of(b"manifest");
    let path = "/v1/runtimes/py/tags/v1";
    let body = format!("{{\"digest\":\"{d}\"}}").into_bytes();
    fake.origin
        .insert(format!("{ORIGIN}{path}"), Origin::Answer(200, body.clone()));
    for field in ["*", "\"anything\""] {
        let reply = get_if(&fake, "GET", path, None, field);
        assert_eq!(reply.status, 200);
        assert_eq!(header(&reply, "etag"), None);
        assert_eq!(bytes(reply), body);
    }
    let health = get_if(&fake, "GET", "/healthz", None, "*");
    assert_eq!(health.status, 200);
}
