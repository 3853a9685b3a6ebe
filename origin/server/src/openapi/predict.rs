//! Path docs of predictive warming: a user's hint, what the predictor wants warm, and its test clock.
#![allow(dead_code)] // the functions exist for their `#[utoipa::path]` only

use utoipa::OpenApi;

use super::views::{ClockBody, ClockSet, Hinted};

#[derive(OpenApi)]
#[openapi(paths(hint, predictions, clock))]
pub(super) struct Doc;

/// User `id` showed up: warm their usual runtimes now (each want, and what became of it). A
/// sandbox token may hint only its own user.
#[utoipa::path(post, path = "/v1/users/{id}/hint", tag = "predict",
    params(("id" = String, Path, description = "The user (1-256 bytes)")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Hinted),
        (status = 400, response = super::errors::BadRequest),
        (status = 403, response = super::errors::Forbidden),
        (status = 404, response = super::errors::NotFound),
    ))]
fn hint() {}

/// What the predictor wants warm now and why (score, rule), the last plan's outcome and recent
/// decisions. Admin.
#[utoipa::path(get, path = "/v1/predictions", tag = "predict",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The predictor's state.", body = serde_json::Value),
        (status = 403, response = super::errors::Forbidden),
        (status = 404, response = super::errors::NotFound),
    ))]
fn predictions() {}

/// Moves the predictor's clock and runs every tick up to it: only with `predict.clock =
/// "manual"` (tests), 404 otherwise. Admin.
#[utoipa::path(post, path = "/v1/predict/clock", tag = "predict",
    request_body = ClockBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ClockSet),
        (status = 400, response = super::errors::BadRequest),
        (status = 403, response = super::errors::Forbidden),
        (status = 404, response = super::errors::NotFound),
    ))]
fn clock() {}
