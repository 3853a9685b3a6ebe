//! The crate's one error type: bad traces, bad catalogs, bad options, and the files behind them.

use std::path::PathBuf;

/// What went wrong reading a trace or a catalog, or running a simulation.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("unknown policy {0:?}: expected one of none, keepalive, popular, user-history, hybrid, prewarm")]
    UnknownPolicy(String),
    #[error("{0}")]
    Invalid(String),
    #[error("plotting {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
}

impl PredictError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}
