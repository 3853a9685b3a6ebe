//! Path docs of the web view (`/ui`, its assets, `/v1/ui/state`) and of `/openapi.json` itself.
#![allow(dead_code)] // the functions exist for their `#[utoipa::path]` only

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(paths(page, page_slash, app_js, style_css, state, openapi))]
pub(super) struct Doc;

/// The web view's page.
#[utoipa::path(get, path = "/ui", tag = "ops",
    responses((status = 200, body = String, content_type = "text/html")))]
fn page() {}

/// The web view's page.
#[utoipa::path(get, path = "/ui/", tag = "ops",
    responses((status = 200, body = String, content_type = "text/html")))]
fn page_slash() {}

/// The web view's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "ops",
    responses((status = 200, body = String, content_type = "text/javascript")))]
fn app_js() {}

/// The web view's style sheet.
#[utoipa::path(get, path = "/ui/style.css", tag = "ops",
    responses((status = 200, body = String, content_type = "text/css")))]
fn style_css() {}

/// What the web view polls: sandboxes, warms, tiers.
#[utoipa::path(get, path = "/v1/ui/state", tag = "ops",
    security(("bearer" = [])),
    responses((status = 200, body = Object)))]
fn state() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1.", body = Object)))]
fn openapi() {}
