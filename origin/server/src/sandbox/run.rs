//! `POST /v1/sandboxes/{id}/run`: code in the sandbox's interpreter (the WebSocket form is exec's socket, see `live`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prewarm_shared::run::RunRequest;

use super::routes::{parse, service};
use super::SandboxState;
use crate::error::ApiError;
use crate::MAX_SANDBOX_BODY;

/// An exception, a timeout or a dead interpreter is a 200 result saying so; errors are for
/// requests that could not run at all (no sandbox, not ready, no such interpreter).
pub(super) async fn run(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: RunRequest = parse(body, MAX_SANDBOX_BODY)?;
    Ok(Json(service(&state)?.run_code(&id, req, None).await?).into_response())
}
