//! HTTP request latency by method, route template (axum's matched path, never the raw path) and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The route of a request no route matched (404s of unknown paths): one value, not the path.
pub const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Request latency per route. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    seconds: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            // 100 µs to ~100 s.
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1e-4, 2.5, 16))
            }),
        }
    }
}

impl HttpMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_request_seconds",
            "HTTP requests by method, route template and status, until the response head",
            self.seconds.clone(),
        );
    }
}

/// The middleware: times each request until its response head (a streamed body or a
/// WebSocket counts until it starts).
pub(crate) async fn track(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |p| p.as_str())
        .to_owned();
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let resp = next.run(req).await;
    m.seconds
        .get_or_create(&RequestLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    resp
}
