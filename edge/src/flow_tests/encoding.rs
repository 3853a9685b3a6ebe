//! zstd through the edge: the miss path asks the origin for zstd, decodes and verifies it, and
//! caches both representations; each client then gets the one it asked for.

use prewarm_shared::wire::MAX_BLOCK_SIZE;
use prewarm_shared::Digest;

use super::{block, bytes, config, error_code, header, Fake, Origin, EDGE};
use crate::flow::{Body, Reply};
use crate::policy::CACHE_STATUS_HEADER;

/// A request with every header the edge reads.
fn req(
    fake: &Fake,
    method: &str,
    path: &str,
    range: Option<&str>,
    if_none_match: Option<&str>,
    accept_encoding: Option<&str>,
) -> Reply<Vec<u8>> {
    super::send_with(
        fake,
        config(60),
        method,
        path,
        [range, if_none_match, accept_encoding],
    )
}

fn zstd_get(fake: &Fake, path: &str) -> Reply<Vec<u8>> {
    req(fake, "GET", path, None, None, Some("gzip, zstd"))
}

fn plain_get(fake: &Fake, path: &str) -> Reply<Vec<u8>> {
    req(fake, "GET", path, None, None, Some("gzip, br"))
}

/// Compressible content and its zstd encoding, as the origin makes it.
fn compressible() -> (Vec<u8>, Vec<u8>) {
    let content = "prewarm runtime bytes ".repeat(4000).into_bytes();
    let encoded = zstd::bulk::compress(&content, 1).unwrap();
    assert!(encoded.len() * 10 < content.len());
    (content, encoded)
}

fn assert_identity(reply: &Reply<Vec<u8>>, digest: &Digest, cache: &str) {
    assert_eq!(header(reply, "content-encoding"), None);
    assert_eq!(
        header(reply, "etag"),
        Some(format!("\"{digest}\"").as_str())
    );
    assert_eq!(header(reply, "vary"), Some("accept-encoding"));
    assert_eq!(header(reply, CACHE_STATUS_HEADER), Some(cache));
}

fn assert_zstd(reply: &Reply<Vec<u8>>, digest: &Digest, cache: &str) {
    assert_eq!(reply.status, 200);
    assert_eq!(header(reply, "content-encoding"), Some("zstd"));
    assert_eq!(
        header(reply, "etag"),
        Some(format!("W/\"{digest}\"").as_str())
    );
    assert_eq!(header(reply, "vary"), Some("accept-encoding"));
    assert_eq!(header(reply, CACHE_STATUS_HEADER), Some(cache));
}

fn keys(path: &str) -> (String, String) {
    (
        format!("{EDGE}{path}"),
        format!("{EDGE}{path}?prewarm-coding=zstd"),
    )
}

#[test]
fn a_zstd_miss_caches_both_and_each_client_gets_its_own_from_the_cache() {
    let mut fake = Fake::default();
    let (content, encoded) = compressible();
    let d = Digest::of(&content);
    let path = block(&mut fake, &content, Origin::Coded("zstd", encoded.clone()));

    let miss = zstd_get(&fake, &path);
    assert_zstd(&miss, &d, "miss");
    assert_eq!(bytes(miss), encoded, "the origin's verified zstd bytes");
    {
        let cache = fake.cache.borrow();
        let (identity_key, zstd_key) = keys(&path);
        let (h, stored) = cache.get(&identity_key).unwrap();
        assert_eq!(stored, &content);
        assert!(h.contains(&("etag", format!("\"{d}\""))));
        assert!(!h.iter().any(|(n, _)| *n == "content-encoding"));
        let (h, stored) = cache.get(&zstd_key).unwrap();
        assert_eq!(stored, &encoded);
        assert!(h.contains(&("etag", format!("W/\"{d}\""))));
        assert!(h.contains(&("content-encoding", "zstd".to_string())));
    }

    // A client that does not name zstd gets identity from the cache, with no origin request.
    for accept in [None, Some("gzip, br"), Some("*"), Some("zstd;q=0")] {
        let hit = req(&fake, "GET", &path, None, None, accept);
        assert_identity(&hit, &d, "hit");
        assert!(matches!(hit.body, Body::Pass(_)));
        assert_eq!(bytes(hit), content, "{accept:?}");
    }
    let hit = zstd_get(&fake, &path);
    assert_zstd(&hit, &d, "hit");
    assert!(matches!(hit.body, Body::Pass(_)));
    assert_eq!(bytes(hit), encoded);
    assert_eq!(fake.origin_hits.borrow().len(), 1);
}

#[test]
fn an_identity_client_on_a_miss_costs_no_decoding_and_caches_identity_only() {
    let mut fake = Fake::default();
    let (content, encoded) = compressible();
    let d = Digest::of(&content);
    let path = block(&mut fake, &content, Origin::Negotiated(encoded.clone()));
    let miss = plain_get(&fake, &path);
    assert_identity(&miss, &d, "miss");
    assert_eq!(bytes(miss), content, "relayed as the origin sent it");
    assert_eq!(fake.cache.borrow().len(), 1);
    // A zstd client then gets identity from the cache: the edge never compresses.
    let hit = zstd_get(&fake, &path);
    assert_identity(&hit, &d, "hit");
    assert_eq!(bytes(hit), content);
    // A zstd client's miss asks for zstd and caches both.
    let other = "other runtime bytes ".repeat(3000).into_bytes();
    let zpath = block(
        &mut fake,
        &other,
        Origin::Negotiated(zstd::bulk::compress(&other, 1).unwrap()),
    );
    assert_zstd(&zstd_get(&fake, &zpath), &Digest::of(&other), "miss");
    assert_identity(&plain_get(&fake, &zpath), &Digest::of(&other), "hit");
    assert_eq!(fake.cache.borrow().len(), 3);
    assert_eq!(fake.origin_hits.borrow().len(), 2);
}

#[test]
fn ranges_and_head_are_identity_even_for_zstd_clients() {
    let mut fake = Fake::default();
    let (content, encoded) = compressible();
    let d = Digest::of(&content);
    let path = block(&mut fake, &content, Origin::Coded("zstd", encoded));
    let z = Some("zstd");
    let miss = req(&fake, "GET", &path, Some("bytes=3-9"), None, z);
    assert_eq!(miss.status, 206);
    assert_identity(&miss, &d, "miss");
    assert_eq!(bytes(miss), &content[3..10]);
    let hit = req(&fake, "GET", &path, Some("bytes=-4"), None, z);
    assert_eq!(hit.status, 206);
    assert_identity(&hit, &d, "hit");
    assert_eq!(bytes(hit), &content[content.len() - 4..]);
    let head = req(&fake, "HEAD", &path, None, None, z);
    assert_eq!(head.status, 200);
    assert_identity(&head, &d, "hit");
    let len = content.len().to_string();
    assert_eq!(header(&head, "content-length"), Some(len.as_str()));
    assert_eq!(head.body, Body::Empty);
    assert_eq!(fake.origin_hits.borrow().len(), 1);
}

#[test]
fn if_none_match_is_304_for_zstd_clients_on_a_miss_and_a_hit() {
    let mut fake = Fake::default();
    let (content, encoded) = compressible();
    let d = Digest::of(&content);
    let path = block(&mut fake, &content, Origin::Coded("zstd", encoded));
    let weak = format!("W/\"{d}\"");
    for cache in ["miss", "hit"] {
        let reply = req(&fake, "GET", &path, None, Some(&weak), Some("zstd"));
        assert_eq!(reply.status, 304);
        assert_eq!(reply.body, Body::Empty);
        assert_eq!(header(&reply, "vary"), Some("accept-encoding"));
        assert_eq!(header(&reply, CACHE_STATUS_HEADER), Some(cache));
    }
    assert_eq!(fake.cache.borrow().len(), 2, "the miss cached both");
    assert_eq!(fake.origin_hits.borrow().len(), 1);
}

#[test]
fn an_identity_answer_caches_identity_only_and_the_edge_never_compresses() {
    let mut fake = Fake::default();
    let (content, _) = compressible();
    let d = Digest::of(&content);
    // An older origin, or an incompressible object: identity.
    let path = block(&mut fake, &content, Origin::Answer(200, content.clone()));
    for cache in ["miss", "hit"] {
        let reply = zstd_get(&fake, &path);
        assert_eq!(reply.status, 200);
        assert_identity(&reply, &d, cache);
        assert_eq!(bytes(reply), content);
    }
    assert_eq!(fake.cache.borrow().len(), 1);
    assert_eq!(fake.origin_hits.borrow().len(), 1);

    // A zstd body that saves less than a tenth is decoded and verified, but not kept.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let poor = zstd::bulk::compress(&noise, 1).unwrap();
    assert!(poor.len() * 10 >= noise.len() * 9);
    let nd = Digest::of(&noise);
    let path = block(&mut fake, &noise, Origin::Coded("zstd", poor));
    let reply = zstd_get(&fake, &path);
    assert_identity(&reply, &nd, "miss");
    assert_eq!(bytes(reply), noise);
    assert!(!fake.cache.borrow().contains_key(&keys(&path).1));
}

#[test]
fn bad_zstd_from_the_origin_is_502_and_nothing_is_cached() {
    let (content, encoded) = compressible();
    // 64 MiB of zeros: a few KiB of zstd that would expand far past a block's 8 MiB.
    let zeros = std::io::Read::take(std::io::repeat(0), 64 << 20);
    let bomb = zstd::stream::encode_all(zeros, 19).unwrap();
    let other = zstd::bulk::compress(&b"other bytes ".repeat(100), 1).unwrap();
    let cases = [
        (Origin::Coded("zstd", bomb), "upstream_bad_encoding"),
        (
            Origin::Coded("zstd", b"not zstd at all".to_vec()),
            "upstream_bad_encoding",
        ),
        (
            Origin::Coded("zstd", encoded[..encoded.len() / 2].to_vec()),
            "upstream_bad_encoding",
        ),
        (Origin::Coded("gzip", encoded), "upstream_bad_encoding"),
        // Valid zstd of the wrong bytes: the decoded bytes are hashed like identity bytes.
        (Origin::Coded("zstd", other), "upstream_integrity"),
    ];
    for (served, code) in cases {
        let mut fake = Fake::default();
        let path = block(&mut fake, &content, served);
        for accept in [Some("zstd"), None] {
            let reply = req(&fake, "GET", &path, None, None, accept);
            assert_eq!(reply.status, 502, "{code}");
            assert_eq!(header(&reply, "cache-control"), Some("no-store"));
            assert_eq!(error_code(reply), code);
        }
        assert!(fake.cache.borrow().is_empty(), "{code}: neither key");
        assert_eq!(fake.origin_hits.borrow().len(), 2, "{code}: not cached");
    }
    const { assert!(MAX_BLOCK_SIZE < 64 << 20) };
}
