//! Path docs of the store (blocks, manifests, tags) and the operational routes (health, readiness, metrics).
#![allow(dead_code)] // the functions exist for their `#[utoipa::path]` only

use prewarm_shared::wire::{MissingRequest, MissingResponse, TagBody};
use utoipa::OpenApi;

use super::views::{Binary, Health, Ready};

#[derive(OpenApi)]
#[openapi(paths(
    healthz,
    readyz,
    metrics,
    get_block,
    put_block,
    missing,
    get_manifest,
    put_manifest,
    get_tag,
    put_tag,
    delete_tag
))]
pub(super) struct Doc;

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
fn healthz() {}

/// Each storage tier's health, probed now.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Every required tier answers.", body = Ready),
    (status = 503, description = "A required tier is down.", body = Ready),
))]
fn readyz() {}

/// Prometheus text (`Accept: text/plain` or OpenMetrics), else the tier and pool counters as JSON.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses(
    (status = 200, description = "Counters.", content(
        (Object = "application/json"),
        (String = "text/plain"),
        (String = "application/openmetrics-text"),
    )),
))]
fn metrics() {}

/// A block, by digest. `Range` and `If-None-Match` work; zstd when accepted.
#[utoipa::path(get, path = "/v1/blocks/{digest}", tag = "store",
    params(("digest" = String, Path, description = "`sha256:<hex>`")),
    responses(
        (status = 200, body = Binary, content_type = "application/octet-stream"),
        (status = 206, description = "The range asked for.", body = Binary, content_type = "application/octet-stream"),
        (status = 304, description = "Not modified (`If-None-Match`)."),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 416, response = super::errors::RangeNotSatisfiable),
    ))]
fn get_block() {}

/// Uploads a block; its bytes must hash to the digest. Idempotent.
#[utoipa::path(put, path = "/v1/blocks/{digest}", tag = "store",
    params(("digest" = String, Path, description = "`sha256:<hex>`")),
    request_body(content = Binary, content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored (or already there)."),
        (status = 400, response = super::errors::BadRequest),
        (status = 413, response = super::errors::TooLarge),
        (status = 422, response = super::errors::Unprocessable),
    ))]
fn put_block() {}

/// Which of these blocks the origin lacks (at most 10 000 per request).
#[utoipa::path(post, path = "/v1/blocks/missing", tag = "store",
    request_body = MissingRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = MissingResponse),
        (status = 400, response = super::errors::BadRequest),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn missing() {}

/// A manifest (JSON), by digest. `Range` and `If-None-Match` work; zstd when accepted.
#[utoipa::path(get, path = "/v1/manifests/{digest}", tag = "store",
    params(("digest" = String, Path, description = "`sha256:<hex>`")),
    responses(
        (status = 200, body = Binary, content_type = "application/json"),
        (status = 206, description = "The range asked for.", body = Binary, content_type = "application/json"),
        (status = 304, description = "Not modified (`If-None-Match`)."),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 416, response = super::errors::RangeNotSatisfiable),
    ))]
fn get_manifest() {}

/// Uploads a manifest; every block it names must be stored first.
#[utoipa::path(put, path = "/v1/manifests/{digest}", tag = "store",
    params(("digest" = String, Path, description = "`sha256:<hex>`")),
    request_body(content = Binary, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored (or already there)."),
        (status = 400, response = super::errors::BadRequest),
        (status = 409, response = super::errors::Conflict),
        (status = 413, response = super::errors::TooLarge),
        (status = 422, response = super::errors::Unprocessable),
    ))]
fn put_manifest() {}

/// Resolves `name:tag` to a manifest digest.
#[utoipa::path(get, path = "/v1/runtimes/{name}/tags/{tag}", tag = "store",
    params(("name" = String, Path), ("tag" = String, Path)),
    responses(
        (status = 200, body = TagBody),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
    ))]
fn get_tag() {}

/// Moves a tag to a stored manifest.
#[utoipa::path(put, path = "/v1/runtimes/{name}/tags/{tag}", tag = "store",
    params(("name" = String, Path), ("tag" = String, Path)),
    request_body = TagBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = TagBody),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn put_tag() {}

/// Deletes a tag (what it pointed at stays until `prewarm gc` finds it unreferenced).
#[utoipa::path(delete, path = "/v1/runtimes/{name}/tags/{tag}", tag = "store",
    params(("name" = String, Path), ("tag" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted; the digest it pointed at.", body = TagBody),
        (status = 400, response = super::errors::BadRequest),
        (status = 403, response = super::errors::Forbidden),
        (status = 404, response = super::errors::NotFound),
    ))]
fn delete_tag() {}
