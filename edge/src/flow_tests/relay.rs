//! The relayed miss: identity bytes go to the client and the cache through the runtime while
//! they are hashed; what the client may see of a wrong body depends on its size.

use prewarm_shared::Digest;

use super::{block, bytes, config, error_code, get_with, header, Fake, Origin};
use crate::flow::{Body, RelayMode, Reply};
use crate::policy::CACHE_STATUS_HEADER;

const STREAM_ABOVE: u64 = 256 << 10;

/// A GET (or HEAD) to an edge configured to stream bodies over [`STREAM_ABOVE`].
fn get(fake: &Fake, method: &str, path: &str, range: Option<&str>) -> Reply<Vec<u8>> {
    let mut c = config(60).unwrap();
    c.stream_above = Some(STREAM_ABOVE);
    get_with(fake, Ok(c), method, path, range)
}

fn big(seed: u8) -> Vec<u8> {
    (0..STREAM_ABOVE as usize + 4096)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn large_bodies_stream_small_ones_are_verified_first_head_drains() {
    let mut fake = Fake::default();
    let large = big(1);
    let path = block(&mut fake, &large, Origin::Answer(200, large.clone()));
    let miss = get(&fake, "GET", &path, None);
    assert_eq!(
        (miss.status, header(&miss, CACHE_STATUS_HEADER)),
        (200, Some("miss"))
    );
    assert!(
        matches!(miss.body, Body::Pass(_)),
        "passed through, not copied"
    );
    assert_eq!(bytes(miss), large);

    let small = b"small block".to_vec();
    let spath = block(&mut fake, &small, Origin::Answer(200, small.clone()));
    assert_eq!(bytes(get(&fake, "GET", &spath, None)), small);

    let other = big(2);
    let hpath = block(&mut fake, &other, Origin::Answer(200, other.clone()));
    let head = get(&fake, "HEAD", &hpath, None);
    let len = other.len().to_string();
    assert_eq!(header(&head, "content-length"), Some(len.as_str()));
    assert_eq!(head.body, Body::Empty);

    assert_eq!(
        *fake.relays.borrow(),
        [RelayMode::Stream, RelayMode::Verify, RelayMode::Drain]
    );
    assert_eq!(fake.cache.borrow().len(), 3);
    for path in [&path, &spath, &hpath] {
        let hit = get(&fake, "GET", path, None);
        assert_eq!(header(&hit, CACHE_STATUS_HEADER), Some("hit"));
    }
    assert_eq!(fake.origin_hits.borrow().len(), 3);

    // Without STREAM_ABOVE_BYTES (the default) every relayed body is verified first.
    let quiet = Fake::default();
    let mut quiet = quiet;
    let other = big(4);
    let qpath = block(&mut quiet, &other, Origin::Answer(200, other.clone()));
    assert_eq!(bytes(super::get(&quiet, "GET", &qpath, None)), other);
    assert_eq!(*quiet.relays.borrow(), [RelayMode::Verify]);
}

/// A large wrong body has had its 200 sent by the time the last byte is hashed: the client's
/// body is cut off instead, and nothing is cached. A small one is a clean 502.
#[test]
fn a_wrong_body_never_completes_and_is_never_cached() {
    let mut fake = Fake::default();
    let good = big(3);
    let mut evil = good.clone();
    *evil.last_mut().unwrap() ^= 1;
    let path = block(&mut fake, &good, Origin::Answer(200, evil));
    for round in 1..=2 {
        let reply = get(&fake, "GET", &path, None);
        assert_eq!(reply.status, 200);
        let got = bytes(reply);
        assert!(
            got.len() < good.len(),
            "the client never gets the whole body"
        );
        assert_eq!(fake.aborted.borrow().len(), round);
    }
    assert!(fake.cache.borrow().is_empty());
    assert_eq!(fake.origin_hits.borrow().len(), 2);
    // HEAD waits for the digest: a clean 502.
    let head = get(&fake, "HEAD", &path, None);
    assert_eq!(error_code(head), "upstream_integrity");
    assert!(fake.cache.borrow().is_empty());
    let _ = Digest::of(&good);
}
