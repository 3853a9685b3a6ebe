//! Warmed runtimes across nodes: origins sharing moto S3 and a Redis, each with its own node directory; one warms, the others fetch its bytecode and use it as is.

use std::process::Command;

use prewarm_shared::sandbox::{Status, WarmStats};
use prewarm_tests::services::{Moto, Redis};
use prewarm_tests::LayerEntries;
use serde_json::{json, Value};

use crate::support::Node;

/// The shared tiers of one test's fleet: a private moto and Redis, and the config naming them.
struct Fleet {
    _moto: Moto,
    redis: Redis,
    conf: tempfile::NamedTempFile,
}

impl Fleet {
    fn start() -> Fleet {
        let (moto, redis) = (Moto::start(), Redis::start());
        moto.create_bucket("warmed");
        let conf = tempfile::NamedTempFile::new().expect("config");
        let toml = format!(
            "[s3]\nendpoint = \"{}\"\nbucket = \"warmed\"\naccess_key_id = \"test\"\n\
             secret_access_key = \"test\"\n[redis]\nurl = \"{}\"\n",
            moto.endpoint(),
            redis.url()
        );
        std::fs::write(conf.path(), toml).expect("config");
        Fleet {
            _moto: moto,
            redis,
            conf,
        }
    }

    /// An origin on the shared tiers with its own data and node directory, named `name`,
    /// with a short warm lease (so a dead warmer is taken over quickly).
    fn node(&self, name: &str, extra: &[&str]) -> Node {
        let conf = self.conf.path().to_str().expect("utf-8");
        let mut args = vec![
            "--config",
            conf,
            "--node-name",
            name,
            "--warmed-lease-ms",
            "1500",
        ];
        args.extend_from_slice(extra);
        Node::start(&args)
    }
}

/// `python3 -m compileall` over the runtime's `lib`, as python-data's warm step does.
fn compileall(name: &str) -> Value {
    json!([[
        "python3",
        "-m",
        "compileall",
        "-q",
        format!("/opt/{name}/lib")
    ]])
}

/// Pushes `NAME:v1`, a Python library `lib/hello.py` on `PYTHONPATH`, warmed by `warm`.
fn push_python(node: &Node, name: &str, warm: Value, extra_env: &[(&str, &str)]) -> String {
    let files: LayerEntries = vec![
        ("lib/", b"", 0o755),
        ("lib/hello.py", b"GREETING = 'hello from python'\n", 0o644),
    ];
    let mut env = json!({ "PYTHONPATH": format!("/opt/{name}/lib") });
    for (k, v) in extra_env {
        env[*k] = json!(v);
    }
    node.push_pack(name, files, env, warm)
}

/// The node index's record of runtime `hex`: how it came to be warm.
fn warmed_how(node: &Node, hex: &str) -> String {
    let index: Value = serde_json::from_slice(
        &std::fs::read(node.node_dir().join("index.json")).expect("node index"),
    )
    .expect("index JSON");
    index["runtimes"][hex]["warmed"]
        .as_str()
        .expect("warmed")
        .to_string()
}

/// Imports `hello` verbosely in a sandbox of `NAME:v1`: Python says whether the `.pyc` it
/// found matches the source (used as is) or is stale (recompiled in memory).
fn import_verbosely(node: &Node, name: &str) -> String {
    let sb = node.ready(name);
    let r = node.exec(
        &sb.sandbox_id,
        &["python3", "-v", "-c", "import hello; print(hello.GREETING)"],
    );
    assert_eq!(r.stdout, "hello from python\n", "{r:?}");
    r.stderr
}

fn assert_bytecode_used(stderr: &str, name: &str) {
    let pyc = format!("/opt/{name}/lib/__pycache__/hello.");
    let used = stderr
        .lines()
        .any(|l| l.contains(&pyc) && l.contains(" matches /opt/"));
    assert!(used, "the warm step's .pyc was not used:\n{stderr}");
    assert!(
        !stderr.contains("bytecode is stale"),
        "bytecode recompiled:\n{stderr}"
    );
}

#[test]
fn a_second_node_fetches_the_warmed_runtime_runs_no_warm_command_and_uses_its_bytecode() {
    let fleet = Fleet::start();
    let a = fleet.node("node-a", &[]);
    let x = push_python(&a, "x", compileall("x"), &[]);
    assert_bytecode_used(&import_verbosely(&a, "x"), "x");
    let sa = a.stats();
    assert_eq!(
        (sa.warm_commands_run, sa.warmed_published),
        (1, 1),
        "{sa:?}"
    );
    assert_eq!(warmed_how(&a, &x), "warmed_and_published");

    // B, with an empty node directory: fetches A's result, runs nothing, and Python uses the
    // bytecode A compiled (same fixed mtimes on both nodes).
    let b = fleet.node("node-b", &[]);
    assert_bytecode_used(&import_verbosely(&b, "x"), "x");
    let sb = b.stats();
    assert_eq!(
        (sb.warm_commands_run, sb.warmed_fetched, sb.warmed_published),
        (0, 1, 0),
        "{sb:?}"
    );
    assert_eq!(warmed_how(&b, &x), "fetched_warmed");

    // Another warm command, or the same with another env, is another key: a fresh warm.
    let cmd = json!([["python3", "-m", "compileall", "-q", "-f", "/opt/y/lib"]]);
    push_python(&a, "y", cmd, &[]);
    push_python(&a, "z", compileall("z"), &[("EXTRA", "1")]);
    b.ready("y");
    b.ready("z");
    let sb = b.stats();
    assert_eq!(
        (sb.warm_commands_run, sb.warmed_fetched, sb.warmed_published),
        (2, 1, 2),
        "{sb:?}"
    );

    // An operator who trusts no other node: `--warmed ignore` warms locally.
    let c = fleet.node("node-c", &["--warmed", "ignore"]);
    assert_bytecode_used(&import_verbosely(&c, "x"), "x");
    let sc = c.stats();
    assert_eq!(
        (sc.warm_commands_run, sc.warmed_fetched, sc.warmed_published),
        (1, 0, 0),
        "{sc:?}"
    );
    assert_eq!(warmed_how(&c, &x), "warmed_here");
}

/// A warm command that blocks until the test opens the gate (see `Node::open_gate`), then
/// compiles like [`compileall`].
fn gated_compileall(name: &str) -> Value {
    json!([[
        "/bin/sh",
        "-c",
        format!(
            "while [ ! -e /opt/{name}/go ]; do sleep 0.05; done; python3 -m compileall -q /opt/{name}/lib"
        )
    ]])
}

fn sum(a: &WarmStats, b: &WarmStats) -> (u64, u64, u64) {
    (
        a.warm_commands_run + b.warm_commands_run,
        a.warmed_published + b.warmed_published,
        a.warmed_fetched + b.warmed_fetched,
    )
}

#[test]
fn nodes_asked_at_once_warm_once_and_a_dead_warmers_lease_is_taken_over() {
    let fleet = Fleet::start();
    let (a, b) = (fleet.node("node-a", &[]), fleet.node("node-b", &[]));

    // Both asked at once: one warms (gated, so the other surely asks while it runs), the
    // other waits for its publication.
    let hex = push_python(&a, "once", gated_compileall("once"), &[]);
    let body = json!({"runtime": "once:v1", "user_id": "u"});
    let (ca, sa) = a.create(body.clone());
    let (cb, sb) = b.create(body.clone());
    assert_eq!((ca, cb), (202, 202));
    // Whichever node took the lease has the build dir; open its gate.
    let builder = a.until("a build dir on one node", || {
        [&a, &b].into_iter().find(|n| {
            std::fs::read_dir(n.runtimes_dir())
                .map(|rd| {
                    rd.flatten().any(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!(".warming-{hex}-"))
                    })
                })
                .unwrap_or(false)
        })
    });
    builder.open_gate(&hex);
    for (n, id) in [(&a, &sa.sandbox_id), (&b, &sb.sandbox_id)] {
        assert_eq!(n.settled(id).state.status, Status::Ready);
    }
    assert_eq!(sum(&a.stats(), &b.stats()), (1, 1, 1), "exactly one warm");

    // The warmer is killed mid-warm: the other takes over once its lease expires.
    let hex = push_python(&a, "dies", gated_compileall("dies"), &[]);
    let (ca, _) = a.create(json!({"runtime": "dies:v1", "user_id": "u"}));
    assert_eq!(ca, 202);
    a.build_dir(&hex);
    // A holds the key's lease while it warms.
    let holder = fleet
        .redis
        .cli(&["--scan", "--pattern", "prewarm:warmed-lease:*"]);
    let holder = fleet.redis.cli(&["GET", holder.trim()]);
    assert!(holder.starts_with("node-a/"), "lease held by {holder:?}");
    let (cb, sb) = b.create(json!({"runtime": "dies:v1", "user_id": "u"}));
    assert_eq!(cb, 202);
    let before = b.stats();
    let pid = a.origin.pid();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    b.open_gate(&hex);
    assert_eq!(b.settled(&sb.sandbox_id).state.status, Status::Ready);
    let s = b.stats();
    assert_eq!(
        (
            s.warm_commands_run - before.warm_commands_run,
            s.warmed_published - before.warmed_published
        ),
        (1, 1),
        "{s:?}"
    );
}
