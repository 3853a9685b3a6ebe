//! The edge worker under `wrangler dev`, end to end: pulls through it, its cache, its integrity
//! gate and its errors. Needs scripts/edge-tools; fails (never skips) without them.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use prewarm_shared::Digest;
use prewarm_tests::edge::{Proxy, Rule, Wrangler};
use prewarm_tests::services::{Moto, Redis};
use prewarm_tests::{cli_json, error_code, http, pull_json, tree_snapshot, Origin};

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
    let pushed = cli_json(&[
        "push",
        src.to_str().unwrap(),
        "--name",
        "edgy:v1",
        "--to",
        &origin.url,
        "--json",
    ]);
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
