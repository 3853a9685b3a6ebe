//! The edge worker under `wrangler dev`, end to end: pulls through it, its cache, its integrity
//! gate, conditional requests and its errors. Needs scripts/edge-tools; fails (never skips)
//! without them.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use prewarm_shared::{Digest, Entry, Manifest};
use prewarm_tests::edge::{Proxy, Rule, Wrangler};
use prewarm_tests::services::{Moto, Redis};
use prewarm_tests::{error_code, http, pull_json, push_json, tree_snapshot, Origin};

/// The production shape behind the edge: an origin on S3 (moto) with Redis in front.
fn tiered_origin(dir: &Path, moto: &Moto, redis: &Redis) -> Origin {
    moto.create_bucket("prewarm-edge-e2e");
    let toml = format!(
        "[s3]\nendpoint = \"{}\"\nbucket = \"prewarm-edge-e2e\"\naccess_key_id = \"test\"\n\
         secret_access_key = \"test\"\n[redis]\nurl = \"{}\"\n",
        moto.endpoint(),
        redis.url()
    );
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("prewarm.toml");
    std::fs::write(&config, toml).unwrap();
    Origin::start(&dir.join("data"), &["--config", config.to_str().unwrap()])
}

/// What a user sees of a tree, read/execute bits only (write bits differ by link mode:
/// hard-linked files are read-only).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    tree_snapshot(root, 0o555)
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("lib/site")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("bin/run"), b"#!/bin/sh\necho edge\n").unwrap();
    std::fs::set_permissions(root.join("bin/run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("run", root.join("bin/alias")).unwrap();
    for i in 0..120 {
        let text = format!("# module {i}\n").repeat(i % 9 + 1);
        std::fs::write(root.join(format!("lib/site/m{i:03}.py")), text).unwrap();
    }
    // Several megabytes of incompressible bytes: more than one content-defined block.
    let mut big = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x2545F4914F6CDD1D;
    while big.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(root.join("lib/libbig.so"), big).unwrap();
}

/// A runtime pulled through the edge from a tiered origin is exact, and a second host's pull is
/// served from the edge cache: the origin sees no second request for any block or the manifest.
#[test]
fn pulls_through_the_edge_are_exact_and_cached() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let (moto, redis) = (Moto::start(), Redis::start());
    let origin = tiered_origin(&work.path().join("origin"), &moto, &redis);
    let pushed = push_json(&src, "edgy:v1", &origin.url);
    let proxy = Proxy::start(Some(&origin.url));
    let edge = Wrangler::start(&proxy.url, &[]);

    let first = pull_json(
        "edgy:v1",
        &edge.url,
        &work.path().join("rt1"),
        &work.path().join("cache1"),
        &[],
    );
    assert_eq!(first["digest"], pushed["digest"]);
    assert_eq!(first["blocks_downloaded"], pushed["blocks_total"]);
    assert_eq!(snapshot(&src), snapshot(&work.path().join("rt1")));
    let blocks = proxy.count("/v1/blocks/");
    let manifests = proxy.count("/v1/manifests/");
    assert_eq!(
        blocks as u64,
        pushed["blocks_total"].as_u64().unwrap(),
        "each block fetched once: {:?}",
        proxy.hits()
    );
    assert_eq!(manifests, 1);
    edge.settle(&proxy);

    // Another host (another cache dir) downloads everything again, all from the edge.
    let second = pull_json(
        "edgy:v1",
        &edge.url,
        &work.path().join("rt2"),
        &work.path().join("cache2"),
        &[],
    );
    assert_eq!(second["blocks_downloaded"], pushed["blocks_total"]);
    assert_eq!(snapshot(&src), snapshot(&work.path().join("rt2")));
    assert_eq!(
        proxy.count("/v1/blocks/"),
        blocks,
        "second pull reached the origin: {:?}",
        proxy.hits()
    );
    assert_eq!(proxy.count("/v1/manifests/"), manifests);

    // The edge serves what it caches with immutable headers, and ranges from the cache.
    let manifest_url = format!(
        "{}/v1/manifests/{}",
        edge.url,
        pushed["digest"].as_str().unwrap()
    );
    let resp = http().get(&manifest_url).send().unwrap();
    assert_eq!(resp.headers()["x-prewarm-cache"], "hit");
    assert_eq!(
        resp.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let whole = resp.bytes().unwrap();
    let part = http()
        .get(&manifest_url)
        .header("range", "bytes=1-8")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap(), whole[1..9]);

    // Writes are refused at the edge and never reach the origin.
    let seen = proxy.hits().len();
    let put = http()
        .put(format!("{}/v1/runtimes/edgy/tags/v1", edge.url))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(error_code(put), (405, "method_not_allowed".to_string()));
    assert_eq!(proxy.hits().len(), seen);
}

/// The blocks a pull once failed on (4 MiB of zeros or JSON schemas, exact multiples of zstd's
/// block) and every other size class and kind, through the edge with zstd: byte-exact, and the
/// edge's cached copies serve a second host exactly too.
#[test]
fn zstd_pulls_of_awkward_blocks_through_the_edge_are_exact() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    prewarm_tests::blocks::write_awkward_tree(&src);
    let origin = Origin::start(&work.path().join("origin"), &[]);
    let pushed = push_json(&src, "awkward:v1", &origin.url);
    let edge = Wrangler::start(&origin.url, &[]);
    for host in ["a", "b"] {
        let pulled = pull_json(
            "awkward:v1",
            &edge.url,
            &work.path().join(format!("rt-{host}")),
            &work.path().join(format!("cache-{host}")),
            &["--compress", "zstd"],
        );
        assert_eq!(pulled["digest"], pushed["digest"]);
        assert_eq!(
            snapshot(&src),
            snapshot(&work.path().join(format!("rt-{host}")))
        );
    }
}

/// A tree that compresses well: text, as most of a Python runtime is.
fn make_text_tree(root: &Path) {
    std::fs::create_dir_all(root.join("lib")).unwrap();
    for i in 0..40 {
        let text = format!("def handler_{i}(event, context):\n    return {{'ok': {i}}}\n")
            .repeat(600 + i * 37);
        std::fs::write(root.join(format!("lib/mod{i:02}.py")), text).unwrap();
    }
}

/// zstd through the edge: a `--compress zstd` pull moves far fewer bytes than it writes and is
/// exact; the edge cached both representations, so a `--compress never` pull from another host
/// gets identity bytes from the edge cache without asking the origin again.
#[test]
fn zstd_pulls_through_the_edge_are_exact_and_cache_both_codings() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_text_tree(&src);
    let origin = Origin::start(&work.path().join("origin"), &[]);
    let pushed = push_json(&src, "zippy:v1", &origin.url);
    let proxy = Proxy::start(Some(&origin.url));
    let edge = Wrangler::start(&proxy.url, &[]);

    // 127.0.0.1 is loopback, where `auto` would not ask for zstd: ask explicitly.
    let first = pull_json(
        "zippy:v1",
        &edge.url,
        &work.path().join("rt1"),
        &work.path().join("cache1"),
        &["--compress", "zstd"],
    );
    assert_eq!(first["digest"], pushed["digest"]);
    assert_eq!(snapshot(&src), snapshot(&work.path().join("rt1")));
    let (wire, raw) = (
        first["bytes_on_wire"].as_u64().unwrap(),
        first["bytes_downloaded"].as_u64().unwrap(),
    );
    assert!(raw > 1 << 20, "{first}");
    assert!(
        wire * 4 < raw,
        "zstd through the edge: {wire} on the wire for {raw}"
    );
    let blocks = proxy.count("/v1/blocks/");
    assert_eq!(blocks as u64, pushed["blocks_total"].as_u64().unwrap());
    edge.settle(&proxy);

    // Another host that refuses zstd: identity, exact, all from the edge cache.
    let second = pull_json(
        "zippy:v1",
        &edge.url,
        &work.path().join("rt2"),
        &work.path().join("cache2"),
        &["--compress", "never"],
    );
    assert_eq!(snapshot(&src), snapshot(&work.path().join("rt2")));
    assert_eq!(second["bytes_on_wire"], second["bytes_downloaded"]);
    assert_eq!(second["bytes_downloaded"], first["bytes_downloaded"]);
    assert_eq!(
        proxy.count("/v1/blocks/"),
        blocks,
        "identity was not served from the edge cache: {:?}",
        proxy.hits()
    );
    assert_eq!(proxy.count("/v1/manifests/"), 1);

    // What each kind of client sees for the manifest, straight from the edge cache.
    let manifest_path = format!("/v1/manifests/{}", pushed["digest"].as_str().unwrap());
    edge.wait_cached(&manifest_path, &[("accept-encoding", "zstd")], Some("zstd"));
    let url = format!(
        "{}/v1/manifests/{}",
        edge.url,
        pushed["digest"].as_str().unwrap()
    );
    let plain = http()
        .get(&url)
        .header("accept-encoding", "identity")
        .send()
        .unwrap();
    assert_eq!(plain.headers()["x-prewarm-cache"], "hit");
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.headers()["etag"].to_str().unwrap().starts_with('"'));
    let identity = plain.bytes().unwrap();
    assert_eq!(Digest::of(&identity).to_string(), pushed["digest"]);
    let zstd = http()
        .get(&url)
        .header("accept-encoding", "zstd")
        .send()
        .unwrap();
    assert_eq!(zstd.headers()["x-prewarm-cache"], "hit");
    assert_eq!(zstd.headers()["content-encoding"], "zstd");
    assert!(zstd.headers()["etag"].to_str().unwrap().starts_with("W/\""));
    let encoded = zstd.bytes().unwrap();
    assert!(encoded.len() < identity.len());
    assert_eq!(
        zstd::bulk::decompress(&encoded, identity.len()).unwrap(),
        identity
    );
    let part = http()
        .get(&url)
        .header("accept-encoding", "zstd")
        .header("range", "bytes=0-9")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert!(part.headers().get("content-encoding").is_none());
    assert_eq!(part.bytes().unwrap(), identity[..10]);
    assert_eq!(proxy.count("/v1/manifests/"), 1);
}

/// Wrong bytes from upstream are a 502 and are never cached; a hung origin is a 504; a dead one
/// is a 502; all with JSON bodies.
#[test]
fn misbehaving_and_dead_upstreams_give_clear_errors() {
    let mut upstream = Proxy::start(None);
    let edge = Wrangler::start(&upstream.url, &["ORIGIN_TIMEOUT_MS:2000"]);
    let c = http();

    let good = b"the bytes a digest names".to_vec();
    let mut evil = good.clone();
    evil[5] ^= 1;
    let path = format!("/v1/blocks/{}", Digest::of(&good));
    upstream.set_rule(&path, Rule::Canned(evil));
    for round in 1..=2 {
        let resp = c.get(format!("{}{path}", edge.url)).send().unwrap();
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(error_code(resp), (502, "upstream_integrity".to_string()));
        assert_eq!(
            upstream.count(&path),
            round,
            "the bad bytes were served from the edge cache"
        );
    }
    let ranged = c
        .get(format!("{}{path}", edge.url))
        .header("range", "bytes=0-3")
        .send()
        .unwrap();
    assert_eq!(error_code(ranged).0, 502);

    // Correct bytes are then accepted and cached.
    upstream.set_rule(&path, Rule::Canned(good.clone()));
    for _ in 0..2 {
        let resp = c.get(format!("{}{path}", edge.url)).send().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().unwrap(), good);
    }
    assert_eq!(upstream.count(&path), 4);

    let missing = format!("/v1/manifests/{}", Digest::of(b"never pushed"));
    assert_eq!(
        error_code(c.get(format!("{}{missing}", edge.url)).send().unwrap()),
        (404, "not_found".to_string())
    );

    let slow = format!("/v1/blocks/{}", Digest::of(b"slow"));
    upstream.set_rule(&slow, Rule::Hang);
    assert_eq!(
        error_code(c.get(format!("{}{slow}", edge.url)).send().unwrap()),
        (504, "origin_timeout".to_string())
    );

    upstream.stop();
    let dead = format!("/v1/blocks/{}", Digest::of(b"dead"));
    let resp = c.get(format!("{}{dead}", edge.url)).send().unwrap();
    assert_eq!(
        error_code(resp),
        (502, "origin_unreachable".to_string()),
        "{}",
        edge.log_tail()
    );
    // The cached block still serves while the origin is down.
    assert_eq!(
        c.get(format!("{}{path}", edge.url))
            .send()
            .unwrap()
            .bytes()
            .unwrap(),
        good
    );
}

/// Conditional requests get the origin's answers through the edge. A matching `If-None-Match`
/// gives a `304` with no body, for GET, HEAD and ranges alike. The first one costs a single
/// verified origin fetch, and later ones cost no origin request. A missing object is still a
/// `404`, and tags have no ETag at either tier.
#[test]
fn conditional_requests_are_answered_like_the_origin() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("bin/tool"), b"#!/bin/sh\necho conditional\n").unwrap();
    std::fs::write(src.join("README"), b"a small runtime\n".repeat(50)).unwrap();
    let origin = Origin::start(&work.path().join("origin"), &[]);
    let pushed = push_json(&src, "cond:v1", &origin.url);
    let proxy = Proxy::start(Some(&origin.url));
    let edge = Wrangler::start(&proxy.url, &[]);
    let c = http();

    let manifest_digest = pushed["digest"].as_str().unwrap().to_string();
    let manifest_path = format!("/v1/manifests/{manifest_digest}");
    let manifest_bytes = c
        .get(format!("{}{manifest_path}", origin.url))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let manifest = Manifest::parse(&manifest_bytes).unwrap();
    let (block, block_bytes) = manifest
        .entries
        .iter()
        .find_map(|e| match e {
            Entry::File { chunks, .. } => chunks.first().map(|c| c.block),
            _ => None,
        })
        .map(|d| {
            let url = format!("{}/v1/blocks/{d}", origin.url);
            (d, c.get(url).send().unwrap().bytes().unwrap())
        })
        .unwrap();
    let block_path = format!("/v1/blocks/{block}");
    let etag = format!("\"{block}\"");
    let other = format!("\"{}\"", Digest::of(b"something else"));

    let send = |base: &str, method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut req = c.request(method.parse().unwrap(), format!("{base}{path}"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().unwrap()
    };
    let assert_304 = |resp: reqwest::blocking::Response, digest: &str, cache: &str| {
        assert_eq!(resp.status(), 304, "{:?}", resp.headers());
        let h = resp.headers().clone();
        assert_eq!(h["etag"], format!("\"{digest}\"").as_str());
        assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(h["x-prewarm-cache"], cache);
        assert!(
            h.get("content-length").is_none(),
            "a 304 carries no body length: {h:?}"
        );
        assert!(resp.bytes().unwrap().is_empty());
    };

    // Not yet at the edge: one verified fetch confirms the block exists, then 304.
    let first = send(&edge.url, "GET", &block_path, &[("if-none-match", &etag)]);
    assert_304(first, &block.to_string(), "miss");
    assert_eq!(proxy.count(&block_path), 1);
    edge.wait_cached(&block_path, &[], None);

    // Now cached: every conditional form is answered by the edge alone.
    let weak = format!("W/{etag}");
    let listed = format!("{other}, {etag}");
    for (method, headers) in [
        ("GET", vec![("if-none-match", etag.as_str())]),
        ("HEAD", vec![("if-none-match", etag.as_str())]),
        ("GET", vec![("if-none-match", weak.as_str())]),
        ("GET", vec![("if-none-match", listed.as_str())]),
        ("GET", vec![("if-none-match", "*")]),
        (
            "GET",
            vec![("if-none-match", etag.as_str()), ("range", "bytes=0-3")],
        ),
    ] {
        let resp = send(&edge.url, method, &block_path, &headers);
        assert_304(resp, &block.to_string(), "hit");
    }
    let full = send(&edge.url, "GET", &block_path, &[("if-none-match", &other)]);
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["x-prewarm-cache"], "hit");
    assert_eq!(full.bytes().unwrap(), block_bytes);
    assert_eq!(
        proxy.count(&block_path),
        1,
        "a conditional request on a cached block reached the origin: {:?}",
        proxy.hits()
    );

    // The origin answers the same requests the same way.
    for (method, field, status) in [
        ("GET", etag.as_str(), 304),
        ("HEAD", etag.as_str(), 304),
        ("GET", "*", 304),
        ("GET", other.as_str(), 200),
    ] {
        let headers = [("if-none-match", field)];
        let at_origin = send(&origin.url, method, &block_path, &headers).status();
        let at_edge = send(&edge.url, method, &block_path, &headers).status();
        let (at_origin, at_edge) = (at_origin.as_u16(), at_edge.as_u16());
        assert_eq!((at_origin, at_edge), (status, status), "{method} {field}");
    }

    // A manifest: cached by a plain GET, then 304 from the cache.
    let plain = send(&edge.url, "GET", &manifest_path, &[]);
    assert_eq!(plain.bytes().unwrap(), manifest_bytes);
    edge.wait_cached(&manifest_path, &[], None);
    let manifest_etag = format!("\"{manifest_digest}\"");
    for method in ["GET", "HEAD"] {
        let resp = send(
            &edge.url,
            method,
            &manifest_path,
            &[("if-none-match", &manifest_etag)],
        );
        assert_304(resp, &manifest_digest, "hit");
    }
    assert_eq!(proxy.count(&manifest_path), 1);

    // A 304 never stands in for an object the origin does not have.
    let missing = format!("/v1/blocks/{}", Digest::of(b"never pushed"));
    let resp = send(&edge.url, "GET", &missing, &[("if-none-match", "*")]);
    assert_eq!(error_code(resp), (404, "not_found".to_string()));

    // Tags carry no ETag at the origin, so If-None-Match changes nothing at either tier.
    for base in [&origin.url, &edge.url] {
        let resp = send(
            base,
            "GET",
            "/v1/runtimes/cond/tags/v1",
            &[("if-none-match", "*")],
        );
        assert_eq!(resp.status(), 200, "{base}");
        assert!(resp.headers().get("etag").is_none());
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(body["digest"], pushed["digest"]);
    }
}

/// A large wrong body never arrives as a complete 200 and is never cached, whether the edge
/// hashes it before answering (the default: a clean 502) or streams it to the client while it
/// is hashed (`STREAM_ABOVE_BYTES`: the last chunk is held back until the digest matched, and
/// the response declares the origin's length, so the client's body breaks short).
#[test]
fn a_large_wrong_body_never_completes_and_is_never_cached() {
    for vars in [&[][..], &["STREAM_ABOVE_BYTES:262144"][..]] {
        large_wrong_body(vars);
    }
}

fn large_wrong_body(vars: &[&str]) {
    let upstream = Proxy::start(None);
    let edge = Wrangler::start(&upstream.url, vars);
    let c = http();

    let good: Vec<u8> = (0..(1u32 << 20) + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut evil = good.clone();
    *evil.last_mut().unwrap() ^= 1;
    let path = format!("/v1/blocks/{}", Digest::of(&good));
    upstream.set_rule(&path, Rule::Canned(evil.clone()));
    for round in 1..=2 {
        let complete_200 = match c.get(format!("{}{path}", edge.url)).send() {
            Ok(resp) if resp.status() == 200 => resp.bytes().is_ok(),
            _ => false,
        };
        assert!(
            !complete_200,
            "{vars:?} round {round}: a complete 200 of wrong bytes\n{}",
            edge.log_tail()
        );
        assert_eq!(upstream.count(&path), round, "the wrong bytes were cached");
    }

    upstream.set_rule(&path, Rule::Canned(good.clone()));
    // The good bytes are cached after the answer (`wait_until`), so a GET right behind the
    // first may still be a miss: every GET is exact, and a hit follows within seconds.
    let mut misses = 0;
    let mut hit = false;
    for _ in 0..50 {
        let resp = c.get(format!("{}{path}", edge.url)).send().unwrap();
        assert_eq!(resp.status(), 200);
        let cache = resp.headers()["x-prewarm-cache"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(resp.bytes().unwrap(), good);
        if cache == "hit" {
            hit = true;
            break;
        }
        misses += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(hit, "{vars:?}: the good bytes were never cached");
    assert!(misses >= 1, "{vars:?}: the first good GET cannot be a hit");
    assert_eq!(upstream.count(&path), 2 + misses);
}

/// Two real origins behind one edge (`ORIGINS`); the preferred one is SIGKILLed in the middle
/// of a pull. The edge fails over to the other, and the pull completes, byte-exact.
#[test]
fn a_pull_survives_an_origin_killed_mid_pull() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let first = Origin::start(&work.path().join("origin-a"), &[]);
    let second = Origin::start(&work.path().join("origin-b"), &[]);
    let pushed = push_json(&src, "twin:v1", &first.url);
    push_json(&src, "twin:v1", &second.url);
    let blocks = pushed["blocks_total"].as_u64().unwrap() as usize;
    assert!(blocks >= 4, "{pushed}");
    // Counting proxies in front of both; the first kills its origin at the second block.
    let (a, b) = (
        Proxy::start(Some(&first.url)),
        Proxy::start(Some(&second.url)),
    );
    a.kill_upstream_at("/v1/blocks/", 2, first.pid());
    // Regions no request comes from: the configured order decides, so `a` is preferred.
    let origins = format!(
        r#"ORIGINS:[{{"url":"{}","region":"nowhere-a"}},{{"url":"{}","region":"nowhere-b"}}]"#,
        a.url, b.url
    );
    let edge = Wrangler::start("http://127.0.0.1:9", &[&origins]);

    let pulled = pull_json(
        "twin:v1",
        &edge.url,
        &work.path().join("rt"),
        &work.path().join("cache"),
        &[],
    );
    assert_eq!(pulled["digest"], pushed["digest"]);
    assert_eq!(snapshot(&src), snapshot(&work.path().join("rt")));
    let (from_a, from_b) = (a.count("/v1/blocks/"), b.count("/v1/blocks/"));
    assert!(from_a >= 2, "a was asked before it died: {:?}", a.hits());
    assert!(from_b >= 1, "b took over: {:?}", b.hits());
    assert!(
        from_b < blocks + 1 && from_a <= blocks,
        "a: {:?}\nb: {:?}",
        a.hits(),
        b.hits()
    );
    // The tag and the manifest came from the preferred origin, while it was up.
    assert_eq!(a.count("/v1/runtimes/"), 1);
    assert_eq!(b.count("/v1/runtimes/"), 0);
    drop(first);
}
