//! Private real servers for tier tests: moto (S3) and redis-server (plain or TLS) on free
//! ports, killed on drop.
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

    /// Forgets every bucket and object (moto's reset), as if the bucket were emptied by hand.
    pub fn reset(&self) {
        let r = crate::http()
            .post(format!("{}/moto-api/reset", self.endpoint()))
            .send()
            .expect("POST moto reset");
        assert!(r.status().is_success(), "moto reset: {}", r.status());
    }

    /// Whether an object exists, asked directly (unsigned; the test buckets allow it).
    pub fn has_object(&self, bucket: &str, key: &str) -> bool {
        let r = crate::http()
            .head(format!("{}/{bucket}/{key}", self.endpoint()))
            .send()
            .expect("HEAD object");
        r.status().is_success()
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

/// A throwaway CA and what it signed, as PEM files in a temporary directory (removed on drop):
/// a server certificate for `127.0.0.1` and `localhost`, and a client certificate for mutual
/// TLS. Nothing else trusts this CA.
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    pub fn generate() -> TestCerts {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().expect("temp dir for certificates");
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "prewarm test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        write("ca.pem", ca.pem());
        for (name, sans, usage) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            ("client", vec![], ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name
                .push(DnType::CommonName, format!("prewarm test {name}"));
            p.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            write(
                &format!("{name}.pem"),
                p.signed_by(&key, &ca).unwrap().pem(),
            );
            write(&format!("{name}-key.pem"), key.serialize_pem());
        }
        TestCerts { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate: what a client must trust.
    pub fn ca(&self) -> PathBuf {
        self.file("ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.file("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.file("server-key.pem")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.file("client.pem")
    }

    pub fn client_key(&self) -> PathBuf {
        self.file("client-key.pem")
    }
}

/// How a TLS Redis is set up.
struct RedisTls {
    certs: TestCerts,
    /// Clients must present a certificate signed by the CA (`--tls-auth-clients yes`).
    client_auth: bool,
}

/// A private redis-server on a free port, which tests may stop and start again.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    tls: Option<RedisTls>,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with(None)
    }

    /// A redis-server that speaks only TLS, with a certificate from its own throwaway CA
    /// ([`Redis::certs`]). Clients need not present a certificate.
    pub fn start_tls() -> Redis {
        Self::start_with(Some(RedisTls {
            certs: TestCerts::generate(),
            client_auth: false,
        }))
    }

    /// [`Redis::start_tls`], but clients must present a certificate the CA signed (mutual TLS).
    pub fn start_mtls() -> Redis {
        Self::start_with(Some(RedisTls {
            certs: TestCerts::generate(),
            client_auth: true,
        }))
    }

    fn start_with(tls: Option<RedisTls>) -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            tls,
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA and certificates of a TLS server. Panics for a plain one.
    pub fn certs(&self) -> &TestCerts {
        &self.tls.as_ref().expect("a TLS redis (start_tls)").certs
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        match &self.tls {
            None => {
                cmd.args(["--port", &port]);
            }
            Some(t) => {
                cmd.args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(t.certs.server_cert())
                    .arg("--tls-key-file")
                    .arg(t.certs.server_key())
                    .arg("--tls-ca-cert-file")
                    .arg(t.certs.ca())
                    .args([
                        "--tls-auth-clients",
                        if t.client_auth { "yes" } else { "no" },
                    ]);
            }
        }
        let child = cmd
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

    /// Runs `redis-cli -p PORT ARGS…` (over TLS, trusting the test CA, for a TLS server) and
    /// returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(t) = &self.tls {
            tls_args(&mut cmd, &t.certs);
        }
        let out = cmd.args(args).output().expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli`'s TLS flags: trust `certs`' CA and present its client certificate.
fn tls_args(cmd: &mut Command, certs: &TestCerts) {
    cmd.arg("--tls")
        .arg("--cacert")
        .arg(certs.ca())
        .arg("--cert")
        .arg(certs.client_cert())
        .arg("--key")
        .arg(certs.client_key());
}
