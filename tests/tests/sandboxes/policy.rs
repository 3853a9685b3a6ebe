//! The warm node's policies: LRU eviction under the disk budget, idle sandboxes, queue priority.

use prewarm_shared::sandbox::{Status, Step, WarmState};
use serde_json::json;

use crate::support::{gated, Node};

/// `n` bytes unlike any other runtime's, so each runtime has its own size on disk.
fn filler(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

#[test]
fn lru_eviction_keeps_the_recently_used_and_never_a_runtime_in_use() {
    // ~100 kB each: two fit in the budget, three do not.
    let node = Node::start(&["--warm-disk-budget", "250000"]);
    let rts: Vec<(&str, String)> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, node.push_data(n, &filler(i as u8, 100_000), json!([]))))
        .collect();
    let [a, b, c, d] = [&rts[0], &rts[1], &rts[2], &rts[3]];
    let sa = node.ready("a");
    node.warm("b");
    assert_eq!(node.on_disk(&[a, b]), ["a", "b"]);
    // Over budget: a is least recently used but its sandbox holds it, so b goes.
    node.warm("c");
    node.wait("an eviction", || node.stats().evictions == 1);
    assert_eq!(node.on_disk(&[a, b, c]), ["a", "c"]);
    // Evicting gives the disk back: b's bytes leave the node's file cache too, while the
    // files of runtimes still warm stay.
    let cached = |seed: u8| {
        let hex = prewarm_shared::Digest::of(&filler(seed, 100_000)).hex();
        let fan = node.node_dir().join("cache/files-v1").join(&hex[..2]);
        std::fs::read_dir(fan)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(&hex))
            })
            .unwrap_or(false)
    };
    node.wait("b's bytes to leave the node cache", || !cached(1));
    assert!(
        cached(0) && cached(2),
        "warm runtimes keep their cached files"
    );
    let r = node.exec(
        &sa.sandbox_id,
        &["/bin/sh", "-c", "/opt/a/bin/hello; wc -c < /opt/a/lib/data"],
    );
    assert_eq!(r.stdout, "hello from a\n100000\n", "{r:?}");
    // a was warmed first but used last (that exec): c is now least recently used.
    node.delete(&sa.sandbox_id);
    node.warm("d");
    node.wait("a second eviction", || node.stats().evictions == 2);
    assert_eq!(node.on_disk(&[a, b, c, d]), ["a", "d"]);
    assert_eq!(node.stats().warm_runtimes, 2);
    // An evicted runtime is simply cold again; a kept one is hot.
    let (code, _) = node.create(json!({"runtime": "a:v1", "user_id": "u"}));
    assert_eq!(code, 201);
    let (code, _) = node.create(json!({"runtime": "c:v1", "user_id": "u"}));
    assert_eq!(code, 202);
}

#[test]
fn idle_sandboxes_are_removed_but_not_while_warming_or_running_a_command() {
    let node = Node::start(&[
        "--sandbox-idle-timeout-secs",
        "2",
        "--warm-disk-budget",
        "1",
    ]);
    node.push_data("idle", b"data\n", json!([]));
    node.push_data("slowwarm", b"data\n", gated("slowwarm"));
    let (_, warming) = node.create(json!({"runtime": "slowwarm:v1", "user_id": "u"}));
    let sb = node.ready("idle");
    let ws = node.node_dir().join("sandboxes").join(&sb.sandbox_id);
    // A command longer than the idle timeout: the sandbox is in use the whole time.
    let r = node.exec(
        &sb.sandbox_id,
        &["/bin/sh", "-c", "sleep 5; echo done > out && cat out"],
    );
    assert_eq!(
        (r.exit_code, r.stdout.as_str()),
        (Some(0), "done\n"),
        "{r:?}"
    );
    assert!(node.get(&sb.sandbox_id).is_some(), "removed while running");
    // Meanwhile the other sandbox waited for its warm longer than the timeout: still there.
    let w = node
        .get(&warming.sandbox_id)
        .expect("removed while warming");
    assert_eq!(w.state.status, Status::Warming);
    node.open_gate(&warming.digest.hex());
    // Unused now: both go, with their workspaces, and their runtimes become evictable.
    node.wait("idle removal", || {
        node.get(&sb.sandbox_id).is_none() && node.get(&warming.sandbox_id).is_none()
    });
    assert!(!ws.exists(), "workspace left behind");
    assert_eq!(node.stats().sandboxes, 0);
    node.wait("eviction of released runtimes", || {
        node.stats().warm_runtimes == 0
    });
}

#[test]
fn high_priority_overtakes_queued_warms() {
    let node = Node::start(&["--sandbox-concurrency", "1"]);
    for n in ["blocker", "low", "normal", "high"] {
        node.push_data(n, n.as_bytes(), gated(n));
    }
    let (_, blocker) = node.create(json!({"runtime": "blocker:v1", "user_id": "u"}));
    node.wait("the blocker running", || {
        node.get(&blocker.sandbox_id)
            .is_some_and(|i| i.state.step == Step::Warm)
    });
    let mut ids = Vec::new();
    for p in ["low", "normal", "high"] {
        let (code, info) =
            node.create(json!({"runtime": format!("{p}:v1"), "user_id": "u", "priority": p}));
        assert_eq!(code, 202);
        ids.push((p, info.sandbox_id, info.digest.hex()));
    }
    // Queue positions while queued, in the order the sandboxes were created.
    let positions = |ids: &[(&str, String, String)]| -> Vec<Option<u64>> {
        let queued = |s: WarmState| s.queue_position.filter(|_| s.step == Step::Queued);
        ids.iter()
            .map(|(_, id, _)| queued(node.get(id).expect("sandbox").state))
            .collect()
    };
    assert_eq!(
        positions(&ids),
        [Some(2), Some(1), Some(0)],
        "low, normal, high"
    );
    // One worker: each release lets exactly the best queued warm start.
    node.open_gate(&blocker.digest.hex());
    for expected in ["high", "normal", "low"] {
        let (started, _, digest) = node.until("a queued warm to start", || {
            ids.iter()
                .find(|(_, id, _)| node.get(id).is_some_and(|i| i.state.step != Step::Queued))
                .cloned()
        });
        assert_eq!(started, expected, "started next");
        ids.retain(|(p, ..)| *p != expected);
        let left = positions(&ids);
        let in_order = (0..left.len() as u64).rev().map(Some).collect::<Vec<_>>();
        assert_eq!(left, in_order, "the rest keep their order");
        node.open_gate(&digest);
    }
    // Let the last warm finish, so no warm command is left running when the node stops.
    node.wait("every warm to finish", || node.stats().warms_succeeded == 4);
}
