//! Snapshots: fork ×3 with copy-on-write isolation, ownership, pause/resume across a restart and on a second origin sharing S3 and Redis, hostile workspaces, incremental snapshots, small edits to big files.

use prewarm_tests::services::{Moto, Redis};
use serde_json::{json, Value};

use crate::support::Node;

/// `sh -c SCRIPT` in sandbox `id`, asserting it exits 0; its stdout.
fn sh(node: &Node, id: &str, script: &str) -> String {
    let out = node.exec(id, &["/bin/sh", "-c", script]);
    assert_eq!(out.exit_code, Some(0), "{script}: {out:?}");
    out.stdout
}

fn snapshot(node: &Node, id: &str) -> Value {
    let (code, v) = node.call("POST", &format!("/v1/sandboxes/{id}/snapshot"), json!({}));
    assert_eq!(code, 201, "{v}");
    v
}

fn id_of(v: &Value) -> String {
    v["sandbox_id"].as_str().expect("sandbox_id").to_string()
}

#[test]
fn fork_three_ways_each_clone_sees_only_its_own_writes() {
    let node = Node::start(&[]);
    node.push_data("snaprt", b"runtime data\n", json!([]));
    let parent = node.ready("snaprt").sandbox_id;
    sh(&node, &parent, "echo parent > note && mkdir -p d && head -c 300000 /dev/urandom > d/blob && ln -s note link");
    let (code, fork) = node.call(
        "POST",
        &format!("/v1/sandboxes/{parent}/fork"),
        json!({"count": 3}),
    );
    assert_eq!(code, 201, "{fork}");
    assert_eq!(fork["clone"], "overlay", "{fork}");
    let kids: Vec<String> = fork["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(kids.len(), 3);
    let blob = sh(&node, &parent, "sha256sum d/blob");
    for (i, k) in kids.iter().enumerate() {
        node.settled(k);
        assert_eq!(sh(&node, k, "cat note"), "parent\n");
        assert_eq!(sh(&node, k, "readlink link"), "note\n");
        // In place (the file the snapshot holds), and a new file.
        sh(
            &node,
            k,
            &format!("echo fork{i} > note && echo fork{i} >> d/blob && echo {i} > mine"),
        );
    }
    for (i, k) in kids.iter().enumerate() {
        assert_eq!(sh(&node, k, "cat note"), format!("fork{i}\n"));
        assert_eq!(sh(&node, k, "tail -c 6 d/blob"), format!("fork{i}\n"));
        assert_eq!(sh(&node, k, "cat mine"), format!("{i}\n"));
    }
    assert_eq!(sh(&node, &parent, "cat note"), "parent\n");
    assert_eq!(sh(&node, &parent, "sha256sum d/blob"), blob);
    assert_eq!(
        sh(&node, &parent, "ls mine 2>/dev/null || echo none"),
        "none\n"
    );
    // A fresh clone of the same snapshot still sees the snapshot, not any fork's writes.
    let snap = fork["snapshot"].as_str().unwrap();
    let (code, again) = node.call(
        "POST",
        "/v1/sandboxes",
        json!({"snapshot": snap, "user_id": "u"}),
    );
    assert!(code == 201 || code == 202, "{again}");
    let again = id_of(&again);
    node.settled(&again);
    assert_eq!(sh(&node, &again, "cat note"), "parent\n");
    assert_eq!(sh(&node, &again, "sha256sum d/blob"), blob);
    // Deleting the clones unmounts them: nothing of this node stays mounted after.
    for k in kids.iter().chain([&again]) {
        node.delete(k);
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let sandboxes = node.node_dir().join("sandboxes");
    assert!(
        !mounts.contains(sandboxes.to_str().unwrap()),
        "a clone is still mounted"
    );
}

#[test]
fn another_users_snapshot_is_absent_until_shared() {
    let node = Node::start(&[]);
    node.push_data("ownrt", b"x\n", json!([]));
    let sb = node.ready("ownrt").sandbox_id; // user "u"
    sh(&node, &sb, "echo secret > s");
    let snap = snapshot(&node, &sb)["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _) = node.call(
        "GET",
        &format!("/v1/snapshots/{snap}?user_id=u"),
        Value::Null,
    );
    assert_eq!(code, 200);
    for (method, path, body) in [
        (
            "GET",
            format!("/v1/snapshots/{snap}?user_id=mallory"),
            Value::Null,
        ),
        (
            "POST",
            "/v1/sandboxes".to_string(),
            json!({"snapshot": snap, "user_id": "mallory"}),
        ),
        (
            "POST",
            format!("/v1/sandboxes/{sb}/fork"),
            json!({"count": 1, "user_id": "mallory"}),
        ),
        (
            "DELETE",
            format!("/v1/snapshots/{snap}?user_id=mallory"),
            Value::Null,
        ),
        (
            "POST",
            format!("/v1/snapshots/{snap}/share"),
            json!({"owner": "mallory", "user_id": "mallory"}),
        ),
    ] {
        let (code, v) = node.call(method, &path, body);
        assert_eq!(code, 404, "{method} {path}: {v}");
    }
    let (_, list) = node.call("GET", "/v1/snapshots?user_id=mallory", Value::Null);
    assert_eq!(list["snapshots"], json!([]));
    let (code, _) = node.call(
        "POST",
        &format!("/v1/snapshots/{snap}/share"),
        json!({"owner": "u", "user_id": "bob"}),
    );
    assert_eq!(code, 200);
    let (code, v) = node.call(
        "POST",
        "/v1/sandboxes",
        json!({"snapshot": snap, "user_id": "bob"}),
    );
    assert!(code == 201 || code == 202, "{v}");
    assert_eq!(sh(&node, &id_of(&v), "cat s"), "secret\n");
    let (code, _) = node.call(
        "POST",
        "/v1/sandboxes",
        json!({"snapshot": snap, "user_id": "mallory"}),
    );
    assert_eq!(code, 404, "shared with bob only");
}

#[test]
fn pause_and_resume_twice_across_a_restart_keep_every_change() {
    let node = Node::start(&[]);
    node.push_data("pausert", b"x\n", json!([]));
    let id = node.ready("pausert").sandbox_id;
    sh(&node, &id, "echo one > log");
    let (code, p) = node.call("POST", &format!("/v1/sandboxes/{id}/pause"), Value::Null);
    assert_eq!(code, 200, "{p}");
    let (code, st) = node.call("GET", &format!("/v1/sandboxes/{id}"), Value::Null);
    assert_eq!((code, st["status"].as_str()), (200, Some("paused")), "{st}");
    let (code, r) = node.call("POST", &format!("/v1/sandboxes/{id}/resume"), Value::Null);
    assert!(code == 201 || code == 202, "{r}");
    assert_eq!(id_of(&r), id, "same id");
    node.settled(&id);
    sh(&node, &id, "echo two >> log");
    let (code, _) = node.call("POST", &format!("/v1/sandboxes/{id}/pause"), Value::Null);
    assert_eq!(code, 200);
    let node = node.restart(&[], || {});
    let (code, r) = node.call("POST", &format!("/v1/sandboxes/{id}/resume"), Value::Null);
    assert!(code == 201 || code == 202, "{r}");
    node.settled(&id);
    assert_eq!(sh(&node, &id, "cat log"), "one\ntwo\n");
    let (code, _) = node.call("POST", &format!("/v1/sandboxes/{id}/resume"), Value::Null);
    assert_eq!(code, 409, "running, not paused");
}

/// `--config` for an origin on moto S3 (durable) and Redis (hot), as the tiers tests write it.
fn shared_tiers(dir: &std::path::Path, moto: &Moto, redis: &Redis) -> std::path::PathBuf {
    let toml = format!(
        "[s3]\nendpoint = \"{}\"\nbucket = \"snapshots\"\nprefix = \"e2e/\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n[redis]\nurl = \"{}\"\n",
        moto.endpoint(),
        redis.url()
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("prewarm.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn a_sandbox_paused_on_one_origin_resumes_on_another_sharing_s3_and_redis() {
    let (moto, redis) = (Moto::start(), Redis::start());
    moto.create_bucket("snapshots");
    let cfg = tempfile::tempdir().unwrap();
    let a_cfg = shared_tiers(&cfg.path().join("a"), &moto, &redis);
    let b_cfg = shared_tiers(&cfg.path().join("b"), &moto, &redis);
    let a = Node::start(&["--config", a_cfg.to_str().unwrap()]);
    a.push_data("movert", b"x\n", json!([]));
    let id = a.ready("movert").sandbox_id;
    sh(
        &a,
        &id,
        "echo from-a > f && head -c 200000 /dev/urandom > r && sha256sum r > r.sum",
    );
    let (code, _) = a.call("POST", &format!("/v1/sandboxes/{id}/pause"), Value::Null);
    assert_eq!(code, 200);
    let b = Node::start(&["--config", b_cfg.to_str().unwrap()]);
    assert!(!b.node_dir().join("snapshots-v1").join("x").exists());
    let (code, r) = b.call("POST", &format!("/v1/sandboxes/{id}/resume"), Value::Null);
    assert!(code == 201 || code == 202, "{r}");
    b.settled(&id);
    assert_eq!(sh(&b, &id, "cat f"), "from-a\n");
    sh(&b, &id, "sha256sum -c r.sum");
}

#[test]
fn a_hostile_workspace_is_snapshotted_and_restored_without_escaping() {
    let node = Node::start(&[]);
    node.push_data("hostrt", b"x\n", json!([]));
    let id = node.ready("hostrt").sandbox_id;
    sh(&node, &id, "ln -s /etc etc-link && ln -s ../../../../../../tmp up && mkfifo pipe && mkdir d && echo ok > d/f");
    // A file that vanishes mid-snapshot: removed from the host while the snapshot runs (the
    // sandbox is frozen, so only the host can).
    let ws = node
        .node_dir()
        .join("sandboxes")
        .join(&id)
        .join("workspace");
    for i in 0..200 {
        std::fs::write(ws.join(format!("v{i}")), b"soon gone").unwrap();
    }
    let remover = {
        let ws = ws.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                let _ = std::fs::remove_file(ws.join(format!("v{i}")));
            }
        })
    };
    let snap = snapshot(&node, &id);
    remover.join().unwrap();
    let skipped = snap["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["path"] == "pipe" && s["reason"] == "fifo"),
        "{snap}"
    );
    let digest = snap["snapshot"].as_str().unwrap();
    let (code, v) = node.call(
        "POST",
        "/v1/sandboxes",
        json!({"snapshot": digest, "user_id": "u"}),
    );
    assert!(code == 201 || code == 202, "{v}");
    let clone = id_of(&v);
    assert_eq!(sh(&node, &clone, "readlink etc-link"), "/etc\n");
    assert_eq!(sh(&node, &clone, "cat d/f"), "ok\n");
    assert_eq!(
        sh(&node, &clone, "ls pipe 2>/dev/null || echo absent"),
        "absent\n"
    );
}

#[test]
fn a_snapshot_after_changing_one_file_of_ten_thousand_stores_only_that_file() {
    let node = Node::start(&[]);
    node.push_data("manyrt", b"x\n", json!([]));
    let id = node.ready("manyrt").sandbox_id;
    sh(
        &node,
        &id,
        "mkdir t && cd t && i=0; while [ $i -lt 10000 ]; do echo file $i > f$i; i=$((i+1)); done",
    );
    let first = snapshot(&node, &id);
    assert!(first["files"].as_u64().unwrap() >= 10000, "{first}");
    sh(&node, &id, "echo changed-content-of-one-file > t/f5000");
    let second = snapshot(&node, &id);
    assert_eq!(second["parent"], first["snapshot"]);
    assert_eq!(second["files_read"], 1, "{second}");
    assert_eq!(second["new_blocks"], 1, "{second}");
    assert_eq!(second["bytes_new"], 28, "{second}");
}

/// The issue asks for a 100 MB file; 24 MB keeps CI lean (the bound does not depend on the
/// file's size: only the chunks around the edit change, see `pack/workspace.rs`'s test).
#[test]
fn a_64_kib_change_in_the_middle_of_a_big_file_stores_at_most_1_mib() {
    let node = Node::start(&[]);
    node.push_data("bigrt", b"x\n", json!([]));
    let id = node.ready("bigrt").sandbox_id;
    sh(&node, &id, "head -c 24000000 /dev/urandom > big");
    let first = snapshot(&node, &id);
    assert!(
        first["bytes_new"].as_u64().unwrap() >= 24_000_000,
        "{first}"
    );
    sh(
        &node,
        &id,
        "head -c 65536 /dev/urandom | dd of=big bs=65536 seek=183 conv=notrunc 2>/dev/null",
    );
    let second = snapshot(&node, &id);
    let new = second["bytes_new"].as_u64().unwrap();
    assert!(new > 0 && new <= 1 << 20, "{second}");
}
