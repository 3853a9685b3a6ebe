//! Path docs of `/v1/sandboxes` and `/v1/warm`: create, status, delete, progress events, exec, run, warm.
#![allow(dead_code)] // the functions exist for their `#[utoipa::path]` only

use prewarm_shared::run::{RunRequest, RunResult};
use prewarm_shared::sandbox::{
    CreateSandbox, ExecRequest, ExecResult, WarmInfo, WarmRequest, WarmState,
};
use utoipa::OpenApi;

use super::views::{Created, SandboxList, SandboxStatus, WarmStatsView};

#[derive(OpenApi)]
#[openapi(paths(
    create, list, status, remove, events, exec, exec_ws, run, run_ws, warm, stats
))]
pub(super) struct Doc;

/// Creates a sandbox on a runtime (warming it first if needed), or from a snapshot when the
/// body has `"snapshot": "sha256:…"` (then `runtime` may be left out).
#[utoipa::path(post, path = "/v1/sandboxes", tag = "sandboxes",
    request_body = CreateSandbox,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Ready: the runtime was warm.", body = Created),
        (status = 202, description = "Warming: follow `…/events` or poll `GET /v1/sandboxes/{id}`.", body = Created),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn create() {}

/// The live sandboxes the caller may see: a sandbox token its user's; open and admin everyone's,
/// or `user_id`'s.
#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes",
    params(("user_id" = Option<String>, Query, description = "Only this user's (admin, or an open origin)")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SandboxList),
        (status = 400, response = super::errors::BadRequest),
        (status = 403, response = super::errors::Forbidden),
        (status = 404, response = super::errors::NotFound),
    ))]
fn list() {}

/// A sandbox's state (a paused one stays resolvable).
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SandboxStatus),
        (status = 404, response = super::errors::NotFound),
    ))]
fn status() {}

/// Deletes a sandbox: its processes are killed, its workspace removed.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, response = super::errors::NotFound),
    ))]
fn remove() {}

/// The warm state as it changes, until `ready` or `failed`: a WebSocket of JSON [`WarmState`]
/// messages, or Server-Sent Events with `Accept: text/event-stream`.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/events", tag = "sandboxes",
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket: one text message per state."),
        (status = 200, description = "Server-Sent Events named after the status, data a WarmState.", body = WarmState, content_type = "text/event-stream"),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
    ))]
fn events() {}

/// Runs a command in the sandbox and returns its result. A non-zero exit is a result.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/exec", tag = "sandboxes",
    params(("id" = String, Path)),
    request_body = ExecRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ExecResult),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 409, response = super::errors::Conflict),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn exec() {}

/// Exec over a WebSocket: send one ExecRequest (or RunRequest) as text; output is streamed as
/// `{"stream","data"}` messages, then `{"result":…}` or `{"error":…}`.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/exec", tag = "sandboxes",
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket."),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
    ))]
fn exec_ws() {}

/// Runs code in the sandbox's long-lived interpreter (notebook semantics). An exception, a
/// timeout or a dead interpreter is a 200 result saying so.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/run", tag = "sandboxes",
    params(("id" = String, Path)),
    request_body = RunRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = RunResult),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 409, response = super::errors::Conflict),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn run() {}

/// The run WebSocket: the exec socket, sent a RunRequest.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/run", tag = "sandboxes",
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket."),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
    ))]
fn run_ws() {}

/// Warms a runtime on this node without making a sandbox.
#[utoipa::path(post, path = "/v1/warm", tag = "sandboxes",
    request_body = WarmRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Warm already.", body = WarmInfo),
        (status = 202, description = "Warming.", body = WarmInfo),
        (status = 400, response = super::errors::BadRequest),
        (status = 404, response = super::errors::NotFound),
        (status = 413, response = super::errors::TooLarge),
    ))]
fn warm() {}

/// Warm counters since the origin started, and the runtimes warm now.
#[utoipa::path(get, path = "/v1/warm/stats", tag = "sandboxes",
    security(("bearer" = [])),
    responses(
        (status = 200, body = WarmStatsView),
        (status = 404, response = super::errors::NotFound),
    ))]
fn stats() {}
