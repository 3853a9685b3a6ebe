//! End-to-end: warming and sandboxes on a real `prewarm serve`, real bubblewrap, packs pushed with `prewarm push`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prewarm_shared::sandbox::{ExecResult, SandboxInfo, Status, Step, WarmState, WarmStats};
use prewarm_tests::{cli, http, write_pack, Origin};
use serde_json::{json, Value};

/// The tiny runtime: `bin/hello` prints a greeting and the file its warm step generated from
/// `lib/greeting.in` (as compileall turns sources into bytecode).
const HELLO: &[u8] = b"#!/bin/sh\necho \"hello from $(dirname \"$0\")\"\ncat \"$(dirname \"$0\")/../lib/greeting\"\n";

fn hello_pack(dir: &Path, name: &str, warm: Value) {
    let prefix = format!("/opt/{name}");
    write_pack(
        dir,
        name,
        &[(
            "base",
            vec![
                ("bin/", b"", 0o755),
                ("bin/hello", HELLO, 0o755),
                ("lib/", b"", 0o755),
                ("lib/greeting.in", b"TEMPLATE by the warm step\n", 0o644),
            ],
        )],
        json!({"prefix": prefix, "env": {"GREETING_LANG": "en"}, "warm": warm}),
    );
}

/// The usual warm command: generate `lib/greeting` from `lib/greeting.in`.
fn compile_step(name: &str) -> Value {
    json!([[
        "/bin/sh",
        "-c",
        format!("sed s/TEMPLATE/compiled/ /opt/{name}/lib/greeting.in > /opt/{name}/lib/greeting")
    ]])
}

struct Node {
    origin: Origin,
    data: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        let data = tempfile::tempdir().expect("data dir");
        let work = tempfile::tempdir().expect("work dir");
        let origin = Origin::start(data.path(), &[]);
        Node { origin, data, work }
    }

    /// Writes and pushes a pack as `NAME:v1`.
    fn push(&self, name: &str, warm: Value) {
        let dir = self.work.path().join(name);
        hello_pack(&dir, name, warm);
        let out = cli(&[
            "push",
            dir.to_str().expect("utf-8"),
            "--name",
            &format!("{name}:v1"),
            "--to",
            &self.origin.url,
        ]);
        assert!(
            out.status.success(),
            "push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn create(&self, body: Value) -> (u16, SandboxInfo) {
        let r = http()
            .post(format!("{}/v1/sandboxes", self.origin.url))
            .json(&body)
            .send()
            .expect("create");
        let code = r.status().as_u16();
        let text = r.text().expect("body");
        let info = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{code} {text}: {e}"));
        (code, info)
    }

    fn get(&self, id: &str) -> SandboxInfo {
        http()
            .get(format!("{}/v1/sandboxes/{id}", self.origin.url))
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .expect("status")
    }

    /// Polls the status (as a client would, every 100 ms here) until it is no longer warming.
    fn wait(&self, id: &str) -> SandboxInfo {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let info = self.get(id);
            if info.state.status != Status::Warming {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "sandbox {id} still warming: {info:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn exec(&self, id: &str, cmd: &[&str]) -> ExecResult {
        let r = http()
            .post(format!("{}/v1/sandboxes/{id}/exec", self.origin.url))
            .json(&json!({"cmd": cmd}))
            .send()
            .expect("exec");
        assert_eq!(r.status().as_u16(), 200, "exec {cmd:?}");
        r.json().expect("exec result")
    }

    fn stats(&self) -> WarmStats {
        http()
            .get(format!("{}/v1/warm/stats", self.origin.url))
            .send()
            .and_then(|r| r.json())
            .expect("stats")
    }

    fn runtimes_dir(&self) -> PathBuf {
        self.data.path().join("node-v1").join("runtimes")
    }
}

/// Every state the events WebSocket sends, until the server closes it.
fn events(url: &str, id: &str) -> Vec<WarmState> {
    let ws_url = format!(
        "{}/v1/sandboxes/{id}/events",
        url.replacen("http://", "ws://", 1)
    );
    let (mut socket, _) = tungstenite::connect(ws_url).expect("websocket connect");
    let mut out = Vec::new();
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(t)) => {
                out.push(serde_json::from_str(t.as_str()).expect("event JSON"))
            }
            Ok(tungstenite::Message::Close(_)) | Err(_) => return out,
            Ok(_) => {}
        }
    }
}

#[test]
fn cold_create_streams_progress_then_exec_sees_warm_output_and_second_is_hot() {
    let node = Node::start();
    // The sleep keeps the warm running long enough for the WebSocket to see it in progress.
    node.push(
        "hello",
        json!([
            ["/bin/sh", "-c", "sleep 2"],
            [
                "/bin/sh",
                "-c",
                "sed s/TEMPLATE/compiled/ /opt/hello/lib/greeting.in > /opt/hello/lib/greeting"
            ]
        ]),
    );
    let (code, info) = node.create(json!({"runtime": "hello:v1", "user_id": "u1"}));
    assert_eq!(code, 202, "{info:?}");
    assert!(!info.hot);
    assert_eq!(info.state.status, Status::Warming);
    assert!(info.state.estimated_ms.is_some());

    let seen = events(&node.origin.url, &info.sandbox_id);
    let last = seen.last().expect("at least one event");
    assert_eq!(last.status, Status::Ready, "{seen:?}");
    assert!(seen.len() >= 2, "progress before ready: {seen:?}");
    assert!(seen
        .iter()
        .any(|s| s.status == Status::Warming && s.step == Step::Warm));
    assert!(
        seen.windows(2).all(|w| w[0].progress <= w[1].progress),
        "{seen:?}"
    );
    assert_eq!(last.progress, 1.0);

    let out = node.exec(&info.sandbox_id, &["/opt/hello/bin/hello"]);
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "hello from /opt/hello/bin\ncompiled by the warm step\n"
    );

    // A late subscriber gets the current state first, and the stream ends there.
    let late = events(&node.origin.url, &info.sandbox_id);
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].status, Status::Ready);

    let (code, hot) = node.create(json!({"runtime": "hello:v1", "user_id": "u2"}));
    assert_eq!(code, 201, "{hot:?}");
    assert!(hot.hot);
    assert_eq!(hot.state.status, Status::Ready);
    assert_eq!(node.stats().warms_started, 1);
    let out = node.exec(&hot.sandbox_id, &["/opt/hello/bin/hello"]);
    assert!(
        out.stdout.ends_with("compiled by the warm step\n"),
        "{out:?}"
    );
}

#[test]
fn fifty_concurrent_creates_run_exactly_one_warm() {
    let node = Node::start();
    node.push("busy", compile_step("busy"));
    let url = node.origin.url.clone();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let r = http()
                    .post(format!("{url}/v1/sandboxes"))
                    .json(&json!({"runtime": "busy:v1", "user_id": format!("u{i}")}))
                    .send()
                    .expect("create");
                let code = r.status().as_u16();
                (code, r.json::<SandboxInfo>().expect("info"))
            })
        })
        .collect();
    let created: Vec<(u16, SandboxInfo)> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert!(created.iter().all(|(c, _)| *c == 201 || *c == 202));
    assert!(
        created.iter().any(|(c, _)| *c == 202),
        "the first create found it cold"
    );
    for (_, info) in &created {
        let done = node.wait(&info.sandbox_id);
        assert_eq!(done.state.status, Status::Ready, "{done:?}");
        assert_eq!(done.digest, created[0].1.digest);
    }
    let stats = node.stats();
    assert_eq!(stats.warms_started, 1, "{stats:?}");
    assert_eq!(stats.warms_succeeded, 1, "{stats:?}");
    assert_eq!(stats.sandboxes, 50);
    let out = node.exec(&created[49].1.sandbox_id, &["/opt/busy/bin/hello"]);
    assert!(
        out.stdout.ends_with("compiled by the warm step\n"),
        "{out:?}"
    );
}

#[test]
fn sandbox_cannot_write_its_runtime_or_see_other_workspaces() {
    let node = Node::start();
    node.push("iso", compile_step("iso"));
    let (_, a) = node.create(json!({"runtime": "iso:v1", "user_id": "alice"}));
    assert_eq!(node.wait(&a.sandbox_id).state.status, Status::Ready);
    let (code, b) = node.create(json!({"runtime": "iso:v1", "user_id": "bob"}));
    assert_eq!(code, 201);

    let w = node.exec(
        &a.sandbox_id,
        &[
            "/bin/sh",
            "-c",
            "echo alice-secret > secret && cat secret && pwd",
        ],
    );
    assert_eq!(w.stdout, "alice-secret\n/workspace\n", "{w:?}");

    // Writing the runtime fails, whatever the path: file, new file, chmod.
    for attempt in [
        "echo evil >> /opt/iso/bin/hello",
        "echo evil > /opt/iso/new-file",
        "chmod u+w /opt/iso/bin/hello",
        "rm -f /opt/iso/lib/greeting",
    ] {
        let r = node.exec(&b.sandbox_id, &["/bin/sh", "-c", attempt]);
        assert_ne!(r.exit_code, Some(0), "{attempt} succeeded: {r:?}");
    }
    let hello = node.exec(&b.sandbox_id, &["/opt/iso/bin/hello"]);
    assert_eq!(
        hello.stdout,
        "hello from /opt/iso/bin\ncompiled by the warm step\n"
    );

    // Bob cannot reach Alice's workspace, by her host path or any other, nor the node's cache.
    let node_dir = node.data.path().join("node-v1");
    let alice_host = node_dir
        .join("sandboxes")
        .join(&a.sandbox_id)
        .join("workspace")
        .join("secret");
    assert!(alice_host.exists(), "the secret is on the host");
    let probe = format!(
        "cat {} ; ls {} ; grep -rs alice-secret / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr ; ls /workspace",
        alice_host.display(),
        node_dir.display()
    );
    let r = node.exec(&b.sandbox_id, &["/bin/sh", "-c", &probe]);
    assert!(!r.stdout.contains("alice-secret"), "{r:?}");
    assert!(
        !r.stdout.contains("secret"),
        "bob's workspace is his own: {r:?}"
    );

    // No network unless asked for: only loopback exists.
    let net = node.exec(&b.sandbox_id, &["/bin/sh", "-c", "cat /proc/net/dev"]);
    let ifaces: Vec<&str> = net
        .stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"], "{net:?}");
}

#[test]
fn failing_warm_command_fails_every_waiter_with_the_reason() {
    let node = Node::start();
    node.push(
        "broken",
        json!([[
            "/bin/sh",
            "-c",
            "sleep 1; echo 'compile error: broken on purpose' >&2; exit 3"
        ]]),
    );
    let url = node.origin.url.clone();
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                http()
                    .post(format!("{url}/v1/sandboxes"))
                    .json(&json!({"runtime": "broken:v1", "user_id": format!("u{i}")}))
                    .send()
                    .and_then(|r| r.json::<SandboxInfo>())
                    .expect("create")
            })
        })
        .collect();
    let infos: Vec<SandboxInfo> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let ws = events(&url, &infos[0].sandbox_id);
    let last = ws.last().expect("events");
    assert_eq!(last.status, Status::Failed, "{ws:?}");
    for info in &infos {
        let done = node.wait(&info.sandbox_id);
        assert_eq!(done.state.status, Status::Failed);
        let err = done.state.error.expect("error");
        assert_eq!(err.step, Step::Warm);
        assert!(err.reason.contains("broken on purpose"), "{}", err.reason);
        assert!(err.reason.contains("status 3"), "{}", err.reason);
    }
    let stats = node.stats();
    assert_eq!(
        (stats.warms_started, stats.warms_failed, stats.warm_runtimes),
        (1, 1, 0)
    );
    // Nothing warm and no partial runtime on disk.
    let left: Vec<_> = std::fs::read_dir(node.runtimes_dir())
        .expect("runtimes dir")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Exec on a failed sandbox is refused; a later create retries.
    let r = http()
        .post(format!("{url}/v1/sandboxes/{}/exec", infos[0].sandbox_id))
        .json(&json!({"cmd": ["true"]}))
        .send()
        .expect("exec");
    assert_eq!(r.status().as_u16(), 409);
    let (code, _) = node.create(json!({"runtime": "broken:v1", "user_id": "again"}));
    assert_eq!(code, 202);
    assert_eq!(node.stats().warms_started, 2);
}

#[test]
fn context_with_quotes_and_metacharacters_arrives_byte_for_byte() {
    let node = Node::start();
    node.push("ctx", compile_step("ctx"));
    let nasty = "'''\"\"\" $(touch /workspace/pwned) `touch /workspace/pwned2` ${HOME} \\n \n\t; rm -rf / # ünïcode 'q' \"dq\" %s {} $((1+1))";
    let (_, info) = node.create(json!({"runtime": "ctx:v1", "user_id": "u", "context": nasty}));
    assert_eq!(node.wait(&info.sandbox_id).state.status, Status::Ready);
    let r = node.exec(
        &info.sandbox_id,
        &["/bin/sh", "-c", "printf '%s' \"$PREWARM_CONTEXT\""],
    );
    assert_eq!(r.stdout, nasty);
    let f = node.exec(&info.sandbox_id, &["cat", ".prewarm/context.json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&f.stdout).expect("json"),
        json!(nasty)
    );
    let ls = node.exec(&info.sandbox_id, &["ls", "-A", "/workspace"]);
    assert_eq!(ls.stdout, ".prewarm\n", "nothing executed: {ls:?}");

    // Other JSON values arrive as JSON.
    let ctx = json!({"memory": ["it's", "$(id)", "`id`"], "n": 1});
    let (code, info) = node
        .create(json!({"runtime": "ctx:v1", "user_id": "u", "context": ctx, "env": {"A": "1"}}));
    assert_eq!(code, 201);
    let r = node.exec(
        &info.sandbox_id,
        &["/bin/sh", "-c", "printf '%s' \"$PREWARM_CONTEXT\""],
    );
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).expect("json"), ctx);
}

#[test]
fn origin_restarts_cleanly_after_sigkill_mid_warm() {
    let data = tempfile::tempdir().expect("data");
    let work = tempfile::tempdir().expect("work");
    let origin = Origin::start(data.path(), &[]);
    let node = Node { origin, data, work };
    node.push(
        "slow",
        json!([[
            "/bin/sh",
            "-c",
            "echo partial > /opt/slow/partial; exec sleep 86399"
        ]]),
    );
    node.push("quick", compile_step("quick"));
    let (_, info) = node.create(json!({"runtime": "slow:v1", "user_id": "u"}));
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.get(&info.sandbox_id).state.step != Step::Warm {
        assert!(Instant::now() < deadline, "never reached the warm step");
        std::thread::sleep(Duration::from_millis(50));
    }
    let Node { origin, data, work } = node;
    origin.kill();
    // The warm command dies with the origin (--die-with-parent).
    let deadline = Instant::now() + Duration::from_secs(20);
    while sleeping_warm_commands() > 0 {
        assert!(
            Instant::now() < deadline,
            "warm command outlived the origin"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let node = Node {
        origin: Origin::start(data.path(), &[]),
        data,
        work,
    };
    let left: Vec<_> = std::fs::read_dir(node.runtimes_dir())
        .expect("runtimes")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "leftovers after restart: {left:?}");
    let index: Value = serde_json::from_slice(
        &std::fs::read(node.data.path().join("node-v1/index.json")).expect("index"),
    )
    .expect("json");
    assert_eq!(index["runtimes"], json!({}));
    assert_eq!(node.stats().warm_runtimes, 0);
    // The node works: another runtime warms and runs; the killed one may be retried.
    let (_, q) = node.create(json!({"runtime": "quick:v1", "user_id": "u"}));
    assert_eq!(node.wait(&q.sandbox_id).state.status, Status::Ready);
    assert!(node
        .exec(&q.sandbox_id, &["/opt/quick/bin/hello"])
        .stdout
        .ends_with("compiled by the warm step\n"));
    let (code, _) = node.create(json!({"runtime": "slow:v1", "user_id": "u"}));
    assert_eq!(code, 202);
}

/// Processes running the slow runtime's `sleep 86399`.
fn sleeping_warm_commands() -> usize {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\086399\0")
                })
                .count()
        })
        .unwrap_or(0)
}
