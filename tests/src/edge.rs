//! Helpers for the edge tests: run the worker under `wrangler dev`, and a counting proxy that
//! stands between the worker and its origin (or plays a misbehaving one).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{free_port, http};

/// The repository root (wrangler.toml, scripts/, .tools/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds the worker once per test process (a no-op when edge/build is current), so two
/// `wrangler dev` started in parallel never run worker-build at the same time. Fails with a
/// clear message when the tools are missing: the edge tests never pass by skipping.
/// The repository's `wrangler.toml` for a test, written into `dir`: without its `[build]`
/// section (the bundle is built once by [`ensure_built`]), so `wrangler dev` runs no build and
/// watches no source folder. A watcher restart while the worker starts rebinds its port and can
/// fail with "address already in use" (it failed a CI run). `main` is made absolute, since
/// paths in a config are relative to its file.
fn test_config(root: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root.join("wrangler.toml")).expect("wrangler.toml");
    let mut out = String::new();
    let mut in_build = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_build = t.starts_with("[build]");
        }
        if in_build {
            continue;
        }
        match t.strip_prefix("main = \"") {
            Some(rest) => {
                let rel = rest.trim_end().trim_end_matches('"');
                out.push_str(&format!(
                    "main = {:?}\n",
                    root.join(rel).display().to_string()
                ));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let path = dir.join("wrangler.toml");
    std::fs::write(&path, out).expect("write the test's wrangler.toml");
    path
}

fn ensure_built() {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if *built {
        return;
    }
    let root = repo_root();
    let wrangler = root.join(".tools/node/node_modules/.bin/wrangler");
    assert!(
        wrangler.exists(),
        "{} is missing: the edge tests need Node 22 + wrangler 4 and the Rust→Wasm tools; \
         run scripts/edge-tools (scripts/test does)",
        wrangler.display()
    );
    let out = Command::new(root.join("scripts/edge-build"))
        .current_dir(&root)
        .output()
        .expect("run scripts/edge-build");
    assert!(
        out.status.success(),
        "scripts/edge-build failed (run scripts/edge-tools first):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    *built = true;
}

/// A running `wrangler dev` serving the edge worker, stopped (with its workerd) on drop.
pub struct Wrangler {
    pub url: String,
    child: Child,
    log: PathBuf,
    _state: tempfile::TempDir,
}

impl Wrangler {
    /// Starts `wrangler dev` on a free port with `ORIGIN_URL=origin` and extra `NAME:VALUE`
    /// vars, with a fresh, private cache, and waits until the worker answers `/healthz`.
    pub fn start(origin: &str, vars: &[&str]) -> Wrangler {
        ensure_built();
        let root = repo_root();
        let state = tempfile::tempdir().expect("wrangler state dir");
        let log = state.path().join("wrangler.log");
        let port = free_port().to_string();
        let node_bin = root.join(".tools/node/node_modules/.bin");
        let path = format!(
            "{}:{}",
            node_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let config = test_config(&root, state.path());
        let mut cmd = Command::new(node_bin.join("wrangler"));
        cmd.current_dir(&root)
            .args(["dev", "--ip", "127.0.0.1", "--port", &port])
            .arg("--config")
            .arg(&config)
            // Parallel instances must not share the default devtools port (9229).
            .args(["--inspector-port", &free_port().to_string()])
            .args(["--show-interactive-dev-session=false", "--persist-to"])
            .arg(state.path().join("persist"))
            .args(["--var", &format!("ORIGIN_URL:{origin}")]);
        for v in vars {
            cmd.args(["--var", v]);
        }
        let log_file = std::fs::File::create(&log).expect("wrangler log");
        let child = cmd
            .env("PATH", path)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            // Its own process group, so stopping it also stops the workerd it spawned.
            .process_group(0)
            .spawn()
            .expect("spawn wrangler dev");
        let w = Wrangler {
            url: format!("http://127.0.0.1:{port}"),
            child,
            log,
            _state: state,
        };
        w.wait_ready();
        w
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let client = http();
        while Instant::now() < deadline {
            let ok = client
                .get(format!("{}/healthz", self.url))
                .timeout(Duration::from_secs(5))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("wrangler dev did not become ready:\n{}", self.log_tail());
    }

    /// Waits until the edge cache holds `path` (asked with `Cache-Control: only-if-cached`,
    /// which never reaches an origin), with `headers` added (an `Accept-Encoding` to wait for
    /// that representation, whose `Content-Encoding` must then be `encoding`). The edge stores
    /// after it answers (`wait_until`), so a request right behind a miss may miss again.
    pub fn wait_cached(&self, path: &str, headers: &[(&str, &str)], encoding: Option<&str>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = http();
        loop {
            let mut req = client
                .get(format!("{}{path}", self.url))
                .header("cache-control", "only-if-cached");
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            let resp = req.send().expect("edge request");
            let coding = resp
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap_or("").to_string());
            if resp.status() == 200 && coding.as_deref() == encoding {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never reached the edge cache ({} {coding:?}):\n{}",
                resp.status(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every block and manifest the proxy has seen the edge fetch is in its cache.
    pub fn settle(&self, proxy: &Proxy) {
        let mut seen: Vec<String> = proxy.hits();
        seen.retain(|p| p.starts_with("/v1/blocks/") || p.starts_with("/v1/manifests/"));
        seen.sort();
        seen.dedup();
        for path in seen {
            self.wait_cached(&path, &[], None);
        }
    }

    /// The end of wrangler's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Wrangler {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// How the proxy answers one path instead of forwarding it.
#[derive(Clone, Debug)]
pub enum Rule {
    /// 200 with these bytes (e.g. the wrong bytes for a digest).
    Canned(Vec<u8>),
    /// Accept and never answer, until the proxy stops.
    Hang,
}

/// A tiny HTTP/1.1 reverse proxy that records every request path. With no upstream it
/// answers 404 to anything without a [`Rule`]. Stopping it closes its port: a dead origin.
pub struct Proxy {
    pub url: String,
    hits: Arc<Mutex<Vec<String>>>,
    rules: Arc<Mutex<HashMap<String, Rule>>>,
    stop: Arc<AtomicBool>,
    kill: Arc<Mutex<Option<Kill>>>,
    accept: Option<JoinHandle<()>>,
}

/// Kill a process when the `nth` request whose path starts with `prefix` arrives.
#[derive(Clone, Debug)]
struct Kill {
    prefix: String,
    nth: usize,
    pid: u32,
}

impl Proxy {
    pub fn start(upstream: Option<&str>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let upstream = upstream.map(|u| {
            u.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        });
        let hits = Arc::new(Mutex::new(Vec::new()));
        let rules = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(Mutex::new(None));
        let shared = (hits.clone(), rules.clone(), stop.clone(), kill.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if shared.2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (hits, rules, stop, kill, upstream) = (
                    shared.0.clone(),
                    shared.1.clone(),
                    shared.2.clone(),
                    shared.3.clone(),
                    upstream.clone(),
                );
                std::thread::spawn(move || {
                    serve(conn, upstream.as_deref(), &hits, &rules, &stop, &kill)
                });
            }
        });
        Proxy {
            url: format!("http://{addr}"),
            hits,
            rules,
            stop,
            kill,
            accept: Some(accept),
        }
    }

    /// SIGKILLs `pid` (the upstream origin) when the `nth` request for a path starting with
    /// `prefix` arrives, before that request is forwarded: an origin that dies mid-pull.
    pub fn kill_upstream_at(&self, prefix: &str, nth: usize, pid: u32) {
        *self.kill.lock().unwrap_or_else(|p| p.into_inner()) = Some(Kill {
            prefix: prefix.to_string(),
            nth,
            pid,
        });
    }

    /// Answers `path` by `rule` from now on.
    pub fn set_rule(&self, path: &str, rule: Rule) {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), rule);
    }

    /// How many requests so far had a path starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.hits().iter().filter(|p| p.starts_with(prefix)).count()
    }

    /// Every request path so far, in arrival order.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Closes the port (later connections are refused) and releases hanging requests.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
            let _ = accept.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    mut conn: TcpStream,
    upstream: Option<&str>,
    hits: &Mutex<Vec<String>>,
    rules: &Mutex<HashMap<String, Rule>>,
    stop: &AtomicBool,
    kill: &Mutex<Option<Kill>>,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let head_text = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut first = text.lines().next().unwrap_or_default().split(' ');
    let (method, path) = (
        first.next().unwrap_or("GET").to_string(),
        first.next().unwrap_or("/").to_string(),
    );
    if stop.load(Ordering::SeqCst) {
        return;
    }
    let seen = {
        let mut hits = hits.lock().unwrap_or_else(|p| p.into_inner());
        hits.push(path.clone());
        hits.clone()
    };
    let mut kill = kill.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = kill.as_ref() {
        if seen.iter().filter(|p| p.starts_with(&k.prefix)).count() >= k.nth {
            let _ = Command::new("kill")
                .args(["-KILL", &k.pid.to_string()])
                .status();
            *kill = None;
        }
    }
    drop(kill);
    let rule = rules
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&path)
        .cloned();
    let reply = match (rule, upstream) {
        (Some(Rule::Canned(body)), _) => response(200, "application/octet-stream", &body),
        (Some(Rule::Hang), _) => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        (None, Some(up)) => match forward(up, &method, &path, head_text) {
            Some(bytes) => bytes,
            None => return,
        },
        (None, None) => response(
            404,
            "application/json",
            br#"{"error":{"code":"not_found","message":"canned upstream"}}"#,
        ),
    };
    let _ = conn.write_all(&reply);
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sends the request on to the real origin with `Connection: close` and returns its raw answer,
/// or `None` (the caller then drops the connection unanswered) when the origin is unreachable
/// or its answer is torn (it died while sending). Like a load balancer, the proxy never passes
/// on half an answer. The client's other header lines (`Accept-Encoding` above all) go along
/// unchanged.
fn forward(upstream: &str, method: &str, path: &str, headers: &str) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {upstream}\r\nconnection: close\r\n");
    for line in headers.lines().skip(1) {
        let name = line.split(':').next().unwrap_or_default().trim();
        if line.is_empty()
            || ["host", "connection"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    up.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    up.read_to_end(&mut out).ok()?;
    complete(&out).then_some(out)
}

/// Whether a raw HTTP/1.1 answer has its whole head and as many body bytes as it declares.
fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let declared = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    declared.is_none_or(|len| raw.len() - (end + 4) >= len)
}
