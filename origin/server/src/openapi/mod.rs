//! `GET /openapi.json`: the API's OpenAPI 3.1 document, assembled from each area's path docs and the wire types' schemas.
//!
//! The schemas are derived from the types the handlers send and take (`prewarm_shared` with its
//! `openapi` feature, and [`views`] for bodies the handlers build as JSON). The path docs live
//! here, one file per area, beside the routers rather than on the handlers; `tests` keeps them
//! honest: every route the router serves (by method) must be documented and every documented
//! operation must be served, and `scripts/api-test` checks the running server against the
//! document with schemathesis.

mod errors;
mod files;
mod predict;
mod sandboxes;
mod snapshots;
mod store;
#[cfg(test)]
mod tests;
mod ui;
mod views;

use std::sync::{Arc, OnceLock};

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi as Document};
use utoipa::{Modify, OpenApi};

use prewarm_shared::wire::{ErrorBody, ErrorDetail};

use crate::AppState;

/// The security scheme protected operations name (the path docs spell it `"bearer"`: the
/// macro takes a literal).
pub(crate) const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "prewarm origin",
        description = "Content-addressed runtimes, warming and sandboxes. Errors are \
            `{\"error\":{\"code\",\"message\"}}`; `code` is stable. With tokens configured, \
            each route needs a scope (`read`, `push`, `sandbox`, `admin`; see the README's \
            \"Users and tokens\"): `Authorization: Bearer <token>`. Reads of blocks, \
            manifests and tags stay public with `--token-file` alone or `--public-reads`. A \
            sandbox token sees only its own user's sandboxes and snapshots; another user's \
            are 404.",
    ),
    modifiers(&Security),
    components(
        schemas(ErrorBody, ErrorDetail),
        responses(
        errors::BadRequest,
        errors::Unauthorized,
        errors::Forbidden,
        errors::NotFound,
        errors::Conflict,
        errors::TooLarge,
        errors::RangeNotSatisfiable,
        errors::Unprocessable,
        errors::Internal,
        errors::Unavailable,
        errors::Timeout,
        ),
    ),
    tags(
        (name = "store", description = "Blocks, manifests and tags: the content-addressed runtime store."),
        (name = "sandboxes", description = "Warming, sandboxes, exec and run."),
        (name = "files", description = "Files in and out of a sandbox's workspace."),
        (name = "snapshots", description = "Snapshot, fork, pause and resume sandboxes."),
        (name = "predict", description = "Predictive warming: user hints, what the predictor wants warm."),
        (name = "ops", description = "Health, readiness, metrics, the web view and this document."),
    )
)]
struct ApiDoc;

/// Adds the bearer scheme protected operations refer to.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Components::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of the origin's (`--token-file`: admin; `--tokens-file`: each \
                         with its scope and, for `sandbox`, its user).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The whole document.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    for area in [
        store::Doc::openapi(),
        sandboxes::Doc::openapi(),
        files::Doc::openapi(),
        snapshots::Doc::openapi(),
        predict::Doc::openapi(),
        ui::Doc::openapi(),
    ] {
        doc.merge(area);
    }
    // The modifiers run on `ApiDoc` alone; the common errors must reach every area's paths.
    errors::CommonErrors.modify(&mut doc);
    doc
}

/// The document as served, built once.
fn json() -> Arc<str> {
    static JSON: OnceLock<Arc<str>> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            .into()
    })
    .clone()
}

/// `GET /openapi.json` (public, like the reads).
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(serve))
}

async fn serve() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json().to_string(),
    )
        .into_response()
}
