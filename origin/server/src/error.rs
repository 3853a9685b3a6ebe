//! The origin's one error type, its one mapping to HTTP (status + `{"error":{"code","message"}}`),
//! and every error code the API sends, as one enum.
//!
//! Internal details (paths, backend messages) never reach a client: 5xx bodies carry a generic
//! message, and the full cause is logged by the middleware in [`crate`]. A tier outage is 503
//! with `Retry-After`, whichever layer it surfaced in (a handler's store call, a repository
//! rule, or a warm resolving its runtime through the repository).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prewarm_client::transfer::TransferError;
use prewarm_node::sandbox::files::{FileError, FileOrSandbox};
use prewarm_node::sandbox::SandboxError;
use prewarm_node::warm::WarmError;
use prewarm_shared::wire::ErrorBody;
use prewarm_store::StoreError;

use crate::repo::RepoError;

/// Seconds a client is told to wait before retrying a 503 (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 1;

/// Every `code` an error body can carry. Clients match on these strings, so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A request body or parameter that is not what the endpoint takes.
    BadRequest,
    /// A body that is not the JSON the endpoint takes.
    BadJson,
    /// A body that could not be read.
    BadBody,
    /// A manifest a repository refused (as a push sees it through [`TransferError::Rejected`]).
    BadManifest,
    /// More digests in one `POST /v1/blocks/missing` than it answers.
    TooManyDigests,
    Unauthorized,
    /// A valid token whose scope does not allow the route, or a sandbox token naming another user.
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// A manifest uploaded before its blocks.
    MissingBlocks,
    /// Exec on a sandbox whose runtime is not warm yet.
    NotReady,
    TooLarge,
    RangeNotSatisfiable,
    /// Bytes that do not hash to the digest they were sent under.
    DigestMismatch,
    /// A storage tier is down; retry after `Retry-After`.
    Unavailable,
    Internal,
    /// A shared type refused its input (a digest, name, tag, path, limit, manifest): the code
    /// is that type's own `code()`, so edge and origin send the same one.
    Input(&'static str),
}

impl ErrorCode {
    /// The code as it appears in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadBody => "bad_body",
            ErrorCode::BadManifest => "bad_manifest",
            ErrorCode::TooManyDigests => "too_many_digests",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::MissingBlocks => "missing_blocks",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::DigestMismatch => "digest_mismatch",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Input(code) => code,
        }
    }
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input: digest, name, JSON, range.
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// The resource is not in a state that allows this (e.g. exec on a sandbox still warming).
    #[error("{message}")]
    State { code: ErrorCode, message: String },
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("requested range is outside the object")]
    RangeNotSatisfiable { size: u64 },
    /// Bytes that do not match their digest, or a manifest that is not valid.
    #[error("{message}")]
    Unprocessable { code: ErrorCode, message: String },
    /// A storage tier is down, seen directly or through a repository or a warm; the client
    /// may retry.
    #[error("a storage tier is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn bad_request(code: ErrorCode, message: impl std::fmt::Display) -> Self {
        ApiError::BadRequest {
            code,
            message: message.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
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

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::State { code, .. } => *code,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::Conflict(_) => ErrorCode::MissingBlocks,
            ApiError::TooLarge { .. } => ErrorCode::TooLarge,
            ApiError::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Integrity { .. } => ApiError::Unprocessable {
                code: ErrorCode::DigestMismatch,
                message: e.to_string(),
            },
            StoreError::Unavailable { .. } => ApiError::Unavailable(Box::new(e)),
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
                code: ErrorCode::Input(m.code()),
                message: m.to_string(),
            },
            RepoError::MissingBlocks { .. } => ApiError::Conflict(e.to_string()),
            RepoError::Store(s) => s.into(),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::NotFound(_) => ApiError::NotFound(e.to_string()),
            SandboxError::Invalid(m) => ApiError::bad_request(ErrorCode::BadRequest, m),
            SandboxError::Limit(l) => ApiError::bad_request(ErrorCode::Input(l.code()), l),
            SandboxError::Input(i) => ApiError::bad_request(ErrorCode::Input(i.code()), i),
            SandboxError::NotReady { .. } => ApiError::State {
                code: ErrorCode::NotReady,
                message: e.to_string(),
            },
            SandboxError::Warm(w) => match *w {
                WarmError::Resolve { source, what } => match source {
                    TransferError::NotFound { .. } => {
                        ApiError::NotFound(format!("runtime {what} not found"))
                    }
                    // The repository behind the warmer reports a tier outage this way.
                    TransferError::Unavailable { .. } => ApiError::Unavailable(Box::new(source)),
                    other => ApiError::Internal(Box::new(other)),
                },
            },
            SandboxError::Io { .. } => ApiError::Internal(Box::new(e)),
        }
    }
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        let code = ErrorCode::Input(e.code());
        match e {
            FileError::NotFound(_) | FileError::Stopped => ApiError::NotFound(e.to_string()),
            FileError::IsDir(_) | FileError::NotDir(_) | FileError::NotFile(_) => ApiError::State {
                code,
                message: e.to_string(),
            },
            FileError::TooLarge { limit, .. } => ApiError::TooLarge { limit },
            FileError::Io { .. } => ApiError::Internal(Box::new(e)),
            FileError::Path(_)
            | FileError::Escapes(_)
            | FileError::Root(_)
            | FileError::BadMode(_)
            | FileError::Archive { .. }
            | FileError::Body(_) => ApiError::bad_request(code, e),
        }
    }
}

impl From<FileOrSandbox> for ApiError {
    fn from(e: FileOrSandbox) -> Self {
        match e {
            FileOrSandbox::Sandbox(s) => s.into(),
            FileOrSandbox::File(f) => f.into(),
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
        let mut resp =
            (status, Json(ErrorBody::new(self.code().as_str(), message))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if let ApiError::RangeNotSatisfiable { size } = &self {
            if let Ok(v) = prewarm_shared::content_range(None, *size).parse() {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
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
