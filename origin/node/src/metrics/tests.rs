use std::time::Instant;

use prewarm_shared::sandbox::{Status, Step, WarmState};
use prewarm_shared::RuntimeRef;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::{NodeMetrics, Outcome, OTHER_LABEL};

fn rt(s: &str) -> RuntimeRef {
    s.parse().unwrap()
}

fn render(m: &NodeMetrics) -> String {
    let mut r = Registry::with_prefix("prewarm");
    m.register(&mut r);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
    out
}

#[test]
fn a_thousand_runtimes_make_a_bounded_set_of_series() {
    let m = NodeMetrics::new(10);
    for n in 0..1000 {
        let r = rt(&format!("rt{n}:v1"));
        m.created(&r, Outcome::Hot, Instant::now(), None);
        m.exec_done(&r, std::time::Duration::from_millis(1));
    }
    let text = render(&m);
    let creates: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("prewarm_sandbox_creates_total{"))
        .collect();
    assert_eq!(creates.len(), 11, "{creates:?}");
    assert!(text.contains(&format!(
        "prewarm_sandbox_creates_total{{runtime=\"{OTHER_LABEL}\",outcome=\"hot\"}} 990"
    )));
    assert!(text.contains("prewarm_sandbox_creates_total{runtime=\"rt0\",outcome=\"hot\"} 1"));
    assert_eq!(m.starts().len(), 11);
    // A digest is never a label.
    let d = prewarm_shared::Digest::of(b"x");
    m.created(&RuntimeRef::Digest(d), Outcome::Hot, Instant::now(), None);
    assert!(!render(&m).contains(&d.hex()));
}

#[test]
fn a_failed_create_does_not_take_a_label() {
    let m = NodeMetrics::new(1);
    m.created(&rt("nosuch:v1"), Outcome::Failed, Instant::now(), None);
    m.created(&rt("real:v1"), Outcome::Hot, Instant::now(), None);
    let text = render(&m);
    assert!(
        text.contains("runtime=\"other\",outcome=\"failed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("runtime=\"real\",outcome=\"hot\"} 1"),
        "{text}"
    );
}

fn state(step: Step, status: Status) -> WarmState {
    WarmState {
        status,
        progress: 0.5,
        step,
        estimated_ms: None,
        queue_position: None,
        error: None,
    }
}

#[tokio::test]
async fn steps_and_a_cold_time_to_ready_are_recorded() {
    let m = NodeMetrics::new(10);
    let (tx, rx) = watch::channel(state(Step::Queued, Status::Warming));
    m.created(
        &rt("py:v1"),
        Outcome::Cold,
        Instant::now(),
        Some(rx.clone()),
    );
    let warm = async {
        for s in [
            Step::Manifest,
            Step::Fetch,
            Step::Materialise,
            Step::Warm,
            Step::Seal,
        ] {
            tx.send(state(s, Status::Warming)).unwrap();
            tokio::task::yield_now().await;
        }
        7
    };
    assert_eq!(m.time_steps(rx, warm).await, 7);
    // As `Inner::finish` does, after the pipeline returned.
    tx.send(state(Step::Done, Status::Ready)).unwrap();
    m.inner.watches.close();
    m.inner.watches.wait().await;
    let text = render(&m);
    for s in ["manifest", "fetch", "materialise", "warm", "seal"] {
        assert!(
            text.contains(&format!(
                "prewarm_warm_step_seconds_count{{step=\"{s}\"}} 1"
            )),
            "{s}: {text}"
        );
    }
    assert!(
        text.contains(
            "prewarm_sandbox_time_to_ready_seconds_count{runtime=\"py\",start=\"cold\"} 1"
        ),
        "{text}"
    );
    let points = m.recent_ready();
    assert_eq!(points.len(), 1);
    assert!(!points[0].hot);
}
