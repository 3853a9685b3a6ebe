//! The origin's HTTP API: `fn app(state) -> Router`, its layers, the scoped-token auth, the one
//! error map, the repository rules behind the handlers, and the one config.

pub mod auth;
pub mod config;
mod encoding;
pub mod error;
pub mod gc;
mod listen;
pub mod metrics;
mod objects;
pub mod openapi;
pub mod predict;
mod rejections;
pub mod repo;
pub mod sandbox;
pub mod snapshots;
mod startup;
mod status;
mod tags;
#[cfg(test)]
mod tests;
mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use prewarm_shared::wire::MAX_MISSING_QUERY;

use crate::error::{ApiError, LoggedCause};
use crate::repo::Repo;

pub use auth::Auth;
pub use encoding::EncodedCache;
pub use encoding::DEFAULT_LEVEL as DEFAULT_COMPRESSION_LEVEL;
pub use listen::{serve, ConnLimits};
pub(crate) use objects::body_bytes;
pub use startup::{open_tiers, start, StartError, Started};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub repo: Repo,
    /// The tokens and what each route needs of them (`Auth::open()`: no tokens, all open).
    pub auth: Arc<Auth>,
    pub limits: Limits,
    /// zstd level for block and manifest GETs from clients that accept zstd; 0 sends identity
    /// always. See `encoding` for when a body is encoded.
    pub compression_level: i32,
    /// zstd bodies already made (and objects known not to compress), shared by all requests.
    pub encoded: EncodedCache,
    /// Warming and sandboxes on this node; `None` disables `/v1/sandboxes` and `/v1/warm`.
    pub sandboxes: Option<prewarm_node::sandbox::SandboxService>,
    /// The tier stack behind `repo`, for `/readyz` and `/metrics`; `None` reports no tiers.
    pub tiers: Option<prewarm_store::Tiered>,
    /// Predictive warming (`[predict]`); `None` with sandboxes off.
    pub prediction: Option<predict::Prediction>,
}

/// Request-size limits; each maps to 413 when exceeded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_block_bytes: u64,
    pub max_manifest_bytes: u64,
    /// Whole-request timeout; uploads of the largest block must fit in it.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_block_bytes: prewarm_shared::wire::MAX_BLOCK_SIZE,
            max_manifest_bytes: 256 << 20,
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// Body limit of sandbox create and exec: the largest context, env maps and command they may
/// carry (see `prewarm_shared::sandbox`) fit, with room for JSON escapes.
pub const MAX_SANDBOX_BODY: u64 = 1 << 20;
/// Body limit of the small JSON routes (a warm request, a tag) and of any route not named.
pub const MAX_SMALL_BODY: u64 = 16 << 10;
/// Body limit of the missing-blocks query: [`MAX_MISSING_QUERY`] digests in their JSON form.
pub const MAX_MISSING_BODY: u64 = MAX_MISSING_QUERY as u64 * 80 + 1024;

/// The whole API as a router, so tests can drive it in-process.
///
/// Each route buffers at most its own body limit: blocks [`Limits::max_block_bytes`]
/// (streamed), manifests [`Limits::max_manifest_bytes`], the JSON routes far less. Over it,
/// 413 naming the limit.
pub fn app(state: AppState) -> Router {
    // Snapshots need sandboxes and a tier stack whose durable tier keeps their records.
    let snaps = match (&state.sandboxes, &state.tiers) {
        (Some(service), Some(tiers)) => Some(snapshots::Snapshots {
            service: service.clone(),
            repo: state.repo.clone(),
            records: snapshots::records::SnapshotRecords(Arc::new(tiers.clone())),
            stats: Default::default(),
        }),
        _ => None,
    };
    let sandbox_state = sandbox::SandboxState {
        service: state.sandboxes.clone(),
        snapshots: snaps.clone(),
    };
    // A sandbox-scoped route on another user's sandbox answers 404 before its handler runs.
    let sandboxes = sandbox::router(sandbox_state.clone())
        .merge(snapshots::router(snaps.clone()))
        .route_layer(middleware::from_fn_with_state(
            sandbox_state,
            sandbox::owner::guard,
        ));
    let manifest_limit = DefaultBodyLimit::max(state.limits.max_manifest_bytes as usize);
    let metrics = metrics::registry(&state, snaps.as_ref().map(|s| &s.stats));
    let http_metrics = metrics.http.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(status::readyz))
        .route("/metrics", get(metrics::serve).with_state((metrics, state.clone())))
        .route("/v1/blocks/{digest}", get(objects::get_block).put(objects::put_block))
        .route("/v1/manifests/{digest}", get(objects::get_manifest).put(objects::put_manifest).layer(manifest_limit))
        .route("/v1/runtimes/{name}/tags/{tag}", get(tags::get_tag).put(tags::put_tag).delete(tags::delete_tag))
        .route(
            "/v1/blocks/missing",
            post(objects::missing).layer(DefaultBodyLimit::max(MAX_MISSING_BODY as usize)),
        )
        .merge(sandboxes)
        .merge(predict::router(state.prediction.clone()))
        .merge(ui::assets())
        .merge(ui::api())
        .merge(openapi::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed("method not allowed on this endpoint".into()) })
        // Every route's scope, from the one table in `auth::table`, before any body is read.
        .layer(middleware::from_fn_with_state(state.clone(), auth::authorize))
        .layer(DefaultBodyLimit::max(MAX_SMALL_BODY as usize))
        .layer(middleware::from_fn(rejections::as_error_body))
        .layer(middleware::from_fn(log_errors))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::GATEWAY_TIMEOUT, state.limits.request_timeout))
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal("handler panicked".into()).into_response()))
        // Outside the timeout and panic layers, so a 504 or a 500 they make is counted too.
        .layer(middleware::from_fn_with_state(http_metrics, metrics::http::track))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
            tracing::info_span!("http", method = %req.method(), uri = %req.uri(), route = route.as_deref().unwrap_or("-"))
        }))
        .with_state(state)
}

async fn healthz(State(_): State<AppState>) -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Logs the cause an error response carries, inside the trace span. 5xx as errors, 4xx at debug.
async fn log_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if let Some(LoggedCause(cause)) = resp.extensions().get::<LoggedCause>() {
        if resp.status().is_server_error() {
            tracing::error!(status = %resp.status(), %cause, "request failed");
        } else {
            tracing::debug!(status = %resp.status(), %cause, "request refused");
        }
    }
    resp
}
