//! The Redis registry of warm runtimes: on the shared Redis under this test's own node name and namespace, and on a private Redis across an origin restart.

use std::path::Path;
use std::process::Command;

use prewarm_tests::services::Redis;
use serde_json::{json, Value};

use crate::support::Node;

/// The shared Redis; tests use their own node names and key namespaces on it.
const REDIS_PORT: &str = "6379";

/// `redis-cli ARGS…` against the shared Redis.
pub(crate) fn redis(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", REDIS_PORT])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Deletes the keys matching its patterns on drop (pass or fail); never anything else.
pub(crate) struct RedisKeys(pub(crate) Vec<String>);

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

/// Removes a sealed (read-only) runtime tree, as a disk clean-up on the host would.
fn remove_sealed(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let writable = std::fs::Permissions::from_mode(0o755);
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        std::fs::set_permissions(&d, writable.clone()).expect("chmod");
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            }
        }
    }
    std::fs::remove_dir_all(dir).expect("remove the runtime tree");
}

#[test]
fn a_restarted_origin_republishes_the_runtimes_it_still_holds_and_use_refreshes_them() {
    let redis = Redis::start();
    let cli = |args: &[&str]| redis.cli(args).trim().to_string();
    let conf = tempfile::NamedTempFile::new().expect("config");
    std::fs::write(conf.path(), format!("[redis]\nurl = \"{}\"\n", redis.url())).expect("config");
    let node_name = "restarted";
    let args = [
        "--config",
        conf.path().to_str().expect("utf-8"),
        "--node-name",
        node_name,
    ];
    let node = Node::start(&args);
    let keep = node.push_data("keep", b"kept\n", json!([]));
    let gone = node.push_data("gone", b"gone\n", json!([]));
    node.warm("keep");
    node.warm("gone");
    let (keep_key, gone_key) = (
        format!("prewarm:warm:{node_name}:{keep}"),
        format!("prewarm:warm:{node_name}:{gone}"),
    );
    node.wait("both registered", || {
        cli(&["EXISTS", &keep_key, &gone_key]) == "2"
    });
    let (keep_dir, gone_dir) = (
        node.runtimes_dir().join(&keep),
        node.runtimes_dir().join(&gone),
    );

    // While the origin is down, keep's entry leaves Redis (expired, flushed) and gone's tree
    // leaves the disk, while its entry stays behind.
    let node = node.restart(&args, || {
        assert_eq!(cli(&["DEL", &keep_key]), "1");
        remove_sealed(&gone_dir);
    });

    let entry: Value = node.until("keep republished", || {
        serde_json::from_str(&cli(&["GET", &keep_key])).ok()
    });
    assert_eq!(entry["runtime"], "keep:v1");
    assert_eq!(entry["node"], node_name);
    assert_eq!(entry["env"], json!({"RT": "keep"}));
    assert_eq!(
        entry["mounts"],
        json!([{"source": keep_dir.to_str(), "target": "/opt/keep", "readonly": true}])
    );
    let ttl: i64 = cli(&["TTL", &keep_key]).parse().expect("ttl");
    assert!(ttl > 0 && ttl <= 3600, "TTL {ttl}");
    node.wait("gone withdrawn", || cli(&["EXISTS", &gone_key]) == "0");
    assert_eq!(node.stats().warm_runtimes, 1);

    // The node index survived: keep is hot, and using it refreshes `last_used` and the TTL.
    let used_before = entry["last_used"].as_u64().expect("last_used");
    cli(&["EXPIRE", &keep_key, "100"]);
    let (code, sb) = node.create(json!({"runtime": "keep:v1", "user_id": "u"}));
    assert_eq!(code, 201, "{sb:?}");
    assert!(sb.hot);
    assert_eq!(node.stats().warms_started, 0, "nothing warmed again");
    node.until("a refreshed entry", || {
        let ttl: i64 = cli(&["TTL", &keep_key]).parse().ok()?;
        let e: Value = serde_json::from_str(&cli(&["GET", &keep_key])).ok()?;
        (ttl > 100 && e["last_used"].as_u64()? > used_before).then_some(())
    });
    let r = node.exec(&sb.sandbox_id, &["/opt/keep/bin/hello"]);
    assert_eq!(r.stdout, "hello from keep\n");
}
