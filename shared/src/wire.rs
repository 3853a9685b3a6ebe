//! HTTP wire types shared by origin, edge and CLI, so the two servers cannot drift.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// `GET /v1/runtimes/{name}/tags/{tag}` response and `PUT` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TagBody {
    pub digest: Digest,
}

/// `POST /v1/blocks/missing` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MissingRequest {
    pub digests: Vec<Digest>,
}

/// `POST /v1/blocks/missing` response: the subset the server lacks, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MissingResponse {
    pub missing: Vec<Digest>,
}

/// Every error response: `{"error":{"code","message"}}`. `code` is stable; `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// Most digests one `missing` request may carry (a 40k-file runtime needs far fewer blocks).
pub const MAX_MISSING_QUERY: usize = 100_000;

/// Largest block a server accepts. Chunking never produces more; it bounds memory per request.
pub const MAX_BLOCK_SIZE: u64 = 8 << 20;

/// `Cache-Control` for content-addressed responses: the bytes under a digest never change.
pub const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
