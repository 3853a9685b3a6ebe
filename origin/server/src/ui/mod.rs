//! `/ui`: the live web view, static assets embedded in the binary (no CDN, no bundler) and the one JSON it polls.
//!
//! `GET /ui`, `/ui/app.js` and `/ui/style.css` are public (they hold no data). The page polls
//! `GET /v1/ui/state` (a sandbox or admin token when tokens are configured: the page asks for
//! the token and sends it as `Authorization: Bearer`; a sandbox token sees only its user's
//! sandboxes), and `/readyz` for tier health.

mod state;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::AppState;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The page and its assets (public).
pub(crate) fn assets() -> Router<AppState> {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

/// The state the page polls (its scope is in `auth::table`).
pub(crate) fn api() -> Router<AppState> {
    Router::new().route("/v1/ui/state", get(state::state))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self'; img-src 'self' data:",
            ),
        ],
        body,
    )
}
