//! End-to-end: the warm node's policies on a real `prewarm serve`: LRU eviction under the disk budget, idle sandboxes, queue priority, the Redis registry, `network: true`, cache damage.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use prewarm_shared::sandbox::{ExecResult, SandboxInfo, Status, Step, WarmState, WarmStats};
use prewarm_tests::{cli_json, http, write_pack, Origin};
use serde_json::{json, Value};

/// The shared Redis; tests use their own node names and key namespaces on it.
const REDIS_PORT: &str = "6379";

struct Node {
    origin: Origin,
    data: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Node {
    fn start(extra: &[&str]) -> Node {
        let data = tempfile::tempdir().expect("data dir");
        let work = tempfile::tempdir().expect("work dir");
        let origin = Origin::start(data.path(), extra);
        Node { origin, data, work }
    }

    /// Pushes `NAME:v1`: `bin/hello`, `lib/data` (`data` bytes) mounted at `/opt/NAME`.
    /// Returns the manifest digest's hex.
    fn push(&self, name: &str, data: &[u8], warm: Value) -> String {
        let dir = self.work.path().join(name);
        let hello = format!("#!/bin/sh\necho hello from {name}\n");
        let (bin, lib): (&[u8], &[u8]) = (hello.as_bytes(), data);
        let files = vec![
            ("bin/", &b""[..], 0o755),
            ("bin/hello", bin, 0o755),
            ("lib/", b"", 0o755),
            ("lib/data", lib, 0o644),
        ];
        let meta = json!({"prefix": format!("/opt/{name}"), "env": {"RT": name}, "warm": warm});
        write_pack(&dir, name, &[("base", files)], meta);
        let pushed = cli_json(&[
            "push",
            dir.to_str().expect("utf-8"),
            "--name",
            &format!("{name}:v1"),
            "--to",
            &self.origin.url,
            "--json",
        ]);
        let digest = pushed["digest"].as_str().expect("pushed digest");
        digest.trim_start_matches("sha256:").to_string()
    }

    /// `METHOD URL/PATH` with a JSON body (unless null): the status and the body as JSON.
    fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.origin.url);
        let req = http().request(method.parse().expect("method"), url);
        let r = if body.is_null() { req } else { req.json(&body) };
        let r = r.send().expect(path);
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    }

    fn create(&self, body: Value) -> (u16, SandboxInfo) {
        let (code, info) = self.call("POST", "/v1/sandboxes", body);
        (code, serde_json::from_value(info).expect("sandbox info"))
    }

    /// The sandbox's state, `None` once it is gone (404).
    fn get(&self, id: &str) -> Option<SandboxInfo> {
        let (code, info) = self.call("GET", &format!("/v1/sandboxes/{id}"), Value::Null);
        (code != 404).then(|| serde_json::from_value(info).expect("sandbox info"))
    }

    /// Waits until the sandbox is no longer warming.
    fn settled(&self, id: &str) -> SandboxInfo {
        self.until(&format!("{id} warm or failed"), || {
            self.get(id).filter(|i| i.state.status != Status::Warming)
        })
    }

    /// Creates a sandbox of `NAME:v1` and waits until it is ready.
    fn ready(&self, name: &str) -> SandboxInfo {
        let (_, info) = self.create(json!({"runtime": format!("{name}:v1"), "user_id": "u"}));
        let done = self.settled(&info.sandbox_id);
        assert_eq!(done.state.status, Status::Ready, "{done:?}");
        done
    }

    /// `POST /v1/warm` for `NAME:v1` (no sandbox holds it), and waits for `warms_succeeded`.
    fn warm(&self, name: &str) {
        let before = self.stats().warms_succeeded;
        let body = json!({"runtime": format!("{name}:v1")});
        assert_eq!(
            self.call("POST", "/v1/warm", body).0,
            202,
            "{name} was cold"
        );
        self.wait(&format!("{name} warm"), || {
            self.stats().warms_succeeded > before
        });
    }

    fn exec(&self, id: &str, cmd: &[&str]) -> ExecResult {
        let path = format!("/v1/sandboxes/{id}/exec");
        let (code, r) = self.call("POST", &path, json!({ "cmd": cmd }));
        assert_eq!(code, 200, "exec {cmd:?} in {id}: {r}");
        serde_json::from_value(r).expect("exec result")
    }

    fn delete(&self, id: &str) {
        let path = format!("/v1/sandboxes/{id}");
        assert_eq!(self.call("DELETE", &path, Value::Null).0, 204);
    }

    fn stats(&self) -> WarmStats {
        let (_, s) = self.call("GET", "/v1/warm/stats", Value::Null);
        serde_json::from_value(s).expect("stats")
    }

    fn node_dir(&self) -> PathBuf {
        self.data.path().join("node-v1")
    }

    /// Which of `runtimes` (name, digest hex) are warm on disk, as `runtimes/<hex>`.
    fn on_disk<'a>(&self, runtimes: &[&'a (&'a str, String)]) -> Vec<&'a str> {
        runtimes
            .iter()
            .filter(|(_, hex)| self.node_dir().join("runtimes").join(hex).is_dir())
            .map(|(n, _)| *n)
            .collect()
    }

    /// Polls `f` every 50 ms until it returns `Some`, for at most 60 s.
    fn until<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait(&self, what: &str, mut ok: impl FnMut() -> bool) {
        self.until(what, || ok().then_some(()))
    }

    /// Lets a warm command of [`gated`] finish: creates `go` in its build directory.
    fn open_gate(&self, digest: &str) {
        let (runtimes, build) = (
            self.node_dir().join("runtimes"),
            format!(".warming-{digest}-"),
        );
        let build = self.until("the build dir", || {
            let mut dirs = std::fs::read_dir(&runtimes).ok()?.flatten();
            dirs.find(|e| e.file_name().to_string_lossy().starts_with(&build))
                .map(|e| e.path())
        });
        std::fs::write(build.join("go"), b"").expect("open the gate");
    }
}

/// A warm command that blocks until the test calls [`Node::open_gate`]: the build directory
/// is the only host path a warm command and the test both see.
fn gated(name: &str) -> Value {
    json!([[
        "/bin/sh",
        "-c",
        format!("while [ ! -e /opt/{name}/go ]; do sleep 0.05; done")
    ]])
}

/// `n` bytes unlike any other runtime's, so each runtime has its own size on disk.
fn filler(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

#[test]
fn lru_eviction_keeps_the_recently_used_and_never_a_runtime_in_use() {
    // ~100 kB each: two fit in the budget, three do not.
    let node = Node::start(&["--warm-disk-budget", "250000"]);
    let rts: Vec<(&str, String)> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, node.push(n, &filler(i as u8, 100_000), json!([]))))
        .collect();
    let [a, b, c, d] = [&rts[0], &rts[1], &rts[2], &rts[3]];
    let sa = node.ready("a");
    node.warm("b");
    assert_eq!(node.on_disk(&[a, b]), ["a", "b"]);
    // Over budget: a is least recently used but its sandbox holds it, so b goes.
    node.warm("c");
    node.wait("an eviction", || node.stats().evictions == 1);
    assert_eq!(node.on_disk(&[a, b, c]), ["a", "c"]);
    let r = node.exec(
        &sa.sandbox_id,
        &["/bin/sh", "-c", "/opt/a/bin/hello; wc -c < /opt/a/lib/data"],
    );
    assert_eq!(r.stdout, "hello from a\n100000\n", "{r:?}");
    // a was warmed first but used last (that exec): c is now least recently used.
    node.delete(&sa.sandbox_id);
    node.warm("d");
    node.wait("a second eviction", || node.stats().evictions == 2);
    assert_eq!(node.on_disk(&[a, b, c, d]), ["a", "d"]);
    assert_eq!(node.stats().warm_runtimes, 2);
    // An evicted runtime is simply cold again; a kept one is hot.
    let (code, _) = node.create(json!({"runtime": "a:v1", "user_id": "u"}));
    assert_eq!(code, 201);
    let (code, _) = node.create(json!({"runtime": "c:v1", "user_id": "u"}));
    assert_eq!(code, 202);
}

#[test]
fn idle_sandboxes_are_removed_but_not_while_warming_or_running_a_command() {
    let node = Node::start(&[
        "--sandbox-idle-timeout-secs",
        "2",
        "--warm-disk-budget",
        "1",
    ]);
    node.push("idle", b"data\n", json!([]));
    node.push("slowwarm", b"data\n", gated("slowwarm"));
    let (_, warming) = node.create(json!({"runtime": "slowwarm:v1", "user_id": "u"}));
    let sb = node.ready("idle");
    let ws = node.node_dir().join("sandboxes").join(&sb.sandbox_id);
    // A command longer than the idle timeout: the sandbox is in use the whole time.
    let r = node.exec(
        &sb.sandbox_id,
        &["/bin/sh", "-c", "sleep 5; echo done > out && cat out"],
    );
    assert_eq!(
        (r.exit_code, r.stdout.as_str()),
        (Some(0), "done\n"),
        "{r:?}"
    );
    assert!(node.get(&sb.sandbox_id).is_some(), "removed while running");
    // Meanwhile the other sandbox waited for its warm longer than the timeout: still there.
    let w = node
        .get(&warming.sandbox_id)
        .expect("removed while warming");
    assert_eq!(w.state.status, Status::Warming);
    node.open_gate(&warming.digest.hex());
    // Unused now: both go, with their workspaces, and their runtimes become evictable.
    node.wait("idle removal", || {
        node.get(&sb.sandbox_id).is_none() && node.get(&warming.sandbox_id).is_none()
    });
    assert!(!ws.exists(), "workspace left behind");
    assert_eq!(node.stats().sandboxes, 0);
    node.wait("eviction of released runtimes", || {
        node.stats().warm_runtimes == 0
    });
}

#[test]
fn high_priority_overtakes_queued_warms() {
    let node = Node::start(&["--sandbox-concurrency", "1"]);
    for n in ["blocker", "low", "normal", "high"] {
        node.push(n, n.as_bytes(), gated(n));
    }
    let (_, blocker) = node.create(json!({"runtime": "blocker:v1", "user_id": "u"}));
    node.wait("the blocker running", || {
        node.get(&blocker.sandbox_id)
            .is_some_and(|i| i.state.step == Step::Warm)
    });
    let mut ids = Vec::new();
    for p in ["low", "normal", "high"] {
        let (code, info) =
            node.create(json!({"runtime": format!("{p}:v1"), "user_id": "u", "priority": p}));
        assert_eq!(code, 202);
        ids.push((p, info.sandbox_id, info.digest.hex()));
    }
    // Queue positions while queued, in the order the sandboxes were created.
    let positions = |ids: &[(&str, String, String)]| -> Vec<Option<u64>> {
        let queued = |s: WarmState| s.queue_position.filter(|_| s.step == Step::Queued);
        ids.iter()
            .map(|(_, id, _)| queued(node.get(id).expect("sandbox").state))
            .collect()
    };
    assert_eq!(
        positions(&ids),
        [Some(2), Some(1), Some(0)],
        "low, normal, high"
    );
    // One worker: each release lets exactly the best queued warm start.
    node.open_gate(&blocker.digest.hex());
    for expected in ["high", "normal", "low"] {
        let (started, _, digest) = node.until("a queued warm to start", || {
            ids.iter()
                .find(|(_, id, _)| node.get(id).is_some_and(|i| i.state.step != Step::Queued))
                .cloned()
        });
        assert_eq!(started, expected, "started next");
        ids.retain(|(p, ..)| *p != expected);
        let left = positions(&ids);
        let in_order = (0..left.len() as u64).rev().map(Some).collect::<Vec<_>>();
        assert_eq!(left, in_order, "the rest keep their order");
        node.open_gate(&digest);
    }
}

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
    let hex = node.push("reg", b"data\n", json!([]));
    let key = format!("prewarm:warm:{unique}:{hex}");
    let sb = node.ready("reg");
    let entry: Value = node.until("the registry entry", || {
        serde_json::from_str(&redis(&["GET", &key])).ok()
    });
    let runtime_dir = node.node_dir().join("runtimes").join(&hex);
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

#[test]
fn network_true_gives_the_host_network_and_the_default_gives_none() {
    let node = Node::start(&[]);
    node.push("net", b"x", json!([]));
    let isolated = node.ready("net");
    let (code, online) = node.create(json!({"runtime": "net:v1", "user_id": "u", "network": true}));
    assert_eq!(code, 201);
    let port = node.origin.url.rsplit(':').next().expect("port");
    // The origin itself listens on the host's loopback: reachable only with the host network.
    let probe = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let r = node.exec(&online.sandbox_id, &["/bin/bash", "-c", &probe]);
    assert!(
        r.stdout.starts_with("HTTP/1.") && r.stdout.contains(" 200 OK"),
        "{r:?}"
    );
    let r = node.exec(&online.sandbox_id, &["cat", "/etc/resolv.conf"]);
    assert_eq!(r.exit_code, Some(0), "name resolution configured: {r:?}");
    let r = node.exec(&isolated.sandbox_id, &["/bin/bash", "-c", &probe]);
    assert_ne!(r.exit_code, Some(0), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
}

#[test]
fn a_warm_command_that_changes_a_cached_file_fails_and_the_cache_heals() {
    let node = Node::start(&[]);
    let f = |n: &str| format!("/opt/{n}/lib/data");
    let blatant = format!("chmod u+w {0} && echo damaged >> {0}", f("blatant"));
    // Same length, and mode and mtime put back: only the bytes (and the ctime) differ.
    let stealthy = format!(
        "cp -p {0} /tmp/ref && chmod u+w {0} && printf 'DAMAGED!\\n' > {0} && touch -r /tmp/ref {0} && chmod --reference=/tmp/ref {0}",
        f("stealthy")
    );
    for (name, content, cmd) in [
        ("blatant", "pristine\n", blatant),
        ("stealthy", "original\n", stealthy),
    ] {
        let hex = node.push(name, content.as_bytes(), json!([["/bin/sh", "-c", cmd]]));
        let (_, sb) = node.create(json!({"runtime": format!("{name}:v1"), "user_id": "u"}));
        let done = node.settled(&sb.sandbox_id);
        assert_eq!(done.state.status, Status::Failed, "{name}: {done:?}");
        let err = done.state.error.expect("error");
        assert_eq!(err.step, Step::Seal, "{name}: {err:?}");
        assert!(
            err.reason.contains("modified 1 cached file"),
            "{name}: {err:?}"
        );
        assert!(!node.node_dir().join("runtimes").join(hex).exists());
        // A runtime with the same file gets the bytes as pushed: the damaged copy left the cache.
        let bystander = format!("{name}-bystander");
        node.push(&bystander, content.as_bytes(), json!([]));
        let b = node.ready(&bystander);
        let r = node.exec(&b.sandbox_id, &["cat", &f(&bystander)]);
        assert_eq!(r.stdout, content, "{name}");
    }
}
