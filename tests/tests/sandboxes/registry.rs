//! The Redis registry of warm runtimes, on the shared Redis under this test's own node name and namespace.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::Node;

/// The shared Redis; tests use their own node names and key namespaces on it.
const REDIS_PORT: &str = "6379";

/// `redis-cli ARGS…` against the shared Redis.
fn redis(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", REDIS_PORT])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Deletes the keys matching its patterns on drop (pass or fail); never anything else.
struct RedisKeys(Vec<String>);

impl Drop for RedisKeys {
    fn drop(&mut self) {
        for pattern in &self.0 {
            for key in redis(&["--scan", "--pattern", pattern]).lines() {
                redis(&["DEL", key]);
            }
        }
    }
}

#[test]
fn redis_registry_lists_warm_runtimes_refreshes_on_use_and_withdraws_on_eviction() {
    let nanos = std::time::UNIX_EPOCH.elapsed().expect("clock").as_nanos();
    let unique = format!("wp-{}-{nanos:x}", std::process::id());
    let _cleanup = RedisKeys(vec![
        format!("prewarm:warm:{unique}:*"),
        format!("{unique}:*"),
    ]);
    let conf = tempfile::NamedTempFile::new().expect("config");
    let redis_url = format!("redis://127.0.0.1:{REDIS_PORT}");
    let toml = format!("[redis]\nurl = \"{redis_url}\"\nnamespace = \"{unique}\"\n");
    std::fs::write(conf.path(), toml).expect("config");
    let conf = conf.path().to_str().expect("utf-8");
    // A budget of one byte: the runtime stays only while a sandbox holds it.
    let node = Node::start(&[
        "--config",
        conf,
        "--node-name",
        &unique,
        "--warm-disk-budget",
        "1",
    ]);
    let hex = node.push_data("reg", b"data\n", json!([]));
    let key = format!("prewarm:warm:{unique}:{hex}");
    let sb = node.ready("reg");
    let entry: Value = node.until("the registry entry", || {
        serde_json::from_str(&redis(&["GET", &key])).ok()
    });
    let runtime_dir = node.runtimes_dir().join(&hex);
    assert_eq!(entry["runtime"], "reg:v1");
    assert_eq!(entry["node"], unique.as_str());
    assert_eq!(entry["env"], json!({"RT": "reg"}));
    assert_eq!(
        entry["mounts"],
        json!([{"source": runtime_dir.to_str(), "target": "/opt/reg", "readonly": true}])
    );
    let ttl: u64 = redis(&["TTL", &key]).parse().expect("ttl");
    assert!((3000..=3600).contains(&ttl), "TTL {ttl}");

    // Use refreshes the TTL and `last_used`.
    let used_before = entry["last_used"].as_u64().expect("last_used");
    redis(&["EXPIRE", &key, "100"]);
    let r = node.exec(&sb.sandbox_id, &["/opt/reg/bin/hello"]);
    assert_eq!(r.stdout, "hello from reg\n");
    node.until("a refreshed entry", || {
        let ttl: u64 = redis(&["TTL", &key]).parse().ok()?;
        let e: Value = serde_json::from_str(&redis(&["GET", &key])).ok()?;
        (ttl > 3000 && e["last_used"].as_u64()? > used_before).then_some(())
    });

    // Released, the runtime is over budget: evicted from disk and withdrawn from the registry.
    node.delete(&sb.sandbox_id);
    node.wait("withdrawal", || redis(&["EXISTS", &key]) == "0");
    assert!(!runtime_dir.exists());
}
