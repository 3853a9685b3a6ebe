//! The interpreter pool's part of `GET /metrics`: ready sandboxes, idle resident memory, the budget, hits and misses.

use prewarm_node::sandbox::SandboxService;
use prewarm_store::prometheus_metric;

/// Adds `interpreter_pool` to the JSON body of `/metrics` (nothing when sandboxes are off).
pub fn extend_json(svc: Option<&SandboxService>, body: &mut serde_json::Value) {
    if let Some(svc) = svc {
        body["interpreter_pool"] = serde_json::to_value(svc.pool_stats()).unwrap_or_default();
    }
}

/// Adds the `pool_*` series to the Prometheus text of `/metrics`.
pub fn extend_text(svc: Option<&SandboxService>, text: &mut String) {
    let Some(svc) = svc else { return };
    let s = svc.pool_stats();
    for (name, kind, v) in [
        ("pool_ready", "gauge", s.ready),
        ("pool_idle_rss_bytes", "gauge", s.idle_rss_bytes),
        ("pool_memory_budget_bytes", "gauge", s.memory_budget_bytes),
        ("pool_size", "gauge", s.size as u64),
        ("pool_taken_total", "counter", s.taken_total),
        ("pool_misses_total", "counter", s.misses_total),
        ("pool_started_total", "counter", s.started_total),
        (
            "pool_start_failures_total",
            "counter",
            s.start_failures_total,
        ),
        ("pool_over_budget_total", "counter", s.over_budget_total),
    ] {
        prometheus_metric(text, name, kind, v);
    }
}
