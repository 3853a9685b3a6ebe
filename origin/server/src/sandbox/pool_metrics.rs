//! The interpreter pool's part of the JSON `GET /metrics` (the Prometheus series are read in `metrics/collect.rs`).

use prewarm_node::sandbox::SandboxService;

/// Adds `interpreter_pool` to the JSON body of `/metrics` (nothing when sandboxes are off).
pub fn extend_json(svc: Option<&SandboxService>, body: &mut serde_json::Value) {
    if let Some(svc) = svc {
        body["interpreter_pool"] = serde_json::to_value(svc.pool_stats()).unwrap_or_default();
    }
}
