//! Resource limits: a command past its memory, file-size or CPU limit fails and says why, the origin stays up, and a request can only lower the server's limits.

use std::path::Path;

use prewarm_shared::limits::Limit;
use prewarm_shared::sandbox::ExecResult;
use prewarm_tests::http;
use serde_json::{json, Value};

use crate::support::Node;

/// `POST …/exec` with a whole request body; the result of a 200.
fn exec_with(node: &Node, id: &str, body: Value) -> ExecResult {
    let (code, r) = node.call("POST", &format!("/v1/sandboxes/{id}/exec"), body.clone());
    assert_eq!(code, 200, "exec {body}: {r}");
    serde_json::from_value(r).expect("exec result")
}

/// The line of `/proc/self/limits` for `what` (e.g. "Max cpu time"), as `[soft, hard]`.
fn proc_limit(limits: &str, what: &str) -> [String; 2] {
    let line = limits
        .lines()
        .find(|l| l.starts_with(what))
        .unwrap_or_else(|| panic!("no {what:?} in {limits}"));
    let mut cols = line[what.len()..].split_whitespace();
    [0, 1].map(|_| cols.next().expect("column").to_string())
}

#[test]
fn memory_past_the_limit_is_a_memory_error_and_the_origin_stays_up() {
    let node = Node::start(&[]);
    node.push_data("mem", b"x", json!([]));
    let sb = node.ready("mem").sandbox_id;
    assert!(
        Path::new("/usr/bin/python3").exists(),
        "these tests run the host's /usr/bin/python3 inside the sandbox"
    );
    // 1 GiB under a 256 MiB limit.
    let r = exec_with(
        &node,
        &sb,
        json!({
            "cmd": ["python3", "-c", "b = bytearray(2**30)"],
            "limits": {"memory_bytes": 256 << 20},
        }),
    );
    assert_ne!(r.exit_code, Some(0), "{r:?}");
    assert!(r.stderr.contains("MemoryError"), "{r:?}");
    // The server's default applies without asking: 5 GiB is past 4 GiB.
    let r = node.exec(&sb, &["python3", "-c", "b = bytearray(5 * 2**30)"]);
    assert!(r.stderr.contains("MemoryError"), "{r:?}");
    // The origin is fine, and so is the sandbox.
    let health = http()
        .get(format!("{}/healthz", node.origin.url))
        .send()
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let r = node.exec(&sb, &["python3", "-c", "print(sum(range(10)))"]);
    assert_eq!((r.exit_code, r.stdout.as_str()), (Some(0), "45\n"), "{r:?}");
    // RLIMIT_DATA, not RLIMIT_AS: V8 reserves far more address space than it uses, and still
    // starts under the default limit. Only where the host has node in /usr.
    if Path::new("/usr/bin/node").exists() {
        let r = node.exec(&sb, &["node", "-e", "console.log(1)"]);
        assert_eq!((r.exit_code, r.stdout.as_str()), (Some(0), "1\n"), "{r:?}");
    }
}

#[test]
fn file_size_and_cpu_limits_end_the_command_and_say_which() {
    let node = Node::start(&[]);
    node.push_data("lim", b"x", json!([]));
    let sb = node.ready("lim").sandbox_id;

    // 4 MiB written under a 1 MiB file limit: dd dies of SIGXFSZ, the file stops at 1 MiB.
    let r = exec_with(
        &node,
        &sb,
        json!({
            "cmd": ["dd", "if=/dev/zero", "of=big", "bs=64k", "count=64"],
            "limits": {"file_bytes": 1 << 20},
        }),
    );
    assert_eq!(r.signal.as_deref(), Some("SIGXFSZ"), "{r:?}");
    let hit = r.limit.expect("the limit named");
    assert_eq!((hit.limit, hit.value), (Limit::FileBytes, 1 << 20));
    assert!(hit.message.contains("file_bytes limit"), "{}", hit.message);
    let size = node.exec(&sb, &["/bin/sh", "-c", "wc -c < big"]);
    assert_eq!(size.stdout.trim(), "1048576", "{size:?}");
    // Python ignores SIGXFSZ: the write fails with EFBIG instead.
    let r = exec_with(
        &node,
        &sb,
        json!({
            "cmd": ["python3", "-c", "open('big2', 'wb').write(b'x' * 2**21)"],
            "limits": {"file_bytes": 1 << 20},
        }),
    );
    assert_ne!(r.exit_code, Some(0), "{r:?}");
    assert!(r.stderr.contains("File too large"), "{r:?}");

    // A spinning loop under a 1 s CPU limit, with a timeout far away: the limit ends it.
    let r = exec_with(
        &node,
        &sb,
        json!({
            "cmd": ["/bin/sh", "-c", "while :; do :; done"],
            "limits": {"cpu_secs": 1},
            "timeout_ms": 120_000,
        }),
    );
    assert!(!r.timed_out, "{r:?}");
    assert_eq!(r.signal.as_deref(), Some("SIGXCPU"), "{r:?}");
    let hit = r.limit.expect("the limit named");
    assert_eq!((hit.limit, hit.value), (Limit::CpuSecs, 1));
    assert_eq!(
        hit.message,
        "killed by SIGXCPU: cpu_secs limit (1 s) reached"
    );
    // An ordinary command afterwards has nothing to report.
    let r = node.exec(&sb, &["true"]);
    assert_eq!((r.exit_code, r.signal, r.limit), (Some(0), None, None));
}

#[test]
fn requests_can_only_lower_the_servers_limits_and_warm_commands_run_under_them() {
    let node = Node::start(&["--sandbox-cpu-secs", "30", "--sandbox-open-files", "256"]);
    // The warm command records the limits it ran under into the runtime.
    node.push_data(
        "caps",
        b"x",
        json!([[
            "/bin/sh",
            "-c",
            "cat /proc/self/limits > /opt/caps/lib/warm-limits"
        ]]),
    );
    let sb = node.ready("caps").sandbox_id;
    let warm = node.exec(&sb, &["cat", "/opt/caps/lib/warm-limits"]);
    assert_eq!(proc_limit(&warm.stdout, "Max cpu time"), ["30", "32"]);
    assert_eq!(proc_limit(&warm.stdout, "Max open files"), ["256", "256"]);
    assert_eq!(proc_limit(&warm.stdout, "Max core file size"), ["0", "0"]);
    // An exec gets the server's limits, or lower ones it asks for.
    let own = node.exec(&sb, &["cat", "/proc/self/limits"]);
    assert_eq!(proc_limit(&own.stdout, "Max cpu time"), ["30", "32"]);
    assert_eq!(
        proc_limit(&own.stdout, "Max data size"),
        ["4294967296", "4294967296"]
    );
    let lowered = exec_with(
        &node,
        &sb,
        json!({"cmd": ["cat", "/proc/self/limits"], "limits": {"open_files": 64}}),
    );
    assert_eq!(proc_limit(&lowered.stdout, "Max open files"), ["64", "64"]);

    // More than the server allows: 400 naming the field and the maximum.
    let refused = |path: &str, body: Value, field: &str, max: &str| {
        let (code, r) = node.call("POST", path, body.clone());
        assert_eq!(code, 400, "{body}: {r}");
        let msg = r["error"]["message"].as_str().expect("message");
        assert!(msg.contains(field) && msg.contains(max), "{body}: {msg}");
    };
    let create = "/v1/sandboxes";
    let exec = format!("/v1/sandboxes/{sb}/exec");
    refused(
        create,
        json!({"runtime": "caps:v1", "user_id": "u", "limits": {"cpu_secs": 60}}),
        "limits.cpu_secs",
        "30",
    );
    refused(
        &exec,
        json!({"cmd": ["true"], "limits": {"open_files": 4096}}),
        "limits.open_files",
        "256",
    );
    // Nonsense is refused whatever the server allows, naming the field; so are unknown keys.
    refused(
        &exec,
        json!({"cmd": ["true"], "limits": {"memory_bytes": 0}}),
        "limits.memory_bytes",
        "",
    );
    refused(
        &exec,
        json!({"cmd": ["true"], "limits": {"pids": 10}}),
        "pids",
        "",
    );
    // A sandbox created with lower limits is the ceiling of its execs.
    let (code, small) = node.create(json!({
        "runtime": "caps:v1", "user_id": "u", "limits": {"memory_bytes": 256 << 20},
    }));
    assert_eq!(code, 201);
    let small_exec = format!("/v1/sandboxes/{}/exec", small.sandbox_id);
    refused(
        &small_exec,
        json!({"cmd": ["true"], "limits": {"memory_bytes": 512 << 20}}),
        "limits.memory_bytes",
        "268435456",
    );
    let r = node.exec(&small.sandbox_id, &["cat", "/proc/self/limits"]);
    assert_eq!(
        proc_limit(&r.stdout, "Max data size"),
        ["268435456", "268435456"]
    );
}
