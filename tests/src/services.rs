//! Private real servers for tier tests: moto (S3) and redis-server on free ports, killed on drop.
//!
//! Never touches the shared Redis on 6379: tests that stop or break a server start their own.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The moto_server binary: `$PREWARM_MOTO_SERVER`, else `.tools/moto` (from `scripts/services`),
/// else whatever is on `PATH`.
fn moto_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PREWARM_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/moto/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not come up within 30 s");
}

/// A moto S3 server on a free loopback port.
pub struct Moto {
    pub port: u16,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server (run scripts/services to install it)");
        let url = format!("http://127.0.0.1:{port}/moto-api/");
        let http = crate::http();
        wait_until("moto_server", || {
            http.get(&url).send().is_ok_and(|r| r.status().is_success())
        });
        Moto { port, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket that anonymous requests may write, so tests can plant bytes unsigned.
    pub fn create_bucket(&self, name: &str) {
        let r = crate::http()
            .put(format!("{}/{name}", self.endpoint()))
            .header("x-amz-acl", "public-read-write")
            .send()
            .expect("PUT bucket");
        assert!(
            r.status().is_success(),
            "create bucket {name}: {}",
            r.status()
        );
    }

    /// Overwrites an object's bytes directly, bypassing prewarm (to plant corruption).
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let r = crate::http()
            .put(format!("{}/{bucket}/{key}", self.endpoint()))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .expect("PUT object");
        assert!(r.status().is_success(), "put {key}: {}", r.status());
    }

    /// Stops the server (as an outage would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private redis-server on a free port, which tests may stop and start again.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (run scripts/services to install it)");
        self.child = Some(child);
        wait_until("redis-server", || self.cli(&["PING"]).trim() == "PONG");
    }

    /// Stops this private server; the shared one on 6379 is never touched.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `redis-cli -p PORT ARGS…` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
