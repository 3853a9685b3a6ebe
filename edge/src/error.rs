//! The edge's one error type: each variant knows its HTTP status and stable code, and keeps its cause.

use prewarm_shared::wire::ErrorBody;
use prewarm_shared::{Digest, DigestError, NameError};

/// Why an underlying operation failed (a JS exception, a fetch error…), kept for the log only.
pub type Cause = Box<dyn std::error::Error + 'static>;

/// Everything that can go wrong while answering one request at the edge.
///
/// `Display` is the public message sent to clients; it never includes the `source` chain, which
/// may carry internal detail and is logged instead.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("no such endpoint: {path}")]
    NoRoute { path: String },
    #[error("{method} is not allowed at the edge: it serves reads only (GET, HEAD)")]
    MethodNotAllowed { method: String },
    #[error("{0} in URL")]
    BadDigest(#[from] DigestError),
    #[error("{0}")]
    BadName(#[from] NameError),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("range not satisfiable for an object of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("the origin sent bytes for {expected} that hash to {actual}; refused and not cached")]
    Integrity { expected: Digest, actual: Digest },
    #[error("the origin sent {len} bytes for {what}, more than the edge's limit of {limit}")]
    UpstreamTooLarge { what: String, len: u64, limit: u64 },
    #[error("the origin sent Content-Encoding {coding:?}; the edge accepts only zstd or identity")]
    UpstreamCoding { coding: String },
    #[error("the origin sent a zstd body for {what} that is invalid or decodes past the edge's limit; refused and not cached")]
    UpstreamDecode {
        what: String,
        #[source]
        source: crate::decode::DecodeError,
    },
    #[error("the origin sent an invalid tag body")]
    BadTagBody(#[source] serde_json::Error),
    #[error("the origin answered {status}")]
    UpstreamStatus { status: u16 },
    #[error("the origin could not be reached")]
    OriginUnreachable(#[source] Cause),
    #[error("reading a response body failed")]
    ReadFailed(#[source] Cause),
    #[error("{what} is not in the edge cache, and the request said only-if-cached")]
    NotCached { what: String },
    #[error("the origin did not answer within {ms} ms")]
    OriginTimeout { ms: u64 },
    #[error("the edge is misconfigured: {0}")]
    Config(String),
    #[error("internal error at the edge")]
    Runtime(#[source] Cause),
}

impl EdgeError {
    /// The HTTP status a client sees.
    pub fn status(&self) -> u16 {
        match self {
            EdgeError::BadDigest(_) | EdgeError::BadName(_) => 400,
            EdgeError::NoRoute { .. } | EdgeError::NotFound { .. } => 404,
            EdgeError::MethodNotAllowed { .. } => 405,
            EdgeError::RangeNotSatisfiable { .. } => 416,
            EdgeError::Config(_) | EdgeError::Runtime(_) => 500,
            EdgeError::Integrity { .. }
            | EdgeError::UpstreamTooLarge { .. }
            | EdgeError::UpstreamCoding { .. }
            | EdgeError::UpstreamDecode { .. }
            | EdgeError::BadTagBody(_)
            | EdgeError::UpstreamStatus { .. }
            | EdgeError::OriginUnreachable(_)
            | EdgeError::ReadFailed(_) => 502,
            EdgeError::OriginTimeout { .. } | EdgeError::NotCached { .. } => 504,
        }
    }

    /// Stable machine code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            EdgeError::NoRoute { .. } | EdgeError::NotFound { .. } => "not_found",
            EdgeError::MethodNotAllowed { .. } => "method_not_allowed",
            EdgeError::BadDigest(e) => e.code(),
            EdgeError::BadName(e) => e.code(),
            EdgeError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            EdgeError::Integrity { .. } => "upstream_integrity",
            EdgeError::UpstreamTooLarge { .. } => "upstream_too_large",
            EdgeError::UpstreamCoding { .. } | EdgeError::UpstreamDecode { .. } => {
                "upstream_bad_encoding"
            }
            EdgeError::BadTagBody(_) => "upstream_bad_body",
            EdgeError::UpstreamStatus { .. } => "upstream_error",
            EdgeError::OriginUnreachable(_) => "origin_unreachable",
            EdgeError::ReadFailed(_) => "read_failed",
            EdgeError::OriginTimeout { .. } => "origin_timeout",
            EdgeError::NotCached { .. } => "not_cached",
            EdgeError::Config(_) => "edge_misconfigured",
            EdgeError::Runtime(_) => "internal",
        }
    }

    /// The JSON body, `{"error":{"code","message"}}`, shared with the origin.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }

    /// Extra headers an error response needs (`Allow` on 405, `Content-Range` on 416).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        match self {
            EdgeError::MethodNotAllowed { .. } => out.push(("allow", "GET, HEAD".to_string())),
            EdgeError::RangeNotSatisfiable { size } => {
                out.push(("content-range", prewarm_shared::content_range(None, *size)));
            }
            _ => {}
        }
        out
    }

    /// The whole cause chain, for the log line the adapter writes (never sent to clients).
    pub fn log_line(&self) -> String {
        let mut line = format!("{} {}: {self}", self.status(), self.code());
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            line.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_codes_and_bodies() {
        let err = EdgeError::Integrity {
            expected: Digest::of(b"a"),
            actual: Digest::of(b"b"),
        };
        assert_eq!(err.status(), 502);
        let body = serde_json::to_value(err.body()).unwrap();
        assert_eq!(body["error"]["code"], "upstream_integrity");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&Digest::of(b"a").to_string()));
        assert_eq!(EdgeError::OriginTimeout { ms: 5 }.status(), 504);
        let bad: DigestError = "sha256:x".parse::<Digest>().unwrap_err();
        assert_eq!(EdgeError::from(bad).code(), "bad_digest");
    }

    #[test]
    fn cause_is_kept_for_logs_but_not_sent() {
        let cause: Cause = Box::new(std::io::Error::other("connection refused on 10.0.0.7"));
        let err = EdgeError::OriginUnreachable(cause);
        assert_eq!(err.status(), 502);
        assert!(!err.body().error.message.contains("10.0.0.7"));
        assert!(err.log_line().contains("connection refused on 10.0.0.7"));
    }

    #[test]
    fn extra_headers() {
        let h = EdgeError::MethodNotAllowed {
            method: "PUT".into(),
        }
        .headers();
        assert!(h.contains(&("allow", "GET, HEAD".to_string())));
        let h = EdgeError::RangeNotSatisfiable { size: 9 }.headers();
        assert!(h.contains(&("content-range", "bytes */9".to_string())));
    }
}
