//! The origin's one Prometheus registry: every crate's series, registered in one place, and `GET /metrics`.
//!
//! # Adding series (docs/METRICS.md)
//! Keep the families in a struct of your own, in your own file, next to the code that moves
//! them (`prewarm_node::metrics::NodeMetrics`, `prewarm_store::ReadMetrics`): `Default` +
//! `Clone` (prometheus-client families are shared handles) and a
//! `pub fn register(&self, registry: &mut Registry)`. Then add one line to [`registry`] below.
//! Numbers that already live somewhere (a queue length, a map's size) are read at scrape time
//! by a collector instead (see `collect.rs`). Names get the `prewarm_` prefix from the
//! registry; counters get `_total` from the encoder. Label values must be bounded: runtimes
//! through `NodeMetrics::runtime_label`, never a digest, a user or a raw path.

mod collect;
pub mod http;
mod storage;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

use crate::AppState;

/// The registry and the state its collectors read; what `/metrics` serves.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub(crate) http: http::HttpMetrics,
    /// Block reuse and storage savings, brought up to date before each text scrape.
    storage: Option<Arc<storage::StorageStats>>,
}

/// Builds the one registry of `state`'s components. Called once by [`crate::app`].
pub fn registry(
    state: &AppState,
    snapshots: Option<&crate::snapshots::stats::SnapshotStats>,
) -> Metrics {
    let mut registry = Registry::with_prefix("prewarm");
    let http = http::HttpMetrics::default();
    http.register(&mut registry);
    let storage = state.tiers.as_ref().map(|tiers| {
        tiers.read_metrics().register(&mut registry);
        let s = Arc::new(storage::StorageStats::new(tiers.clone()));
        s.register(&mut registry);
        s
    });
    if let Some(s) = &state.sandboxes {
        s.warmer().metrics().register(&mut registry);
    }
    if let Some(s) = snapshots {
        s.register(&mut registry);
    }
    if let Some(p) = &state.prediction {
        p.metrics().register(&mut registry);
    }
    registry.register_collector(Box::new(collect::Scrape::new(state)));
    Metrics {
        registry: Arc::new(registry),
        http,
        storage,
    }
}

impl Metrics {
    /// The whole registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `GET /metrics`: the Prometheus (OpenMetrics) text when the client asks for text
/// (`Accept: text/plain` or `application/openmetrics-text`, as Prometheus does), else the tier
/// counters as JSON.
pub(crate) async fn serve(
    State((metrics, state)): State<(Metrics, AppState)>,
    headers: HeaderMap,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("text/plain") || accept.contains("application/openmetrics-text") {
        let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        if let Some(s) = &metrics.storage {
            s.refresh().await;
        }
        return ([(header::CONTENT_TYPE, ct)], metrics.render()).into_response();
    }
    crate::status::metrics_json(&state)
}
