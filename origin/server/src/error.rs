//! The origin's one error type and its one mapping to HTTP: status + `{"error":{"code","message"}}`.
//!
//! Internal details (paths, backend messages) never reach a client: 5xx bodies carry a generic
//! message, and the full cause is logged by the middleware in [`crate`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prewarm_shared::wire::ErrorBody;

use crate::repo::RepoError;
use prewarm_store::StoreError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input: digest, name, JSON, range.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// The resource is not in a state that allows this (e.g. exec on a sandbox still warming).
    #[error("{message}")]
    State { code: &'static str, message: String },
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("requested range is outside the object")]
    RangeNotSatisfiable { size: u64 },
    /// Bytes that do not match their digest, or a manifest that is not valid.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// A backend is down; the client may retry.
    #[error("a storage tier is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl std::fmt::Display) -> Self {
        ApiError::BadRequest {
            code,
            message: message.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::State { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a client may read: the error itself for 4xx, a generic line for 5xx (whose cause
    /// may hold paths or backend text, and is only logged).
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Unavailable(_) => "a storage tier is unavailable; retry later".to_string(),
            e if e.status().is_server_error() => "internal error".to_string(),
            e => e.to_string(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::State { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "missing_blocks",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Integrity { .. } => ApiError::Unprocessable {
                code: "digest_mismatch",
                message: e.to_string(),
            },
            StoreError::Unavailable { .. } => ApiError::Unavailable(e),
            StoreError::Other { .. } => ApiError::Internal(Box::new(e)),
        }
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound { .. } | RepoError::TagNotFound { .. } => {
                ApiError::NotFound(e.to_string())
            }
            RepoError::Manifest(m) => ApiError::Unprocessable {
                code: m.code(),
                message: m.to_string(),
            },
            RepoError::MissingBlocks { .. } => ApiError::Conflict(e.to_string()),
            RepoError::Store(s) => s.into(),
        }
    }
}

/// Marks a response as an error so the logging middleware can print the cause it carries.
#[derive(Clone)]
pub(crate) struct LoggedCause(pub(crate) std::sync::Arc<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.public_message();
        let mut resp = (status, Json(ErrorBody::new(self.code(), message))).into_response();
        if let ApiError::RangeNotSatisfiable { size } = &self {
            if let Ok(v) = prewarm_shared::content_range(None, *size).parse() {
                resp.headers_mut()
                    .insert(axum::http::header::CONTENT_RANGE, v);
            }
        }
        let cause = match &self {
            ApiError::Unavailable(e) => format!("{e}"),
            ApiError::Internal(e) => format!("{e}"),
            other => other.to_string(),
        };
        resp.extensions_mut()
            .insert(LoggedCause(std::sync::Arc::new(cause)));
        resp
    }
}
