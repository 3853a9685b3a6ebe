//! Bearer-token guard for writes. Reads are public: content is addressed by its hash.

use std::fmt;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::error::ApiError;

/// A write token. Its `Debug` never shows the secret.
pub struct Token(String);

impl Token {
    /// A token from the contents of a token file (surrounding whitespace trimmed).
    pub fn new(raw: &str) -> Option<Self> {
        let t = raw.trim();
        (!t.is_empty()).then(|| Token(t.to_string()))
    }

    fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

fn check(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "this write needs `Authorization: Bearer <token>`",
        ))?;
    let presented = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized(
            "Authorization header must be `Bearer <token>`",
        ))?;
    if token.matches(presented.trim()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("the bearer token is not valid"))
    }
}

/// Guards routes that are writes whatever their method (`POST /v1/blocks/missing`).
pub(super) async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    match check(&state, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Guards every PUT (before its body is read) and every DELETE.
pub(super) async fn require_token_for_puts(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == Method::PUT || req.method() == Method::DELETE {
        if let Err(e) = check(&state, &req) {
            return e.into_response();
        }
    }
    next.run(req).await
}
