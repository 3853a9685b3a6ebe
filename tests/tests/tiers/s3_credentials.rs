//! S3 credentials from the standard AWS chain: an origin whose `[s3]` has no keys signs with an
//! AWS profile, a `credential_process`, or a web identity token exchanged at STS (moto serves
//! S3 and STS), and one with no credentials anywhere refuses to start, saying so, even when
//! IMDS never answers. (A working instance profile is not tested: moto's IMDSv2 token response
//! lacks the TTL header the SDK requires.)
//!
//! Each origin runs with every `AWS_*` variable of the test's own environment removed and
//! `HOME` at an empty directory, so nothing on the machine can lend it credentials.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prewarm_tests::prewarm_bin;
use prewarm_tests::services::Moto;

use super::{fetch_runtime, pack, push, BUCKET};

/// Longer than any start-up should take; past it the origin is killed and the test fails.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// `[s3]` at moto with no keys: whatever signs, the chain provided it.
fn keyless_config(dir: &Path, moto: &Moto) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("prewarm.toml");
    std::fs::write(
        &config,
        format!(
            "[s3]\nendpoint = \"{}\"\nbucket = \"{BUCKET}\"\nprefix = \"e2e/\"\nconnect_timeout_ms = 500\ntimeout_ms = 3000\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    config
}

/// A `prewarm serve` started by [`serve`]; killed on drop.
struct Running {
    url: String,
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `prewarm serve --config CONFIG` in `dir` with only `aws_env` for `AWS_*` and `HOME` at
/// `dir/home` (empty unless the test wrote there). `Ok` once it listens and is healthy;
/// `Err(stderr)` if it exited first. Never waits past [`START_DEADLINE`].
fn serve(dir: &Path, config: &Path, aws_env: &[(&str, String)]) -> Result<Running, String> {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new(prewarm_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("PREWARM_LOG", "warn")
        .env("HOME", &home);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(aws_env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prewarm serve");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
        // Dropping `tx` here tells the waiter that stdout closed: the process is exiting.
    });
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    match rx.recv_timeout(START_DEADLINE) {
        Ok(url) => {
            prewarm_tests::wait_healthy(&url);
            Ok(Running { url, child })
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let deadline = Instant::now() + START_DEADLINE;
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("prewarm serve closed stdout but did not exit");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err.join().unwrap())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "prewarm serve neither listened nor exited within {START_DEADLINE:?}: {}",
                err.join().unwrap()
            );
        }
    }
}

fn started(r: Result<Running, String>) -> Running {
    r.unwrap_or_else(|stderr| panic!("prewarm serve did not start: {stderr}"))
}

#[test]
fn an_origin_without_keys_signs_with_an_aws_profile_or_a_credential_process() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let aws = dir.path().join("aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[default]\naws_access_key_id = not-this-one\naws_secret_access_key = nor-this\n\
         [prewarm-test]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n",
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile prewarm-test]\nregion = us-east-1\n\
         [profile prewarm-proc]\nregion = us-east-1\ncredential_process = /bin/sh -c \"echo '{\\\"Version\\\": 1, \\\"AccessKeyId\\\": \\\"AKIAPROCESS\\\", \\\"SecretAccessKey\\\": \\\"process-secret\\\"}'\"\n",
    )
    .unwrap();
    let files = |profile: &str| {
        vec![
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                aws.join("credentials").display().to_string(),
            ),
            ("AWS_CONFIG_FILE", aws.join("config").display().to_string()),
            ("AWS_PROFILE", profile.to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    };

    let a_dir = dir.path().join("a");
    let a = started(serve(
        &a_dir,
        &keyless_config(&a_dir, &moto),
        &files("prewarm-test"),
    ));
    let out = push(&pack(dir.path(), 11), "v1", &a.url);
    assert!(
        out.status.success(),
        "push through a profile-signed origin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fetch_runtime(&a.url, "v1");

    // A second origin, nothing on its disk, signs through a `credential_process` profile and
    // serves what the first one put in the bucket.
    let b_dir = dir.path().join("b");
    let b = started(serve(
        &b_dir,
        &keyless_config(&b_dir, &moto),
        &files("prewarm-proc"),
    ));
    fetch_runtime(&b.url, "v1");

    // A profile that is not in the files is named at start-up, not guessed around.
    let c_dir = dir.path().join("c");
    let err = serve(
        &c_dir,
        &keyless_config(&c_dir, &moto),
        &files("prewarm-typo"),
    )
    .err()
    .expect("an unknown profile must stop start-up");
    assert!(
        err.contains("s3 tier") && err.contains("prewarm-typo"),
        "{err}"
    );
}

/// EKS IRSA's shape: a token file and a role, exchanged at STS (moto's, reached through
/// `AWS_ENDPOINT_URL_STS`) for temporary credentials with a session token.
#[test]
fn an_origin_without_keys_signs_with_a_web_identity_token() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let token = dir.path().join("token");
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcmV3YXJtIn0.c2lnbmF0dXJl",
    )
    .unwrap();
    let env = vec![
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/prewarm-origin".to_string(),
        ),
        ("AWS_ROLE_SESSION_NAME", "prewarm-e2e".to_string()),
        ("AWS_ENDPOINT_URL_STS", moto.endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let a_dir = dir.path().join("a");
    let a = started(serve(&a_dir, &keyless_config(&a_dir, &moto), &env));
    let out = push(&pack(dir.path(), 12), "v1", &a.url);
    assert!(
        out.status.success(),
        "push through a web-identity origin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fetch_runtime(&a.url, "v1");
}

#[test]
fn with_no_credentials_anywhere_start_up_stops_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let env = vec![("AWS_EC2_METADATA_DISABLED", "true".to_string())];
    let err = serve(dir.path(), &keyless_config(dir.path(), &moto), &env)
        .err()
        .expect("an origin with no credentials must not start");
    assert!(
        err.contains("s3 tier") && err.contains("no AWS credentials"),
        "{err}"
    );
    // What to do about it, and what was looked at.
    for hint in [
        "access_key_id",
        "AWS_PROFILE",
        "role",
        "Profile:",
        "Ec2InstanceMetadata:",
    ] {
        assert!(err.contains(hint), "{hint}: {err}");
    }

    // Off EC2, where nothing answers at the metadata address: a listener that never accepts
    // stands in for it. Start-up still ends (serve's deadline would fail the test), same words.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let imds = format!("http://{}", silent.local_addr().unwrap());
    let env = vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)];
    let err = serve(dir.path(), &keyless_config(dir.path(), &moto), &env)
        .err()
        .expect("an origin with no credentials must not start");
    assert!(
        err.contains("s3 tier")
            && err.contains("no AWS credentials")
            && err.contains("Ec2InstanceMetadata"),
        "{err}"
    );
}
