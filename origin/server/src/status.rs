//! `GET /readyz` (each tier's health; 503 while a required tier is down) and `GET /metrics` (tier counters).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;
use prewarm_store::{prometheus_metric, Health};

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

/// Counters as JSON, or in Prometheus text format when the client asks for `text/plain`.
pub(super) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
    let wants_text = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain"));
    if wants_text {
        let mut text = snapshot.to_prometheus();
        for (name, v) in [("compressed", compressed), ("reused", reused)] {
            prometheus_metric(&mut text, &format!("zstd_{name}_total"), "counter", v);
        }
        crate::sandbox::pool_metrics::extend_text(pool, &mut text);
        return ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response();
    }
    let mut body = serde_json::to_value(&snapshot).unwrap_or_default();
    body["zstd"] = serde_json::json!({"compressed": compressed, "reused": reused});
    crate::sandbox::pool_metrics::extend_json(pool, &mut body);
    Json(body).into_response()
}
