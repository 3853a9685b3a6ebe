//! Helpers for end-to-end tests: start the real `prewarm` binary on free ports and run the CLI.
//!
//! The binary is the one `cargo build -p prewarm-origin` produced beside this test executable
//! (`scripts/test` builds it first), or `$PREWARM_BIN`.

pub mod blocks;
pub mod edge;
pub mod in_process;
pub mod services;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the `prewarm` binary under test.
pub fn prewarm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PREWARM_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-exe> → target/<profile>/prewarm
    let exe = std::env::current_exe().expect("current test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("prewarm"))
        .expect("target layout");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p prewarm-origin` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// A free TCP port on loopback (bound then released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs `prewarm ARGS…` to completion.
pub fn cli(args: &[&str]) -> Output {
    Command::new(prewarm_bin())
        .args(args)
        .env("PREWARM_LOG", "warn")
        .output()
        .expect("run prewarm")
}

/// Runs `prewarm ARGS…`, asserts success and parses stdout as JSON.
pub fn cli_json(args: &[&str]) -> serde_json::Value {
    let out = cli(args);
    assert!(
        out.status.success(),
        "prewarm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "prewarm {args:?}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `prewarm push SRC --name NAME --to TO --json`, asserted to succeed; the JSON report.
pub fn push_json(src: &Path, name: &str, to: &str) -> serde_json::Value {
    cli_json(&[
        "push",
        src.to_str().expect("utf-8 path"),
        "--name",
        name,
        "--to",
        to,
        "--json",
    ])
}

/// `prewarm pull WHAT --from FROM --into INTO --cache-dir CACHE --json EXTRA…`, asserted to
/// succeed; the JSON report.
pub fn pull_json(
    what: &str,
    from: &str,
    into: &Path,
    cache: &Path,
    extra: &[&str],
) -> serde_json::Value {
    let (into, cache) = (
        into.to_str().expect("utf-8 path"),
        cache.to_str().expect("utf-8 path"),
    );
    let mut args = vec![
        "pull",
        what,
        "--from",
        from,
        "--into",
        into,
        "--cache-dir",
        cache,
        "--json",
    ];
    args.extend_from_slice(extra);
    cli_json(&args)
}

/// What a user sees of a tree, path → kind, permission bits (`& mode_mask`), size and digest
/// or link target, so two trees compare with `assert_eq!`.
pub fn tree_snapshot(root: &Path, mode_mask: u32) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(
        root: &Path,
        dir: &Path,
        mask: u32,
        out: &mut std::collections::BTreeMap<String, String>,
    ) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let p = entry.expect("dir entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let m = std::fs::symlink_metadata(&p).expect("metadata");
            let mode = m.permissions().mode() & mask;
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!(
                        "link -> {}",
                        std::fs::read_link(&p).expect("link").display()
                    ),
                );
            } else if m.is_dir() {
                out.insert(rel.clone(), format!("dir {mode:o}"));
                walk(root, &p, mask, out);
            } else {
                let bytes = std::fs::read(&p).expect("read file");
                out.insert(
                    rel,
                    format!(
                        "file {mode:o} {} {}",
                        bytes.len(),
                        prewarm_shared::Digest::of(&bytes)
                    ),
                );
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, mode_mask, &mut out);
    out
}

/// An error response's status and `error.code`, asserting the body is the JSON error shape
/// with a non-empty message.
pub fn error_code(resp: reqwest::blocking::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().expect("error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_string();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message present"
    );
    (status, code)
}

/// A running `prewarm serve`, killed on drop.
pub struct Origin {
    pub url: String,
    child: Child,
}

impl Origin {
    /// Starts `prewarm serve --listen 127.0.0.1:0 --data-dir DATA EXTRA…` and waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Origin {
        let mut child = Command::new(prewarm_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env(
                "PREWARM_LOG",
                std::env::var("PREWARM_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn prewarm serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(u) = l.strip_prefix("listening on ") {
                        break u.trim().to_string();
                    }
                }
                _ => {
                    let status = child.wait().ok();
                    panic!("prewarm serve exited before listening: {status:?}");
                }
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        wait_healthy(&url);
        Origin { url, child }
    }

    /// Kills the server hard (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Origin {
    /// Stops the server as an operator would (SIGTERM: graceful shutdown, which also stops
    /// its warms and sandboxes), and kills it if it has not exited within 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `URL/healthz` until it answers 200 (or panics after 30 s).
pub fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = reqwest::blocking::Client::new();
    while Instant::now() < deadline {
        if client
            .get(format!("{url}/healthz"))
            .send()
            .map(|r| r.status().is_success())
            .unwrap_or(false)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} did not become healthy");
}

/// A blocking HTTP client for assertions.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// One layer's entries for [`write_pack`]: `(path, contents, mode)`; a path ending in `/` is a directory.
pub type LayerEntries<'a> = Vec<(&'a str, &'a [u8], u32)>;

/// Writes a small runtime pack (meta.json, lock.json, .tar.gz layers) to `dir`.
/// `layers` is `(name, [(path, contents, mode)])`; paths ending in `/` are directories.
pub fn write_pack(
    dir: &Path,
    name: &str,
    layers: &[(&str, LayerEntries)],
    extra_meta: serde_json::Value,
) {
    std::fs::create_dir_all(dir.join("layers")).expect("mkdir layers");
    let mut meta = serde_json::json!({"name": name, "version": "1.0.0", "layers": layers.iter().map(|l| l.0).collect::<Vec<_>>()});
    if let (Some(m), Some(extra)) = (meta.as_object_mut(), extra_meta.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    std::fs::write(
        dir.join("meta.json"),
        serde_json::to_vec_pretty(&meta).expect("json"),
    )
    .expect("meta.json");
    let lock = serde_json::json!({"packages": layers.iter().map(|l| serde_json::json!({"name": l.0, "version": "1", "layer": l.0})).collect::<Vec<_>>()});
    std::fs::write(
        dir.join("lock.json"),
        serde_json::to_vec(&lock).expect("json"),
    )
    .expect("lock.json");
    for (layer, entries) in layers {
        let f = std::fs::File::create(dir.join("layers").join(format!("{layer}.tar.gz")))
            .expect("layer file");
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::fast(),
        ));
        for (path, contents, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(*mode);
            if path.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty())
                    .expect("dir entry");
            } else {
                h.set_size(contents.len() as u64);
                b.append_data(&mut h, path, *contents).expect("file entry");
            }
        }
        b.into_inner()
            .and_then(|gz| gz.finish())
            .expect("finish layer");
    }
}
