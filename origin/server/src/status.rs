//! `GET /readyz` (each tier's health; 503 while a required tier is down) and `GET /metrics` (tier counters).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;
use prewarm_store::Health;

/// Probes every tier now. Failure details go to the log; the body names tiers and states only.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let health = match &state.tiers {
        Some(t) => t.health().await,
        None => Health {
            ready: true,
            tiers: Vec::new(),
        },
    };
    let status = if health.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

/// The tier and zstd counters as JSON (`GET /metrics` without `Accept: text/plain`; the
/// Prometheus text is `crate::metrics`).
pub(crate) fn metrics_json(state: &AppState) -> Response {
    let pool = state.sandboxes.as_ref();
    let Some(tiers) = &state.tiers else {
        let mut body = serde_json::json!({"tiers": []});
        crate::sandbox::pool_metrics::extend_json(pool, &mut body);
        return Json(body).into_response();
    };
    let snapshot = tiers.metrics();
    let zstd = state.encoded.counters();
    let (compressed, reused) = (
        zstd.compressed.load(Ordering::Relaxed),
        zstd.reused.load(Ordering::Relaxed),
    );
    let mut body = serde_json::to_value(&snapshot).unwrap_or_default();
    body["zstd"] = serde_json::json!({"compressed": compressed, "reused": reused});
    if let Some(svc) = &state.sandboxes {
        let s = svc.warmer().stats();
        body["warmed"] = serde_json::json!({
            "warm_commands_run": s.warm_commands_run,
            "fetched": s.warmed_fetched,
            "published": s.warmed_published,
            "runtimes": warm_runtimes(svc),
        });
    }
    crate::sandbox::pool_metrics::extend_json(pool, &mut body);
    Json(body).into_response()
}

/// Per warm runtime: how it came to be warm (`warmed_here`, `fetched_warmed`,
/// `warmed_and_published`).
pub(crate) fn warm_runtimes(svc: &prewarm_node::sandbox::SandboxService) -> serde_json::Value {
    let list: Vec<_> = svc
        .warmer()
        .runtimes()
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "runtime": r.runtime,
                "digest": r.digest,
                "warmed": r.warmed,
                "warmed_manifest": r.warmed_manifest,
            })
        })
        .collect();
    serde_json::Value::Array(list)
}
