//! When warming goes wrong: a failing warm command, an origin killed mid-warm, a warm command that damages the cache; and a sandbox deleted while its command runs.

use std::time::{Duration, Instant};

use prewarm_shared::sandbox::{ExecResult, SandboxInfo, Status, Step};
use prewarm_tests::Origin;
use serde_json::{json, Value};

use crate::support::{assert_compiled, compile_step, Node};

#[test]
fn failing_warm_command_fails_every_waiter_with_the_reason() {
    let node = Node::start(&[]);
    node.push_greeter(
        "broken",
        json!([[
            "/bin/sh",
            "-c",
            "sleep 1; echo 'compile error: broken on purpose' >&2; exit 3"
        ]]),
    );
    let infos: Vec<SandboxInfo> = node
        .create_concurrently("broken:v1", 5)
        .into_iter()
        .map(|(_, info)| info)
        .collect();
    let ws = node.events(&infos[0].sandbox_id);
    let last = ws.last().expect("events");
    assert_eq!(last.status, Status::Failed, "{ws:?}");
    for info in &infos {
        let done = node.settled(&info.sandbox_id);
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
    let exec = format!("/v1/sandboxes/{}/exec", infos[0].sandbox_id);
    let (code, _) = node.call("POST", &exec, json!({"cmd": ["true"]}));
    assert_eq!(code, 409);
    let (code, _) = node.create(json!({"runtime": "broken:v1", "user_id": "again"}));
    assert_eq!(code, 202);
    assert_eq!(node.stats().warms_started, 2);
    // Let the retry fail too, so no warm command is left running when the node stops.
    node.wait("the retry to fail", || node.stats().warms_failed == 2);
}

#[test]
fn origin_restarts_cleanly_after_sigkill_mid_warm() {
    let node = Node::start(&[]);
    node.push_greeter(
        "slow",
        json!([[
            "/bin/sh",
            "-c",
            "echo partial > /opt/slow/partial; exec sleep 86399"
        ]]),
    );
    node.push_greeter("quick", compile_step("quick"));
    let (_, info) = node.create(json!({"runtime": "slow:v1", "user_id": "u"}));
    node.wait("the warm step", || {
        node.get(&info.sandbox_id)
            .is_some_and(|i| i.state.step == Step::Warm)
    });
    // Killed once the command runs: an origin killed while bwrap is still starting (before
    // it arms --die-with-parent) leaves it behind, which only the restart cleans up.
    let partial = node.build_dir(&info.digest.hex()).join("partial");
    node.wait("the warm command to start", || partial.exists());
    let node_dir = node.node_dir();
    let Node { origin, data, work } = node;
    origin.kill();
    // The warm command dies with the origin (--die-with-parent).
    let deadline = Instant::now() + Duration::from_secs(20);
    while sandbox_processes_of(&node_dir) > 0 {
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
    let index: Value =
        serde_json::from_slice(&std::fs::read(node.node_dir().join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["runtimes"], json!({}));
    assert_eq!(node.stats().warm_runtimes, 0);
    // The node works: another runtime warms and runs; the killed one may be retried.
    let (_, q) = node.create(json!({"runtime": "quick:v1", "user_id": "u"}));
    assert_eq!(node.settled(&q.sandbox_id).state.status, Status::Ready);
    assert_compiled(&node.exec(&q.sandbox_id, &["/opt/quick/bin/hello"]));
    let (code, _) = node.create(json!({"runtime": "slow:v1", "user_id": "u"}));
    assert_eq!(code, 202);
    node.wait("the retried warm to run its command", || {
        sandbox_processes_of(&node_dir) > 0
    });
    // Killed again, at once this time: whatever bwrap outlived it, the next start kills.
    let Node { origin, data, work } = node;
    origin.kill();
    let node = Node {
        origin: Origin::start(data.path(), &[]),
        data,
        work,
    };
    assert_eq!(
        sandbox_processes_of(&node.node_dir()),
        0,
        "no sandbox process survives a restart"
    );
}

/// Bubblewrap processes (warm commands, execs) working in this node's directory.
fn sandbox_processes_of(node_dir: &std::path::Path) -> usize {
    let needle = format!("{}/", node_dir.display()).into_bytes();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                        let mut args = c.split(|b| *b == 0);
                        args.next().is_some_and(|a| a.ends_with(b"bwrap"))
                            && args.any(|a| a.starts_with(&needle))
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

/// Refused at the first `chmod`: the sandbox user owns no cached file. (The guard that would
/// catch a change that got through, and evict the file, is tested in `warm::guard`.)
#[test]
fn a_warm_command_that_tries_to_change_a_cached_file_fails_and_the_cache_stays_intact() {
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
        let hex = node.push_data(name, content.as_bytes(), json!([["/bin/sh", "-c", cmd]]));
        let (_, sb) = node.create(json!({"runtime": format!("{name}:v1"), "user_id": "u"}));
        let done = node.settled(&sb.sandbox_id);
        assert_eq!(done.state.status, Status::Failed, "{name}: {done:?}");
        let err = done.state.error.expect("error");
        assert_eq!(err.step, Step::Warm, "{name}: {err:?}");
        assert!(
            err.reason.contains("exited with status 1")
                && err.reason.contains("Operation not permitted"),
            "{name}: {err:?}"
        );
        assert!(!node.runtimes_dir().join(hex).exists());
        // A runtime with the same file gets the bytes as pushed.
        let bystander = format!("{name}-bystander");
        node.push_data(&bystander, content.as_bytes(), json!([]));
        let b = node.ready(&bystander);
        let r = node.exec(&b.sandbox_id, &["cat", &f(&bystander)]);
        assert_eq!(r.stdout, content, "{name}");
    }
}

/// Bytecode compilers replace files (write a new one, rename it over the old): the tree's
/// link goes, the cache file is then linked by nothing, and the node's cache pruning may take
/// it. That must not read as damage while the warm is still running (seen with compileall on
/// the real python-data runtime once a warm outlasted the first upkeep round).
#[test]
fn a_warm_command_that_replaces_cached_files_survives_cache_pruning_mid_warm() {
    let node = Node::start(&[]);
    let replace = "cp /opt/rewrite/lib/data /opt/rewrite/lib/data.new \
         && mv /opt/rewrite/lib/data.new /opt/rewrite/lib/data \
         && while [ ! -e /opt/rewrite/go ]; do sleep 0.05; done";
    let hex = node.push_data(
        "rewrite",
        b"replaced, not modified\n",
        json!([["/bin/sh", "-c", replace]]),
    );
    let (code, sb) = node.create(json!({"runtime": "rewrite:v1", "user_id": "u"}));
    assert_eq!(code, 202);
    let build = node.build_dir(&hex);
    use std::os::unix::fs::MetadataExt;
    node.wait("the warm command to replace lib/data", || {
        std::fs::symlink_metadata(build.join("lib/data")).is_ok_and(|m| m.nlink() == 1)
    });
    // The node prunes its cache in its upkeep round (every 5 s, and first of all after a start,
    // which may leave files of half-built runtimes): let one pass while the command runs.
    std::thread::sleep(Duration::from_secs(6));
    node.open_gate(&hex);
    let done = node.settled(&sb.sandbox_id);
    assert_eq!(done.state.status, Status::Ready, "{done:?}");
    let r = node.exec(&sb.sandbox_id, &["cat", "/opt/rewrite/lib/data"]);
    assert_eq!(r.stdout, "replaced, not modified\n");
}

#[test]
fn deleting_a_sandbox_kills_the_command_it_is_running() {
    let node = Node::start(&[]);
    node.push_data("doomed", b"x", json!([]));
    let sb = node.ready("doomed");
    let id = sb.sandbox_id.as_str();
    let ws = node.node_dir().join("sandboxes").join(id).join("workspace");
    let r = std::thread::scope(|s| {
        let running = s.spawn(|| {
            let body = json!({
                "cmd": ["/bin/sh", "-c", "touch started; sleep 30; echo finished"],
                "timeout_ms": 120_000,
            });
            node.call("POST", &format!("/v1/sandboxes/{id}/exec"), body)
        });
        node.wait("the command to start", || ws.join("started").exists());
        node.delete(id);
        running.join().expect("exec thread")
    });
    let (code, r) = r;
    assert_eq!(code, 200, "{r}");
    let r: ExecResult = serde_json::from_value(r).expect("exec result");
    assert_eq!(r.signal.as_deref(), Some("SIGKILL"), "{r:?}");
    assert!(!r.stdout.contains("finished"), "{r:?}");
    assert!(!ws.exists(), "the workspace is gone");
    node.wait("no sandbox process left", || {
        sandbox_processes_of(&node.node_dir()) == 0
    });
}
