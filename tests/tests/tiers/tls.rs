//! The Redis tier over TLS (`rediss://`), against a real redis-server with a throwaway CA.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use prewarm_tests::prewarm_bin;
use prewarm_tests::services::{Moto, Redis};

use super::{fetch_runtime, metrics, origin_with, pack, push, tier_counter, write_config, BUCKET};

/// `[redis]` for the TLS server `redis` at `url`, trusting its CA, plus `more` keys.
fn redis_toml(url: &str, redis: &Redis, more: &str) -> String {
    format!(
        "[redis]\nurl = \"{url}\"\nca_file = \"{}\"\ntimeout_ms = 2000\n{more}",
        redis.certs().ca().display()
    )
}

/// Runs `prewarm serve --config CONFIG`, which must fail before listening; returns its stderr.
/// Should it start after all, it is killed and the test fails (rather than hanging).
fn serve_fails(config: &Path) -> String {
    let data = config.with_file_name("data");
    let mut child = Command::new(prewarm_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(&data)
        .env("PREWARM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prewarm serve");
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.starts_with("listening on ") {
            let _ = child.kill();
            let _ = child.wait();
            panic!("prewarm serve started with {}", config.display());
        }
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "serve exited 0: {err}");
    err
}

#[test]
fn a_redis_tier_over_tls_with_a_private_ca_serves_a_stateless_origin() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, redis) = (Moto::start(), Redis::start_tls());
    moto.create_bucket(BUCKET);
    let tls = redis_toml(&redis.url(), &redis, "");
    let a = origin_with(&dir.path().join("a"), &moto, None, &tls);
    let out = push(&pack(dir.path(), 11), "v1", &a.url);
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        redis.cli(&["EXISTS", "prewarm:v1:tag:rt:v1"]).trim(),
        "1",
        "the push reached Redis over TLS"
    );
    // No disk and no memory cache: every read goes to Redis (over TLS) or S3.
    let stateless = format!("[local]\nenabled = false\n[memory]\nmax_bytes = 0\n{tls}");
    let b = origin_with(&dir.path().join("b"), &moto, None, &stateless);
    let blocks = fetch_runtime(&b.url, "v1");
    let m = metrics(&b.url);
    assert!(
        tier_counter(&m, "redis", "hits") >= blocks.len() as u64,
        "blocks came from Redis: {m}"
    );
    assert_eq!(tier_counter(&m, "redis", "errors"), 0, "{m}");

    // The same origin without the private CA: the public roots do not vouch for this server,
    // so start-up stops, naming the tier, without printing the password.
    let untrusted = format!(
        "[redis]\nurl = \"rediss://:hunter2@127.0.0.1:{}\"\ntimeout_ms = 2000\n",
        redis.port
    );
    let config = write_config(&dir.path().join("c"), &moto, None, &untrusted);
    let err = serve_fails(&config);
    assert!(
        err.contains("redis tier rediss://:***@127.0.0.1")
            && err.to_lowercase().contains("certificate")
            && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn a_redis_that_requires_client_certificates_gets_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, redis) = (Moto::start(), Redis::start_mtls());
    moto.create_bucket(BUCKET);
    let without = redis_toml(&redis.url(), &redis, "");
    let err = serve_fails(&write_config(&dir.path().join("a"), &moto, None, &without));
    assert!(err.contains("redis tier"), "{err}");
    let certs = redis.certs();
    let with = redis_toml(
        &redis.url(),
        &redis,
        &format!(
            "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            certs.client_cert().display(),
            certs.client_key().display()
        ),
    );
    let b = origin_with(&dir.path().join("b"), &moto, None, &with);
    assert!(push(&pack(dir.path(), 12), "v1", &b.url).status.success());
    assert_eq!(redis.cli(&["EXISTS", "prewarm:v1:tag:rt:v1"]).trim(), "1");
}

#[test]
fn an_unreadable_ca_file_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let missing = dir.path().join("no-such-ca.pem");
    let toml = format!(
        "[redis]\nurl = \"rediss://127.0.0.1:1\"\nca_file = \"{}\"\n",
        missing.display()
    );
    let err = serve_fails(&write_config(&dir.path().join("a"), &moto, None, &toml));
    assert!(
        err.contains("redis tier") && err.contains(&missing.display().to_string()),
        "{err}"
    );
}
