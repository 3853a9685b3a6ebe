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
    let Some(tiers) = &state.tiers else {
        return Json(serde_json::json!({"tiers": []})).into_response();
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
        if let Some(svc) = &state.sandboxes {
            warmed_prometheus(&mut text, svc);
        }
        return ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response();
    }
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
    Json(body).into_response()
}

/// Warmed-runtime counters, and one `prewarm_warm_runtime` line per warm runtime labelled
/// with how it came to be warm.
fn warmed_prometheus(text: &mut String, svc: &prewarm_node::sandbox::SandboxService) {
    let s = svc.warmer().stats();
    for (name, v) in [
        ("warm_commands_run_total", s.warm_commands_run),
        ("warmed_fetched_total", s.warmed_fetched),
        ("warmed_published_total", s.warmed_published),
    ] {
        prometheus_metric(text, name, "counter", v);
    }
    text.push_str("# TYPE prewarm_warm_runtime gauge\n");
    for r in svc.warmer().runtimes() {
        let how = serde_json::to_value(r.warmed).unwrap_or_default();
        let label = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!(
            "prewarm_warm_runtime{{runtime=\"{}\",digest=\"{}\",warmed=\"{}\"}} 1\n",
            label(&r.runtime),
            r.digest,
            how.as_str().unwrap_or_default()
        ));
    }
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
