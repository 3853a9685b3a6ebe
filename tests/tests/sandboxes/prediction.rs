//! Predictive warming on a real `prewarm serve`: hints, `/v1/predictions`, budgets, and the simulator and the server agreeing on a trace.

use prewarm_predict::sim::{decisions, SimOptions};
use prewarm_predict::{Catalog, PolicyKind, RuntimeSpec, Trace};
use serde_json::{json, Value};

use crate::support::Node;

/// Bytes of each test runtime's data file: two fit in [`BUDGET`], three do not.
const SIZE: usize = 100_000;
const BUDGET: &str = "250000";

fn filler(seed: u8) -> Vec<u8> {
    (0..SIZE)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

/// A node running `policy` on the manual clock, with `budget` bytes of warm disk.
fn node(policy: &str, budget: &str) -> Node {
    Node::start(&[
        "--predict-policy",
        policy,
        "--predict-clock",
        "manual",
        "--warm-disk-budget",
        budget,
    ])
}

impl Node {
    fn predictions(&self) -> Value {
        let (code, v) = self.call("GET", "/v1/predictions", Value::Null);
        assert_eq!(code, 200, "{v}");
        v
    }

    fn set_clock(&self, now: u64) {
        let (code, v) = self.call("POST", "/v1/predict/clock", json!({ "now": now }));
        assert_eq!(code, 200, "{v}");
    }

    fn hint(&self, user: &str) -> Value {
        let (code, v) = self.call("POST", &format!("/v1/users/{user}/hint"), Value::Null);
        assert_eq!(code, 200, "{v}");
        v
    }

    /// Waits until no warm is queued or running and the LRU has brought the warm set under
    /// the budget (nothing here is live while it settles).
    fn quiet(&self) {
        self.wait("warms done and the budget kept", || {
            let s = self.stats();
            let p = self.predictions();
            s.queued == 0
                && s.running == 0
                && p["warm_bytes"].as_u64() <= p["budget_bytes"].as_u64()
        });
    }

    /// A create of `runtime` by `user` at the clock's time, waited until ready and seen by
    /// the predictor; returns whether it was hot and the sandbox id (still live).
    fn start_sandbox(&self, user: &str, runtime: &str) -> (bool, String) {
        let seen = self.predictions()["creates_seen"].as_u64().unwrap();
        let (code, info) = self.create(json!({"runtime": runtime, "user_id": user}));
        assert!(code == 201 || code == 202, "{code} {info:?}");
        let done = self.settled(&info.sandbox_id);
        assert_eq!(done.state.status, prewarm_shared::sandbox::Status::Ready);
        self.wait("the predictor to see the create", || {
            self.predictions()["creates_seen"].as_u64().unwrap() > seen
        });
        (code == 201, info.sandbox_id)
    }

    /// A whole short session: create, ready, delete; then wait for every warm it caused.
    fn session(&self, user: &str, runtime: &str) -> bool {
        let (hot, id) = self.start_sandbox(user, runtime);
        self.delete(&id);
        self.quiet();
        hot
    }

    fn metrics_text(&self) -> String {
        let r = prewarm_tests::http()
            .get(format!("{}/metrics", self.origin.url))
            .header("accept", "text/plain")
            .send()
            .expect("metrics");
        assert_eq!(r.status().as_u16(), 200);
        r.text().expect("metrics body")
    }

    fn warm_names<'a>(&self, rts: &'a [(&'a str, String)]) -> Vec<&'a str> {
        let all: Vec<&(&str, String)> = rts.iter().collect();
        self.on_disk(&all)
    }
}

fn push_three(node: &Node) -> Vec<(&'static str, String)> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, node.push_data(n, &filler(i as u8), json!([]))))
        .collect()
}

#[test]
fn a_hint_warms_the_users_usual_runtime_and_predictions_name_the_rule() {
    // One runtime fits: warming another evicts the first.
    let node = node("user-history", "150000");
    let rts = push_three(&node);
    node.set_clock(1000);
    assert!(!node.session("alice", "a:v1"), "a was cold");
    node.set_clock(1100);
    let (_, bob) = node.start_sandbox("bob", "b:v1");
    node.wait("a evicted for b", || node.warm_names(&rts) == ["b"]);
    // While bob's sandbox is live, alice's hint cannot make room: b is never evicted.
    node.set_clock(1000 + 11 * 60);
    let held = node.hint("alice");
    assert_eq!(held["wants"][0]["runtime"], "a:v1", "{held}");
    assert_eq!(held["wants"][0]["state"], "no-room", "{held}");
    assert_eq!(node.warm_names(&rts), ["b"]);
    let r = node.exec(&bob, &["/opt/b/bin/hello"]);
    assert_eq!(r.stdout, "hello from b\n");
    node.delete(&bob);
    // Later (bob's show-up want of b over, alice's hint answered at most every 10 min).
    node.set_clock(1000 + 2 * 3600);
    let hinted = node.hint("alice");
    assert_eq!(hinted["policy"], "user-history");
    let want = &hinted["wants"][0];
    assert_eq!(want["runtime"], "a:v1", "{hinted}");
    assert_eq!(want["rule"], "user-show-up", "{hinted}");
    assert_eq!(want["state"], "queued", "{hinted}");
    assert!(want["score"].as_f64().unwrap() > 0.0, "{hinted}");
    node.quiet();
    assert_eq!(node.warm_names(&rts), ["a"], "b made room for a");
    let p = node.predictions();
    assert_eq!(p["wanted"][0]["runtime"], "a:v1", "{p}");
    assert_eq!(p["wanted"][0]["rule"], "user-show-up", "{p}");
    let warm = p["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] == "warm")
        .cloned();
    assert_eq!(
        warm,
        Some(
            json!({"t": 1000 + 2 * 3600, "runtime": "a:v1", "action": "warm", "rule": "user-show-up"})
        ),
        "{p}"
    );
    // The create alice then makes is hot, and counted as a predicted warm used.
    assert!(node.session("alice", "a:v1"), "the hinted runtime is hot");
    let metrics = node.metrics_text();
    assert!(
        metrics.contains("prewarm_predict_warms_used_total{rule=\"user-show-up\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("prewarm_predict_hot_start_ratio{runtime=\"a\"} 0.5"));
    // A user with no history gets nothing; a bad id is refused.
    assert_eq!(node.hint("nobody")["wants"], json!([]));
    let long = "x".repeat(300);
    let (code, body) = node.call("POST", &format!("/v1/users/{long}/hint"), Value::Null);
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (code, _) = node.call("POST", "/v1/predict/clock", json!({"now": 5}));
    assert_eq!(code, 400, "the clock never goes back");
}

#[test]
fn the_clock_route_exists_only_on_a_manual_clock_and_none_is_the_default() {
    let node = Node::start(&[]);
    let (code, body) = node.call("POST", "/v1/predict/clock", json!({"now": 5}));
    assert_eq!(code, 404, "{body}");
    let p = node.predictions();
    assert_eq!(
        (p["policy"].as_str(), p["clock"].as_str()),
        (Some("none"), Some("system"))
    );
    // `none` answers a hint with nothing.
    assert_eq!(node.hint("u")["wants"], json!([]));
}

/// The trace both run: (seconds, user, runtime). u1 uses a and b; u2 uses c. Gaps over an
/// hour let show-up wants lapse, so LRU evictions and a predicted warm both happen.
const TRACE: &[(u64, &str, &str)] = &[
    (100, "u1", "a:v1"),
    (130, "u1", "b:v1"),
    (5000, "u2", "c:v1"),
    (9000, "u1", "b:v1"),
    (9100, "u1", "a:v1"),
    (13000, "u2", "c:v1"),
    (13050, "u2", "c:v1"),
];

#[test]
fn the_simulator_and_the_server_make_the_same_warm_decisions_on_a_trace() {
    for policy in ["user-history", "keepalive"] {
        let node = node(policy, BUDGET);
        let rts = push_three(&node);
        let mut hot = 0;
        for (t, user, runtime) in TRACE {
            node.set_clock(*t);
            node.quiet();
            hot += u64::from(node.session(user, runtime));
            let p = node.predictions();
            assert!(
                p["warm_bytes"].as_u64() <= p["budget_bytes"].as_u64(),
                "the warm set never exceeds the budget: {p}"
            );
        }
        let server: Vec<(u64, String, String)> = node.predictions()["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["t"].as_u64().unwrap(),
                    d["runtime"].as_str().unwrap().to_owned(),
                    d["action"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        // The same trace through the simulator, with the runtimes' real sizes.
        let mut trace = Trace::default();
        for (t, user, runtime) in TRACE {
            trace.push(*t, user, runtime);
        }
        let mut catalog = Catalog::standard();
        for (name, _) in &rts {
            // What the node counts warm: its files (`push_data`'s script and data).
            let bytes = (SIZE + format!("#!/bin/sh\necho hello from {name}\n").len()) as u64;
            catalog.runtimes.insert(
                format!("{name}:v1"),
                RuntimeSpec {
                    bytes,
                    warm_secs: 0.001,
                    measured: false,
                },
            );
        }
        let opts = SimOptions {
            budget: BUDGET.parse().unwrap(),
            session_secs: 1,
            catalog,
            nodes: 1,
        };
        let kind: PolicyKind = policy.parse().unwrap();
        let mut p = kind.build(prewarm_predict::sim::budget_runtimes(&trace, &opts));
        let (report, sim) = decisions(&trace, p.as_mut(), &opts);
        let sim: Vec<(u64, String, String)> = sim
            .into_iter()
            .map(|d| (d.t, d.runtime, d.action.to_owned()))
            .collect();
        assert_eq!(server, sim, "{policy}: server (left) and simulator (right)");
        assert_eq!(hot, report.hot, "{policy}: hot starts");
        // And what both decided is what the trace was built to provoke.
        let expected: &[(u64, &str, &str)] = match policy {
            // u1's show-up at 9000 wants a back (b is live, c idle and no longer wanted: c
            // makes room); the LRU evicts a at 5000 and b at 13000 on demand.
            "user-history" => &[
                (100, "a:v1", "cold"),
                (130, "b:v1", "cold"),
                (5000, "c:v1", "cold"),
                (9000, "a:v1", "warm"),
                (13000, "c:v1", "cold"),
            ],
            // Each runtime is let go at the first tick 10 minutes after its last start.
            _ => &[
                (100, "a:v1", "cold"),
                (130, "b:v1", "cold"),
                (720, "a:v1", "release"),
                (780, "b:v1", "release"),
                (5000, "c:v1", "cold"),
                (5640, "c:v1", "release"),
                (9000, "b:v1", "cold"),
                (9100, "a:v1", "cold"),
                (9600, "b:v1", "release"),
                (9720, "a:v1", "release"),
                (13000, "c:v1", "cold"),
            ],
        };
        let expected: Vec<(u64, String, String)> = expected
            .iter()
            .map(|(t, r, a)| (*t, (*r).to_owned(), (*a).to_owned()))
            .collect();
        assert_eq!(sim, expected, "{policy}");
    }
}

#[test]
fn usage_is_kept_in_redis_hashed_and_replayed_into_another_origins_policy() {
    use crate::registry::{redis, RedisKeys};
    let nanos = std::time::UNIX_EPOCH.elapsed().expect("clock").as_nanos();
    let unique = format!("wp-{}-{nanos:x}", std::process::id());
    let _cleanup = RedisKeys(vec![
        format!("prewarm:warm:{unique}:*"),
        format!("{unique}:*"),
    ]);
    let conf = tempfile::NamedTempFile::new().expect("config");
    let toml = format!("[redis]\nurl = \"redis://127.0.0.1:6379\"\nnamespace = \"{unique}\"\n");
    std::fs::write(conf.path(), toml).expect("config");
    let args = [
        "--config",
        conf.path().to_str().expect("utf-8"),
        "--node-name",
        &unique,
        "--predict-policy",
        "user-history",
        "--predict-clock",
        "manual",
    ];
    let first = Node::start(&args);
    first.push_data("a", &filler(0), json!([]));
    first.set_clock(1000);
    assert!(!first.session("alice@example.com", "a:v1"));
    first.set_clock(1001); // a tick's end stores what was recorded
    let doc = redis(&[
        "HGET",
        &format!("{unique}:v1:records"),
        &format!("predict-usage/{unique}/0"),
    ]);
    let doc: Value = serde_json::from_str(&doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
    let events = doc["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{doc}");
    assert_eq!(
        (&events[0]["t"], &events[0]["runtime"], &events[0]["hot"]),
        (&json!(1000), &json!("a:v1"), &json!(false))
    );
    assert!(
        !doc.to_string().contains("alice"),
        "the user id is never stored: {doc}"
    );
    drop(first);
    // Another origin (its own data directory) under the same node name reads it back: the
    // policy knows alice's usual runtime before she starts anything there.
    let second = Node::start(&args);
    second.push_data("a", &filler(0), json!([]));
    second.set_clock(1000 + 11 * 60);
    let hinted = second.hint("alice@example.com");
    assert_eq!(hinted["wants"][0]["runtime"], "a:v1", "{hinted}");
    assert_eq!(hinted["wants"][0]["rule"], "user-show-up", "{hinted}");
    assert_eq!(hinted["wants"][0]["state"], "queued", "{hinted}");
    second.quiet();
    assert!(
        second.session("alice@example.com", "a:v1"),
        "hot: warmed by the hint"
    );
}
