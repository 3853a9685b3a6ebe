//! `Cache-Control: only-if-cached`: answered from the edge cache or `504`, never from an origin.

use super::{block, bytes, config, error_code, get, header, Fake, Origin, ORIGIN};
use crate::deadline::tests::run;
use crate::flow::{handle, Incoming, Reply};
use crate::origins::Place;
use crate::policy::{only_if_cached, CACHE_STATUS_HEADER};

fn cached_only(fake: &Fake, method: &str, path: &str) -> Reply<Vec<u8>> {
    let req = Incoming {
        method,
        self_origin: super::EDGE,
        path,
        range: None,
        if_none_match: None,
        accept_encoding: None,
        only_if_cached: true,
        place: Place::default(),
    };
    run(handle(fake, config(60), req)).unwrap_or_else(|e| Reply::from_error(&e))
}

#[test]
fn a_miss_is_504_and_never_reaches_the_origin_a_hit_is_served() {
    let mut fake = Fake::default();
    let content = b"only from the cache".to_vec();
    let path = block(&mut fake, &content, Origin::Answer(200, content.clone()));
    for method in ["GET", "HEAD"] {
        let miss = cached_only(&fake, method, &path);
        assert_eq!((miss.status, error_code(miss)), (504, "not_cached".into()));
    }
    assert!(fake.origin_hits.borrow().is_empty());
    assert!(fake.cache.borrow().is_empty());

    assert_eq!(get(&fake, "GET", &path, None).status, 200);
    let hit = cached_only(&fake, "GET", &path);
    assert_eq!(header(&hit, CACHE_STATUS_HEADER), Some("hit"));
    assert_eq!(bytes(hit), content);
    assert_eq!(fake.origin_hits.borrow().len(), 1);
}

#[test]
fn tags_too() {
    let mut fake = Fake::default();
    let path = "/v1/runtimes/py/tags/v1";
    let body = format!("{{\"digest\":\"{}\"}}", prewarm_shared::Digest::of(b"m"));
    fake.origin.insert(
        format!("{ORIGIN}{path}"),
        Origin::Answer(200, body.into_bytes()),
    );
    assert_eq!(cached_only(&fake, "GET", path).status, 504);
    assert!(fake.origin_hits.borrow().is_empty());
    assert_eq!(get(&fake, "GET", path, None).status, 200);
    assert_eq!(cached_only(&fake, "GET", path).status, 200);
}

#[test]
fn the_directive_is_found_among_others() {
    for yes in [
        "only-if-cached",
        "max-age=0, Only-If-Cached",
        " only-if-cached =x",
    ] {
        assert!(only_if_cached(yes), "{yes}");
    }
    for no in ["", "no-cache", "max-age=0", "only-if-cached-not"] {
        assert!(!only_if_cached(no), "{no}");
    }
}
