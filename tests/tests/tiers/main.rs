//! Tiers end to end: origins sharing one moto bucket and one Redis; outages and corruption of
//! real servers; Redis over TLS (`tls`); S3 credentials from the AWS chain (`s3_credentials`);
//! the store conformance suite against every backend and the stack (`conformance`); repair
//! through the durable tier (`repair`); garbage collection over every tier (`gc`).

mod conformance;
mod gc;
mod repair;
mod s3_credentials;
mod tls;

use std::path::{Path, PathBuf};

use prewarm_shared::{Digest, Manifest};
use prewarm_tests::services::{Moto, Redis};
use prewarm_tests::{cli, http, pull_json, write_pack, Origin};
use serde_json::Value;

const BUCKET: &str = "prewarm-e2e";

/// Starts `prewarm serve --config` with S3 (and Redis, if given); its data dir is `dir/data`.
fn origin(dir: &Path, moto: &Moto, redis: Option<&Redis>) -> Origin {
    origin_with(dir, moto, redis, "")
}

/// [`origin`] with `extra` TOML prepended (top-level tables such as `[local]`).
fn origin_with(dir: &Path, moto: &Moto, redis: Option<&Redis>, extra: &str) -> Origin {
    let config = write_config(dir, moto, redis, extra);
    Origin::start(&dir.join("data"), &["--config", config.to_str().unwrap()])
}

/// Writes [`origin_with`]'s config to `dir/prewarm.toml` and returns its path.
fn write_config(dir: &Path, moto: &Moto, redis: Option<&Redis>, extra: &str) -> PathBuf {
    let mut toml = extra.to_string();
    toml += &format!(
        "[s3]\nendpoint = \"{}\"\nbucket = \"{BUCKET}\"\nprefix = \"e2e/\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\nconnect_timeout_ms = 500\ntimeout_ms = 3000\n",
        moto.endpoint()
    );
    if let Some(r) = redis {
        toml.push_str(&format!(
            "[redis]\nurl = \"{}\"\ntimeout_ms = 300\n",
            r.url()
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("prewarm.toml");
    std::fs::write(&config, toml).unwrap();
    config
}

const PACK_FILES: [&str; 3] = ["bin/a", "lib/b", "lib/c"];

/// The contents of [`pack`]'s files for `seed`.
fn pack_contents(seed: u8) -> Vec<Vec<u8>> {
    (0..3u8)
        .map(|f| {
            (0..200_000u32)
                .map(|i| (i.wrapping_mul(31) as u8) ^ f ^ seed)
                .collect()
        })
        .collect()
}

/// A pack with a few blocks (files over the bundling size are one block each).
fn pack(dir: &Path, seed: u8) -> PathBuf {
    let files = pack_contents(seed);
    let entries = PACK_FILES
        .iter()
        .zip(&files)
        .map(|(n, c)| (*n, c.as_slice(), 0o644))
        .collect();
    let src = dir.join(format!("pack-{seed}"));
    write_pack(&src, "rt", &[("base", entries)], serde_json::json!({}));
    src
}

fn push(src: &Path, tag: &str, url: &str) -> std::process::Output {
    cli(&[
        "push",
        src.to_str().unwrap(),
        "--name",
        &format!("rt:{tag}"),
        "--to",
        url,
    ])
}

fn get(url: &str) -> reqwest::blocking::Response {
    http().get(url).send().unwrap()
}

/// Resolves `rt:TAG` at `url`, fetches the manifest and every block, checks every hash.
/// Returns the block digests.
fn fetch_runtime(url: &str, tag: &str) -> Vec<Digest> {
    let r = get(&format!("{url}/v1/runtimes/rt/tags/{tag}"));
    assert_eq!(r.status(), 200, "tag at {url}");
    let digest: Digest = r.json::<Value>().unwrap()["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = get(&format!("{url}/v1/manifests/{digest}"))
        .bytes()
        .unwrap();
    assert_eq!(Digest::of(&bytes), digest, "manifest bytes");
    let blocks: Vec<Digest> = Manifest::parse(&bytes)
        .unwrap()
        .blocks()
        .into_iter()
        .collect();
    assert!(blocks.len() >= 3);
    for b in &blocks {
        let r = get(&format!("{url}/v1/blocks/{b}"));
        assert_eq!(r.status(), 200, "block {b}");
        assert_eq!(Digest::of(&r.bytes().unwrap()), *b, "block {b} bytes");
    }
    blocks
}

fn metrics(url: &str) -> Value {
    get(&format!("{url}/metrics")).json().unwrap()
}

fn tier_counter(m: &Value, tier: &str, counter: &str) -> u64 {
    m["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == tier)
        .unwrap()[counter]
        .as_u64()
        .unwrap()
}

#[test]
fn a_runtime_pushed_to_one_origin_is_served_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, redis) = (Moto::start(), Redis::start());
    moto.create_bucket(BUCKET);
    let a = origin(&dir.path().join("a"), &moto, Some(&redis));
    let b = origin(&dir.path().join("b"), &moto, Some(&redis));
    let out = push(&pack(dir.path(), 1), "v1", &a.url);
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blocks = fetch_runtime(&b.url, "v1");
    let m = metrics(&b.url);
    assert!(
        tier_counter(&m, "redis", "hits") >= blocks.len() as u64,
        "small blocks came from Redis: {m}"
    );
    // A third origin without Redis gets everything from S3 alone.
    let c = origin(&dir.path().join("c"), &moto, None);
    fetch_runtime(&c.url, "v1");
    assert!(tier_counter(&metrics(&c.url), "s3", "hits") >= blocks.len() as u64);
    // And a host pulls the runtime from an origin it was never pushed to, exactly.
    let into = dir.path().join("pulled");
    pull_json("rt:v1", &b.url, &into, &dir.path().join("cache"), &[]);
    let src = pack_contents(1);
    for (name, bytes) in PACK_FILES.iter().zip(&src) {
        assert_eq!(&std::fs::read(into.join(name)).unwrap(), bytes, "{name}");
    }
    let ready = get(&format!("{}/readyz", b.url));
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().unwrap();
    assert_eq!(body["tiers"].as_array().unwrap().len(), 3, "{body}");
}

#[test]
fn requests_survive_a_redis_outage_and_use_it_again_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, mut redis) = (Moto::start(), Redis::start());
    moto.create_bucket(BUCKET);
    let a = origin(&dir.path().join("a"), &moto, Some(&redis));
    assert!(push(&pack(dir.path(), 2), "v1", &a.url).status.success());
    // A fresh origin (nothing on its disk), started while Redis is up: start-up probes every tier.
    let b = origin(&dir.path().join("b"), &moto, Some(&redis));
    redis.kill();
    fetch_runtime(&b.url, "v1");
    assert!(tier_counter(&metrics(&b.url), "redis", "errors") > 0);
    assert_eq!(
        get(&format!("{}/readyz", b.url)).status(),
        200,
        "Redis is optional by default"
    );
    let out = push(&pack(dir.path(), 3), "v2", &a.url);
    assert!(
        out.status.success(),
        "writes need S3, not Redis: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    redis.restart();
    // Back without restarting the origin: the tag a push moves is cached in Redis again…
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while redis.cli(&["EXISTS", "prewarm:v1:tag:rt:v3"]).trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "origin never used Redis again"
        );
        assert!(push(&pack(dir.path(), 4), "v3", &a.url).status.success());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // …and once B sees it again (its /readyz probe reconnects), blocks B reads through from
    // S3 are backfilled into it.
    while !get(&format!("{}/readyz", b.url)).json::<Value>().unwrap()["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "redis" && t["status"] == "ok")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "B never saw Redis again"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let blocks = fetch_runtime(&b.url, "v3");
    for d in blocks {
        assert_eq!(
            redis
                .cli(&["EXISTS", &format!("prewarm:v1:block:{}", d.hex())])
                .trim(),
            "1"
        );
    }
}

#[test]
fn with_s3_down_reads_are_served_and_writes_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut moto, redis) = (Moto::start(), Redis::start());
    moto.create_bucket(BUCKET);
    let a = origin(&dir.path().join("a"), &moto, Some(&redis));
    assert!(push(&pack(dir.path(), 5), "v1", &a.url).status.success());
    moto.kill();
    fetch_runtime(&a.url, "v1");
    let bytes = b"not durable anywhere".to_vec();
    let r = http()
        .put(format!("{}/v1/blocks/{}", a.url, Digest::of(&bytes)))
        .body(bytes)
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let out = push(&pack(dir.path(), 6), "v2", &a.url);
    assert!(!out.status.success(), "push must fail while S3 is down");
    // Nothing was acknowledged; with S3 down the origin cannot even say "not found".
    assert_eq!(
        get(&format!("{}/v1/runtimes/rt/tags/v2", a.url)).status(),
        503
    );
    let ready = get(&format!("{}/readyz", a.url));
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().unwrap();
    let s3 = body["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "s3")
        .unwrap()
        .clone();
    assert_eq!(
        (s3["status"].as_str(), s3["durable"].as_bool()),
        (Some("unavailable"), Some(true)),
        "{body}"
    );
}

#[test]
fn a_warm_that_cannot_reach_s3_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut moto = Moto::start();
    moto.create_bucket(BUCKET);
    let a = origin(&dir.path().join("a"), &moto, None);
    assert!(push(&pack(dir.path(), 7), "v1", &a.url).status.success());
    // Without Redis the tag lives only in S3, so resolving it for the warm needs S3.
    moto.kill();
    let r = http()
        .post(format!("{}/v1/warm", a.url))
        .json(&serde_json::json!({"runtime": "rt:v1"}))
        .send()
        .unwrap();
    let retry_after = r.headers().get("retry-after").cloned();
    assert_eq!(
        prewarm_tests::error_code(r),
        (503, "unavailable".to_string())
    );
    assert!(retry_after.is_some(), "503 without Retry-After");
}

#[test]
fn corrupt_bytes_in_any_tier_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, redis) = (Moto::start(), Redis::start());
    moto.create_bucket(BUCKET);
    let a = origin(&dir.path().join("a"), &moto, Some(&redis));
    assert!(push(&pack(dir.path(), 7), "v1", &a.url).status.success());
    let blocks = fetch_runtime(&a.url, "v1");
    let (x, y) = (blocks[0], blocks[1]);
    // Redis holds wrong bytes for x: the next tier (S3) serves the right ones.
    redis.cli(&[
        "SET",
        &format!("prewarm:v1:block:{}", x.hex()),
        "garbage of another length",
    ]);
    let b = origin(&dir.path().join("b"), &moto, Some(&redis));
    let r = get(&format!("{}/v1/blocks/{x}", b.url));
    assert_eq!(r.status(), 200);
    assert_eq!(Digest::of(&r.bytes().unwrap()), x);
    assert!(tier_counter(&metrics(&b.url), "redis", "integrity_failures") >= 1);
    // S3 (the last tier) holds wrong bytes for y and Redis has none: never the bytes; the
    // damaged copy is quarantined and y is missing (404) until a push repairs it (`repair`).
    redis.cli(&["DEL", &format!("prewarm:v1:block:{}", y.hex())]);
    moto.put_object(
        BUCKET,
        &format!("e2e/blocks-v1/{}", y.hex()),
        b"corrupted in the bucket",
    );
    let c = origin(&dir.path().join("c"), &moto, Some(&redis));
    let r = get(&format!("{}/v1/blocks/{y}", c.url));
    assert_eq!(r.status(), 404, "got {}", r.status());
    assert_ne!(
        Digest::of(&r.bytes().unwrap_or_default()),
        Digest::of(b"corrupted in the bucket")
    );
    assert!(tier_counter(&metrics(&c.url), "s3", "integrity_failures") >= 1);
    // The origin that has y on its own disk still serves it.
    assert_eq!(
        Digest::of(&get(&format!("{}/v1/blocks/{y}", a.url)).bytes().unwrap()),
        y
    );
}

#[test]
fn a_misconfigured_tier_stops_start_up_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let port = prewarm_tests::free_port();
    let out = cli(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--redis-url",
        &format!("redis://u:hunter2@127.0.0.1:{port}"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redis tier") && !err.contains("hunter2"),
        "{err}"
    );
    let out = cli(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--s3-endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--s3-bucket",
        "b",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("s3 tier"));
}

#[test]
fn a_crash_between_blocks_and_manifest_leaves_nothing_to_trip_on() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let a = origin(&dir.path().join("a"), &moto, None);
    // Blocks land, then the pusher dies before the manifest and the tag: a crash mid-push.
    let blocks: Vec<Vec<u8>> = pack_contents(7);
    for b in &blocks {
        let r = http()
            .put(format!("{}/v1/blocks/{}", a.url, Digest::of(b)))
            .body(b.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    a.kill();
    let a = origin(&dir.path().join("a"), &moto, None);
    // Readers see no runtime, not a broken one.
    assert_eq!(
        get(&format!("{}/v1/runtimes/rt/tags/v1", a.url)).status(),
        404
    );
    // The orphan blocks are durable and complete: a retried push uploads nothing for them.
    let out = cli(&[
        "push",
        pack(dir.path(), 7).to_str().unwrap(),
        "--name",
        "rt:v1",
        "--to",
        &a.url,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["blocks_uploaded"], 0, "{report}");
    fetch_runtime(&a.url, "v1");
}

#[test]
fn a_stateless_origin_serves_repeat_reads_from_memory_even_with_every_tier_down() {
    let dir = tempfile::tempdir().unwrap();
    let (mut moto, mut redis) = (Moto::start(), Redis::start());
    moto.create_bucket(BUCKET);
    let a = origin(&dir.path().join("a"), &moto, Some(&redis));
    assert!(push(&pack(dir.path(), 6), "v1", &a.url).status.success());
    let stateless = "[local]\nenabled = false\n[memory]\nmax_bytes = 16777216\n";
    let b = origin_with(&dir.path().join("b"), &moto, Some(&redis), stateless);
    let blocks = fetch_runtime(&b.url, "v1");
    let first = metrics(&b.url);
    assert_eq!(
        first["memory"]["inserts"].as_u64().unwrap(),
        blocks.len() as u64 + 1,
        "blocks + manifest: {first}"
    );
    // With Redis and S3 both gone, what B verified once is still served, byte for byte.
    redis.kill();
    moto.kill();
    for d in &blocks {
        let r = get(&format!("{}/v1/blocks/{d}", b.url));
        assert_eq!(r.status(), 200, "block {d}");
        assert_eq!(Digest::of(&r.bytes().unwrap()), *d);
    }
    let m = metrics(&b.url);
    assert!(
        m["memory"]["hits"].as_u64().unwrap() >= blocks.len() as u64,
        "{m}"
    );
    for tier in ["redis", "s3"] {
        assert_eq!(
            tier_counter(&m, tier, "hits"),
            tier_counter(&first, tier, "hits"),
            "{tier}: {m}"
        );
    }
    let prom = http()
        .get(format!("{}/metrics", b.url))
        .header("accept", "text/plain")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(prom.contains("prewarm_memory_hits_total"), "{prom}");
}
