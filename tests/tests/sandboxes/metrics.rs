//! `/metrics` moves when what it counts happens (cold, joined, hot and failed creates, warm steps, execs, HTTP routes, a Range read, a corrupt block), and stays bounded with 1,000 runtimes and users.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prewarm_tests::http;
use serde_json::{json, Value};

use crate::support::{compile_step, gated, Node};

/// Every sample of `/metrics` (Prometheus text), by its line's name and labels.
fn scrape(node: &Node) -> BTreeMap<String, f64> {
    text(node)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn text(node: &Node) -> String {
    let r = http()
        .get(format!("{}/metrics", node.origin.url))
        .header("accept", "text/plain")
        .send()
        .expect("metrics");
    assert_eq!(r.status().as_u16(), 200);
    r.text().expect("metrics body")
}

fn at(m: &BTreeMap<String, f64>, k: &str) -> f64 {
    m.get(k).copied().unwrap_or(0.0)
}

/// Asserts series `k` moved by `by` from `before` to `after`.
fn moved(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, k: &str, by: f64) {
    assert_eq!(
        at(after, k) - at(before, k),
        by,
        "{k}: {} → {}",
        at(before, k),
        at(after, k)
    );
}

/// The block files of the local disk tier under `data` (`blocks-v1/ab/cd/<hex>`).
fn block_files(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![data.join("blocks-v1")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("blocks dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 64)
            {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn every_series_moves_when_what_it_counts_happens() {
    // No memory tier: the disk tier serves (and verifies) every read.
    let node = Node::start(&["--memory-max-bytes", "0"]);
    node.push_greeter("metr", gated("metr"));
    let m0 = scrape(&node);

    // Cold create, then a second one joining the same warm (held open by its gate).
    let (code, cold) = node.create(json!({"runtime": "metr:v1", "user_id": "u1"}));
    assert_eq!(code, 202, "{cold:?}");
    let (code, joined) = node.create(json!({"runtime": "metr:v1", "user_id": "u2"}));
    assert_eq!(code, 202, "{joined:?}");
    let m1 = scrape(&node);
    moved(
        &m0,
        &m1,
        r#"prewarm_sandbox_creates_total{runtime="metr",outcome="cold"}"#,
        1.0,
    );
    moved(
        &m0,
        &m1,
        r#"prewarm_sandbox_creates_total{runtime="metr",outcome="joined"}"#,
        1.0,
    );
    moved(&m0, &m1, "prewarm_warm_joins_total", 1.0);
    assert_eq!(
        at(&m1, "prewarm_warms_running") + at(&m1, "prewarm_warm_queue_depth"),
        1.0
    );
    assert_eq!(at(&m1, r#"prewarm_sandboxes_live{runtime="metr"}"#), 2.0);

    let digest = cold.digest.to_string();
    node.open_gate(digest.trim_start_matches("sha256:"));
    node.settled(&cold.sandbox_id);
    node.settled(&joined.sandbox_id);
    // Time to ready is recorded by a watch of each create: wait for both.
    let ready = r#"prewarm_sandbox_time_to_ready_seconds_count{runtime="metr",start="cold"}"#;
    node.wait("both cold times to ready", || {
        at(&scrape(&node), ready) == 2.0
    });
    let m2 = scrape(&node);
    // (`seal` is quick enough to be folded into `warm` when the two changes come together.)
    for step in ["manifest", "warm"] {
        moved(
            &m0,
            &m2,
            &format!(r#"prewarm_warm_step_seconds_count{{step="{step}"}}"#),
            1.0,
        );
    }
    moved(&m1, &m2, r#"prewarm_warms_total{outcome="succeeded"}"#, 1.0);
    assert_eq!(at(&m2, "prewarm_warms_running"), 0.0);
    assert!(at(&m2, r#"prewarm_tier_served_bytes_total{tier="disk"}"#) > 0.0);

    // Hot create, an exec, a failed create.
    let (code, hot) = node.create(json!({"runtime": "metr:v1", "user_id": "u3"}));
    assert_eq!(code, 201, "{hot:?}");
    let out = node.exec(&hot.sandbox_id, &["/bin/true"]);
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    let (code, _) = node.call(
        "POST",
        "/v1/sandboxes",
        json!({"runtime": "nosuch:v1", "user_id": "u4"}),
    );
    assert_eq!(code, 404);
    let (code, _) = node.call("GET", "/v1/sandboxes/sb-0123456789abcdef", Value::Null);
    assert_eq!(code, 404);
    let m3 = scrape(&node);
    moved(
        &m2,
        &m3,
        r#"prewarm_sandbox_creates_total{runtime="metr",outcome="hot"}"#,
        1.0,
    );
    moved(
        &m2,
        &m3,
        r#"prewarm_sandbox_time_to_ready_seconds_count{runtime="metr",start="hot"}"#,
        1.0,
    );
    moved(
        &m2,
        &m3,
        r#"prewarm_sandbox_execs_total{runtime="metr"}"#,
        1.0,
    );
    moved(
        &m2,
        &m3,
        r#"prewarm_sandbox_exec_seconds_count{runtime="metr"}"#,
        1.0,
    );
    // A name that may not exist never takes a label.
    moved(
        &m2,
        &m3,
        r#"prewarm_sandbox_creates_total{runtime="other",outcome="failed"}"#,
        1.0,
    );
    moved(
        &m2,
        &m3,
        r#"prewarm_http_request_seconds_count{method="POST",route="/v1/sandboxes",status="201"}"#,
        1.0,
    );
    moved(
        &m2,
        &m3,
        r#"prewarm_http_request_seconds_count{method="GET",route="/v1/sandboxes/{id}",status="404"}"#,
        1.0,
    );
    assert_eq!(at(&m3, r#"prewarm_sandboxes_live{runtime="metr"}"#), 3.0);
    let body = text(&node);
    assert!(
        !body.contains("sb-0123456789abcdef")
            && !body.contains("nosuch")
            && !body.contains(&digest[7..])
    );

    // A Range read of a block: the disk tier serves the range's bytes.
    let blocks = block_files(node.data.path());
    let hex = blocks[0].file_name().unwrap().to_str().unwrap().to_owned();
    let r = http()
        .get(format!("{}/v1/blocks/sha256:{hex}", node.origin.url))
        .header("range", "bytes=0-9")
        .send()
        .expect("range read");
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().unwrap().len(), 10);
    let m4 = scrape(&node);
    moved(
        &m3,
        &m4,
        r#"prewarm_tier_served_bytes_total{tier="disk"}"#,
        10.0,
    );
    moved(
        &m3,
        &m4,
        r#"prewarm_tier_read_seconds_count{tier="disk",result="hit"}"#,
        1.0,
    );
    moved(
        &m3,
        &m4,
        r#"prewarm_http_request_seconds_count{method="GET",route="/v1/blocks/{digest}",status="206"}"#,
        1.0,
    );

    // A corrupt block in the disk tier: verification catches it, it is never served.
    let mut b = std::fs::read(&blocks[0]).unwrap();
    for x in &mut b {
        *x = !*x;
    }
    std::fs::write(&blocks[0], b).unwrap();
    let r = http()
        .get(format!("{}/v1/blocks/sha256:{hex}", node.origin.url))
        .send()
        .expect("read of a corrupt block");
    assert_eq!(r.status().as_u16(), 404);
    let m5 = scrape(&node);
    moved(
        &m4,
        &m5,
        r#"prewarm_tier_verification_failures_total{tier="disk"}"#,
        1.0,
    );
    moved(
        &m4,
        &m5,
        r#"prewarm_tier_read_seconds_count{tier="disk",result="miss"}"#,
        1.0,
    );
    moved(
        &m4,
        &m5,
        r#"prewarm_tier_served_bytes_total{tier="disk"}"#,
        0.0,
    );
}

#[test]
fn a_thousand_runtimes_and_users_keep_the_series_bounded() {
    let node = Node::start(&[]);
    node.push_greeter("many", compile_step("many"));
    let first = node.ready("many");
    let digest = first.digest.to_string();
    // 1,000 runtime names (tags of the same manifest, so each create is hot), 1,000 users.
    for i in 0..1000 {
        let (code, body) = node.call(
            "PUT",
            &format!("/v1/runtimes/rt{i}/tags/v1"),
            json!({"digest": digest}),
        );
        assert_eq!(code, 200, "{body}");
        let (code, info) =
            node.create(json!({"runtime": format!("rt{i}:v1"), "user_id": format!("user-{i}")}));
        assert_eq!(code, 201, "{info:?}");
    }
    let body = text(&node);
    let series = |prefix: &str| body.lines().filter(|l| l.starts_with(prefix)).count();
    // 50 runtime names of their own (`many` and 49 of the rest), then `other`.
    assert_eq!(series("prewarm_sandbox_creates_total{"), 51, "{body}");
    assert_eq!(series("prewarm_sandboxes_live{"), 51);
    assert_eq!(series("prewarm_sandbox_time_to_ready_seconds_count{"), 51);
    let m = scrape(&node);
    assert_eq!(
        at(
            &m,
            r#"prewarm_sandbox_creates_total{runtime="other",outcome="hot"}"#
        ),
        951.0
    );
    assert!(!body.contains("user-"), "users are never labels");
    assert!(!body.contains("rt999"));
    // The HTTP series name the route template, not 1,000 paths.
    assert_eq!(
        at(
            &m,
            r#"prewarm_http_request_seconds_count{method="PUT",route="/v1/runtimes/{name}/tags/{tag}",status="200"}"# // and the push's
        ),
        1001.0
    );
    assert!(body.len() < 200_000, "{} bytes", body.len());
    // The web view's start table is bounded the same way; its sandbox list is not a metric.
    let (code, ui) = node.call("GET", "/v1/ui/state", Value::Null);
    assert_eq!(code, 200);
    assert_eq!(ui["starts"].as_array().unwrap().len(), 51);
    assert_eq!(ui["sandboxes"].as_array().unwrap().len(), 1001);
}

/// Bytes no chunker can deduplicate within themselves (an xorshift stream).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn block_reuse_and_storage_savings_follow_what_runtimes_share() {
    let node = Node::start(&[]);
    let data = noise(3 << 20, 7);
    node.push_data("solo", &data, json!([]));
    let one = scrape(&node);
    let hello = |name: &str| format!("#!/bin/sh\necho hello from {name}\n").len() as f64;
    assert_eq!(at(&one, "prewarm_store_manifests"), 1.0);
    assert_eq!(
        at(&one, "prewarm_store_logical_bytes"),
        data.len() as f64 + hello("solo")
    );
    assert_eq!(
        at(&one, "prewarm_store_block_reuse_ratio"),
        0.0,
        "one runtime shares nothing"
    );
    assert!(at(&one, "prewarm_store_stored_bytes") >= data.len() as f64);
    // A second runtime with the same 3 MiB and its own small file: the big blocks are shared.
    node.push_data("twin", &data, json!([]));
    let two = scrape(&node);
    assert_eq!(at(&two, "prewarm_store_manifests"), 2.0);
    assert_eq!(
        at(&two, "prewarm_store_logical_bytes"),
        2.0 * data.len() as f64 + hello("solo") + hello("twin")
    );
    let refs = at(&two, "prewarm_store_block_refs");
    let unique = at(&two, "prewarm_store_blocks_unique");
    assert!(unique < refs, "{unique} distinct of {refs} references");
    let reuse = at(&two, "prewarm_store_block_reuse_ratio");
    assert!(
        (reuse - (1.0 - unique / refs)).abs() < 1e-9 && reuse > 0.0,
        "{reuse}"
    );
    let savings = at(&two, "prewarm_store_savings_ratio");
    // About half: the 3 MiB is stored once for two runtimes.
    assert!(savings > 0.45 && savings < 0.55, "savings {savings}");
    let stored = at(&two, "prewarm_store_stored_bytes");
    let logical = at(&two, "prewarm_store_logical_bytes");
    assert!((savings - (1.0 - stored / logical)).abs() < 1e-9);
}

#[test]
fn snapshot_and_clone_times_and_bytes_are_series() {
    let node = Node::start(&[]);
    node.push_data("snapm", b"x", json!([]));
    let sb = node.ready("snapm");
    let before = scrape(&node);
    let w = node.exec(
        &sb.sandbox_id,
        &["/bin/sh", "-c", "head -c 5000 /dev/zero > f"],
    );
    assert_eq!(w.exit_code, Some(0), "{w:?}");
    let (code, snap) = node.call(
        "POST",
        &format!("/v1/sandboxes/{}/snapshot", sb.sandbox_id),
        json!({}),
    );
    assert_eq!(code, 201, "{snap}");
    let (code, fork) = node.call(
        "POST",
        &format!("/v1/sandboxes/{}/fork", sb.sandbox_id),
        json!({"count": 2}),
    );
    assert_eq!(code, 201, "{fork}");
    let after = scrape(&node);
    // The fork snapshots first, then makes two clones.
    moved(&before, &after, "prewarm_snapshot_seconds_count", 2.0);
    moved(&before, &after, "prewarm_snapshot_clone_seconds_count", 2.0);
    let logical = at(&after, "prewarm_snapshot_logical_bytes_total")
        - at(&before, "prewarm_snapshot_logical_bytes_total");
    assert!(
        logical >= 10_000.0,
        "two snapshots of a 5000-byte workspace: {logical}"
    );
    let new = at(&after, "prewarm_snapshot_new_bytes_total")
        - at(&before, "prewarm_snapshot_new_bytes_total");
    assert!(
        new < logical,
        "the second snapshot stored nothing new: {new} of {logical}"
    );
}
