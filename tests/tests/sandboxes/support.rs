//! Shared helpers: a warm node on a real `prewarm serve`, the two test runtimes, polling, events.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use prewarm_shared::sandbox::{ExecResult, SandboxInfo, Status, WarmState, WarmStats};
use prewarm_tests::{http, push_json, write_pack, LayerEntries, Origin};
use serde_json::{json, Value};

/// The greeter's `bin/hello`: prints a greeting and the file its warm step generated from
/// `lib/greeting.in` (as compileall turns sources into bytecode).
const HELLO: &[u8] = b"#!/bin/sh\necho \"hello from $(dirname \"$0\")\"\ncat \"$(dirname \"$0\")/../lib/greeting\"\n";

/// What the greeter's `bin/hello` ends with once [`compile_step`] ran.
pub(crate) const COMPILED: &str = "compiled by the warm step\n";

/// The usual warm command for a greeter: generate `lib/greeting` from `lib/greeting.in`.
pub(crate) fn compile_step(name: &str) -> Value {
    json!([[
        "/bin/sh",
        "-c",
        format!("sed s/TEMPLATE/compiled/ /opt/{name}/lib/greeting.in > /opt/{name}/lib/greeting")
    ]])
}

/// A warm command that blocks until the test calls [`Node::open_gate`]: the build directory
/// is the only host path a warm command and the test both see.
pub(crate) fn gated(name: &str) -> Value {
    json!([[
        "/bin/sh",
        "-c",
        format!("while [ ! -e /opt/{name}/go ]; do sleep 0.05; done")
    ]])
}

/// Asserts the greeter's output shows its warm step ran.
pub(crate) fn assert_compiled(out: &ExecResult) {
    assert!(out.stdout.ends_with(COMPILED), "{out:?}");
}

/// A `prewarm serve` with its own data directory, and a scratch directory for packs.
pub(crate) struct Node {
    pub(crate) origin: Origin,
    pub(crate) data: tempfile::TempDir,
    pub(crate) work: tempfile::TempDir,
}

impl Node {
    pub(crate) fn start(extra: &[&str]) -> Node {
        let data = tempfile::tempdir().expect("data dir");
        let work = tempfile::tempdir().expect("work dir");
        let origin = Origin::start(data.path(), extra);
        Node { origin, data, work }
    }

    /// Stops the origin as an operator would (graceful shutdown), runs `while_down`, then
    /// starts a new origin on the same data directory with `extra`.
    pub(crate) fn restart(self, extra: &[&str], while_down: impl FnOnce()) -> Node {
        let Node { origin, data, work } = self;
        drop(origin);
        while_down();
        let origin = Origin::start(data.path(), extra);
        Node { origin, data, work }
    }

    /// Writes a one-layer pack mounted at `/opt/NAME` and pushes it as `NAME:v1`.
    /// Returns the manifest digest's hex.
    pub(crate) fn push_pack(
        &self,
        name: &str,
        files: LayerEntries,
        env: Value,
        warm: Value,
    ) -> String {
        let dir = self.work.path().join(name);
        let meta = json!({"prefix": format!("/opt/{name}"), "env": env, "warm": warm});
        write_pack(&dir, name, &[("base", files)], meta);
        let pushed = push_json(&dir, &format!("{name}:v1"), &self.origin.url);
        let digest = pushed["digest"].as_str().expect("pushed digest");
        digest.trim_start_matches("sha256:").to_string()
    }

    /// Pushes the greeter `NAME:v1`: `bin/hello` prints where it runs from and `lib/greeting`,
    /// which only a warm step like [`compile_step`] creates.
    pub(crate) fn push_greeter(&self, name: &str, warm: Value) {
        let files: LayerEntries = vec![
            ("bin/", b"", 0o755),
            ("bin/hello", HELLO, 0o755),
            ("lib/", b"", 0o755),
            ("lib/greeting.in", b"TEMPLATE by the warm step\n", 0o644),
        ];
        self.push_pack(name, files, json!({"GREETING_LANG": "en"}), warm);
    }

    /// Pushes `NAME:v1`: `bin/hello` (prints `hello from NAME`), `lib/data` (`data` bytes).
    /// Returns the manifest digest's hex.
    pub(crate) fn push_data(&self, name: &str, data: &[u8], warm: Value) -> String {
        let hello = format!("#!/bin/sh\necho hello from {name}\n");
        let files: LayerEntries = vec![
            ("bin/", b"", 0o755),
            ("bin/hello", hello.as_bytes(), 0o755),
            ("lib/", b"", 0o755),
            ("lib/data", data, 0o644),
        ];
        self.push_pack(name, files, json!({ "RT": name }), warm)
    }

    /// `METHOD URL/PATH` with a JSON body (unless null): the status and the body as JSON.
    pub(crate) fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.origin.url);
        let req = http().request(method.parse().expect("method"), url);
        let r = if body.is_null() { req } else { req.json(&body) };
        let r = r.send().expect(path);
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    }

    pub(crate) fn create(&self, body: Value) -> (u16, SandboxInfo) {
        let (code, info) = self.call("POST", "/v1/sandboxes", body);
        let parsed = serde_json::from_value(info.clone());
        (
            code,
            parsed.unwrap_or_else(|e| panic!("{code} {info}: {e}")),
        )
    }

    /// `n` creates of `RUNTIME` at once, by users `u0`…: each one's status and sandbox.
    pub(crate) fn create_concurrently(&self, runtime: &str, n: usize) -> Vec<(u16, SandboxInfo)> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    s.spawn(move || {
                        self.create(json!({"runtime": runtime, "user_id": format!("u{i}")}))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        })
    }

    /// The sandbox's state, `None` once it is gone (404).
    pub(crate) fn get(&self, id: &str) -> Option<SandboxInfo> {
        let (code, info) = self.call("GET", &format!("/v1/sandboxes/{id}"), Value::Null);
        (code != 404).then(|| serde_json::from_value(info).expect("sandbox info"))
    }

    /// Polls the status (as a client would) until the sandbox is no longer warming.
    pub(crate) fn settled(&self, id: &str) -> SandboxInfo {
        let what = format!("{id} warm or failed");
        poll(&what, Duration::from_secs(120), || {
            self.get(id).filter(|i| i.state.status != Status::Warming)
        })
    }

    /// Creates a sandbox of `NAME:v1` and waits until it is ready.
    pub(crate) fn ready(&self, name: &str) -> SandboxInfo {
        let (_, info) = self.create(json!({"runtime": format!("{name}:v1"), "user_id": "u"}));
        let done = self.settled(&info.sandbox_id);
        assert_eq!(done.state.status, Status::Ready, "{done:?}");
        done
    }

    /// `POST /v1/warm` for `NAME:v1` (no sandbox holds it), and waits for `warms_succeeded`.
    pub(crate) fn warm(&self, name: &str) {
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

    pub(crate) fn exec(&self, id: &str, cmd: &[&str]) -> ExecResult {
        let path = format!("/v1/sandboxes/{id}/exec");
        let (code, r) = self.call("POST", &path, json!({ "cmd": cmd }));
        assert_eq!(code, 200, "exec {cmd:?} in {id}: {r}");
        serde_json::from_value(r).expect("exec result")
    }

    pub(crate) fn delete(&self, id: &str) {
        let path = format!("/v1/sandboxes/{id}");
        assert_eq!(self.call("DELETE", &path, Value::Null).0, 204);
    }

    pub(crate) fn stats(&self) -> WarmStats {
        let (_, s) = self.call("GET", "/v1/warm/stats", Value::Null);
        serde_json::from_value(s).expect("stats")
    }

    /// Every state the events WebSocket sends, until the server closes it.
    pub(crate) fn events(&self, id: &str) -> Vec<WarmState> {
        let ws_url = format!(
            "{}/v1/sandboxes/{id}/events",
            self.origin.url.replacen("http://", "ws://", 1)
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

    /// The same stream as [`Node::events`], as Server-Sent Events: `(event name, state)` pairs.
    pub(crate) fn sse_events(&self, id: &str) -> Vec<(String, WarmState)> {
        let url = format!("{}/v1/sandboxes/{id}/events", self.origin.url);
        let resp = http()
            .get(url)
            .header("accept", "text/event-stream")
            .send()
            .expect("sse request");
        assert_eq!(resp.status(), 200);
        // The stream ends after the terminal event, so the whole body can be read.
        let body = resp.text().expect("sse body");
        let mut out = Vec::new();
        for block in body.split("\n\n") {
            let field = |k: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim_start().to_string())
            };
            if let (Some(name), Some(data)) = (field("event:"), field("data:")) {
                out.push((name, serde_json::from_str(&data).expect("sse data JSON")));
            }
        }
        out
    }

    pub(crate) fn node_dir(&self) -> PathBuf {
        self.data.path().join("node-v1")
    }

    pub(crate) fn runtimes_dir(&self) -> PathBuf {
        self.node_dir().join("runtimes")
    }

    /// Which of `runtimes` (name, digest hex) are warm on disk, as `runtimes/<hex>`.
    pub(crate) fn on_disk<'a>(&self, runtimes: &[&'a (&'a str, String)]) -> Vec<&'a str> {
        runtimes
            .iter()
            .filter(|(_, hex)| self.runtimes_dir().join(hex).is_dir())
            .map(|(n, _)| *n)
            .collect()
    }

    /// Polls `f` until it returns `Some`, for at most 60 s.
    pub(crate) fn until<T>(&self, what: &str, f: impl FnMut() -> Option<T>) -> T {
        poll(what, Duration::from_secs(60), f)
    }

    pub(crate) fn wait(&self, what: &str, mut ok: impl FnMut() -> bool) {
        self.until(what, || ok().then_some(()))
    }

    /// Lets a warm command of [`gated`] finish: creates `go` in its build directory.
    pub(crate) fn open_gate(&self, digest: &str) {
        std::fs::write(self.build_dir(digest).join("go"), b"").expect("open the gate");
    }

    /// The directory the runtime `digest` (hex) is being warmed in: its prefix, writable,
    /// to the warm commands. Waits for it to appear.
    pub(crate) fn build_dir(&self, digest: &str) -> PathBuf {
        let (runtimes, build) = (self.runtimes_dir(), format!(".warming-{digest}-"));
        self.until("the build dir", || {
            let mut dirs = std::fs::read_dir(&runtimes).ok()?.flatten();
            dirs.find(|e| e.file_name().to_string_lossy().starts_with(&build))
                .map(|e| e.path())
        })
    }
}

/// Polls `f` every 50 ms until it returns `Some`, failing after `limit`.
fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
