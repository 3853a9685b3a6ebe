//! Sandbox-wide ceilings (a cgroup per sandbox): a fork bomb stops at the process cap, many processes share one memory cap, and DELETE kills everything the sandbox started, daemons included.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prewarm_shared::limits::Limit;
use prewarm_shared::sandbox::{ExecResult, Status};
use prewarm_tests::http;
use serde_json::{json, Value};

use crate::support::{gated, Node};

/// Where the cgroup v1 hierarchies these tests read are mounted.
const CGROUP_FS: &str = "/sys/fs/cgroup";

/// The directory named `name` in the v1 hierarchy of `controller`, wherever below the
/// origin's own cgroup it is.
fn cgroup_dir(controller: &str, name: &str) -> Option<PathBuf> {
    fn find(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
        let entries = std::fs::read_dir(dir).ok()?;
        let subdirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        if let Some(d) = subdirs
            .iter()
            .find(|d| d.file_name() == Some(name.as_ref()))
        {
            return Some(d.clone());
        }
        if depth == 0 {
            return None;
        }
        subdirs.iter().find_map(|d| find(d, name, depth - 1))
    }
    let root = Path::new(CGROUP_FS).join(controller);
    assert!(
        root.join("cgroup.procs").is_file(),
        "these tests need the cgroup v1 `{controller}` controller at {} (scripts/sandbox-tools mounts it)",
        root.display()
    );
    find(&root, name, 8)
}

/// A number in a cgroup file (`pids.peak`, `memory.max_usage_in_bytes`, …).
fn read_u64(dir: &Path, file: &str) -> u64 {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{file}: {text:?}"))
}

/// `KEY N` in a cgroup file of such lines (`pids.events`, `memory.oom_control`).
fn keyed(dir: &Path, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

/// The pids in a cgroup now.
fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether `pid` is still a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

fn healthy(node: &Node) -> bool {
    http()
        .get(format!("{}/healthz", node.origin.url))
        .timeout(Duration::from_secs(10))
        .send()
        .is_ok_and(|r| r.status() == 200)
}

fn exec_body(node: &Node, id: &str, body: Value) -> ExecResult {
    let (code, r) = node.call("POST", &format!("/v1/sandboxes/{id}/exec"), body.clone());
    assert_eq!(code, 200, "exec {body}: {r}");
    serde_json::from_value(r).expect("exec result")
}

/// Runs a command in a sandbox created with `limits`; the sandbox id.
fn sandbox_with(node: &Node, name: &str, limits: Value) -> String {
    let (code, info) = node.create(json!({
        "runtime": format!("{name}:v1"), "user_id": "u", "limits": limits,
    }));
    assert!(code == 201 || code == 202, "{code} {info:?}");
    let done = node.settled(&info.sandbox_id);
    assert_eq!(done.state.status, Status::Ready, "{done:?}");
    info.sandbox_id
}

/// Forks forever; backs off a little when a fork is refused, so the spinning stays polite to
/// the machine the test runs on.
const FORK_BOMB: &str = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.05)\n";

#[test]
fn a_fork_bomb_stops_at_the_sandboxes_process_cap_and_the_origin_stays_up() {
    let node = Node::start(&[]);
    node.push_data("bomb", b"x", json!([]));
    // A create may lower the cap, never raise it.
    let (code, r) = node.call(
        "POST",
        "/v1/sandboxes",
        json!({"runtime": "bomb:v1", "user_id": "u", "limits": {"pids": 100_000}}),
    );
    assert_eq!(code, 400, "{r}");
    let msg = r["error"]["message"].as_str().expect("message");
    assert!(msg.contains("limits.pids") && msg.contains("512"), "{msg}");

    let sb = sandbox_with(&node, "bomb", json!({"pids": 64, "cpu_weight": 50}));
    let pids = cgroup_dir("pids", &sb).expect("the sandbox's pids cgroup");
    assert_eq!(read_u64(&pids, "pids.max"), 64);
    // Half the default weight: half of v1's default 1024 shares.
    let cpu = cgroup_dir("cpu", &sb).expect("the sandbox's cpu cgroup");
    assert_eq!(read_u64(&cpu, "cpu.shares"), 512);

    let bomb = std::thread::scope(|s| {
        let run = s.spawn(|| {
            exec_body(
                &node,
                &sb,
                json!({"cmd": ["python3", "-c", FORK_BOMB], "timeout_ms": 8_000}),
            )
        });
        // While it runs: the cap holds and the origin answers.
        let mut seen = 0;
        while !run.is_finished() {
            seen = seen.max(read_u64(&pids, "pids.current"));
            assert!(seen <= 64, "{seen} processes in a sandbox capped at 64");
            assert!(
                healthy(&node),
                "the origin stopped answering during the fork bomb"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        run.join().expect("exec thread")
    });
    assert!(bomb.timed_out, "{bomb:?}");
    // The bomb reached the cap: forks were refused.
    assert!(
        keyed(&pids, "pids.events", "max ").unwrap_or(0) > 0,
        "no fork was refused: {bomb:?}"
    );
    if pids.join("pids.peak").exists() {
        let peak = read_u64(&pids, "pids.peak");
        assert!((8..=64).contains(&peak), "pids.peak {peak}");
    }
    // The timeout killed the bomb: the sandbox empties and is usable again, and DELETE
    // leaves nothing behind.
    node.wait("the bomb's processes gone", || procs(&pids).is_empty());
    let r = node.exec(&sb, &["python3", "-c", "print(6 * 7)"]);
    assert_eq!(r.stdout, "42\n", "{r:?}");
    node.delete(&sb);
    assert!(
        !pids.exists(),
        "the cgroup {} is still there",
        pids.display()
    );
    assert!(!cpu.exists());
    assert!(cgroup_dir("memory", &sb).is_none());
    assert!(healthy(&node));
}

#[test]
fn ten_processes_of_300_mb_cannot_pass_a_1_gib_sandbox() {
    let node = Node::start(&[]);
    node.push_data("mem", b"x", json!([]));
    let sb = sandbox_with(&node, "mem", json!({"total_memory_bytes": 1u64 << 30}));
    let mem = cgroup_dir("memory", &sb).expect("the sandbox's memory cgroup");
    assert_eq!(read_u64(&mem, "memory.limit_in_bytes"), 1 << 30);
    // Each one is well under the per-process limit (4 GiB), and writes every page it holds.
    let hog = "import time; b = b'x' * (300 << 20); time.sleep(4); print('kept', flush=True)";
    let script =
        format!("for i in 1 2 3 4 5 6 7 8 9 10; do python3 -c \"{hog}\" & done; wait; echo done");
    let r = exec_body(
        &node,
        &sb,
        json!({"cmd": ["/bin/sh", "-c", script], "timeout_ms": 120_000}),
    );
    assert!(r.stdout.ends_with("done\n"), "{r:?}");
    let kept = r.stdout.matches("kept").count();
    assert!(kept <= 3, "{kept} processes of 300 MB fit in 1 GiB: {r:?}");
    let peak = read_u64(&mem, "memory.max_usage_in_bytes");
    assert!(peak <= 1 << 30, "the sandbox used {peak} bytes");
    assert!(
        keyed(&mem, "memory.oom_control", "oom_kill ").unwrap_or(0) >= 1,
        "nothing was OOM-killed: {r:?}"
    );
    // One process alone past the cap: the exec says which limit ended it.
    let r = exec_body(
        &node,
        &sb,
        json!({"cmd": ["python3", "-c", "b = b'x' * (1200 << 20)"], "timeout_ms": 120_000}),
    );
    assert_eq!(r.signal.as_deref(), Some("SIGKILL"), "{r:?}");
    let hit = r.limit.expect("the limit named");
    assert_eq!((hit.limit, hit.value), (Limit::TotalMemoryBytes, 1 << 30));
    assert!(
        hit.message.contains("total_memory_bytes"),
        "{}",
        hit.message
    );
    assert!(healthy(&node));
    node.delete(&sb);
    assert!(!mem.exists());
}

#[test]
fn delete_kills_a_daemon_that_left_its_session() {
    let node = Node::start(&[]);
    node.push_data("daemon", b"x", json!([]));
    let sb = sandbox_with(&node, "daemon", json!({}));
    let pids = cgroup_dir("pids", &sb).expect("the sandbox's pids cgroup");
    let daemonise = "setsid sh -c 'sleep 600' </dev/null >/dev/null 2>&1 & exec sleep 600";
    std::thread::scope(|s| {
        let run = s.spawn(|| {
            let path = format!("/v1/sandboxes/{sb}/exec");
            node.call(
                "POST",
                &path,
                json!({"cmd": ["/bin/sh", "-c", daemonise], "timeout_ms": 200_000}),
            )
        });
        // Both sleeps run, one of them in a session of its own.
        let sleepers = node.until("two sleeps in the sandbox", || {
            let s: Vec<u32> = procs(&pids)
                .into_iter()
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "sleep")
                })
                .collect();
            (s.len() == 2).then_some(s)
        });
        let all = procs(&pids);
        node.delete(&sb);
        for p in &all {
            assert!(!alive(*p), "pid {p} of the sandbox survived DELETE");
        }
        assert!(sleepers.iter().all(|p| !alive(*p)));
        assert!(
            !pids.exists(),
            "the cgroup {} is still there",
            pids.display()
        );
        // The exec that was running answers (killed), rather than hanging.
        let (code, r) = run.join().expect("exec thread");
        assert!(code == 200 || code == 404, "{code} {r}");
    });
}

#[test]
fn warm_commands_run_in_a_cgroup_of_their_own_that_goes_away() {
    let node = Node::start(&[]);
    let hex = node.push_data("warmcg", b"x", gated("warmcg"));
    let (_, info) = node.create(json!({"runtime": "warmcg:v1", "user_id": "u"}));
    let name = format!("warm-{}", &hex[..16]);
    let dir = node.until("the warm job's cgroup", || {
        cgroup_dir("pids", &name).filter(|d| !procs(d).is_empty())
    });
    assert_eq!(read_u64(&dir, "pids.max"), 512, "the server's cap");
    node.open_gate(&hex);
    let done = node.settled(&info.sandbox_id);
    assert_eq!(done.state.status, Status::Ready);
    assert!(!dir.exists(), "the warm job's cgroup outlived it");
}
