//! axum's own refusals (a query that does not parse, a GET without a WebSocket upgrade: plain text) turned into the one error body.
//!
//! Extractors reject before a handler runs, with `text/plain` bodies; every other error the API
//! sends is `{"error":{"code","message"}}` (see [`crate::error`]). One layer converts them, so
//! no handler needs its own rejection type and a client parses one error shape.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prewarm_shared::wire::ErrorBody;

use crate::error::{ErrorCode, LoggedCause};

/// Longest rejection text kept (axum's are one line).
const MAX_TEXT: usize = 4096;

/// Rewrites a plain-text 4xx (an extractor's rejection) as the error body, same status.
pub(crate) async fn as_error_body(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !resp.status().is_client_error()
        || !plain
        || resp.extensions().get::<LoggedCause>().is_some()
    {
        return resp;
    }
    let status = resp.status();
    let text = axum::body::to_bytes(resp.into_body(), MAX_TEXT)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_string();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        _ => ErrorCode::BadRequest,
    };
    let mut out = (status, Json(ErrorBody::new(code.as_str(), message.clone()))).into_response();
    out.extensions_mut()
        .insert(LoggedCause(std::sync::Arc::new(message)));
    out
}
