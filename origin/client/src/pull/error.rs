//! Why a pull failed: one enum naming the block, file or path involved.

use std::io;
use std::path::PathBuf;

use prewarm_shared::{Digest, ManifestError, RelPath};

use crate::transfer::TransferError;

/// Everything [`super::pull`] and its building blocks can fail with.
///
/// Each message names what was being worked on (a block, a file of the tree, a path on disk);
/// the underlying cause is the error's `source()`, so print the chain (`{:#}` with anyhow).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The source failed to deliver a tag, manifest or block.
    #[error("could not fetch {what}")]
    Fetch {
        what: String,
        /// Boxed: it is large, and `PullError` travels in every `Result` here.
        #[source]
        source: Box<TransferError>,
    },
    /// The source answered a manifest request with bytes of another manifest.
    #[error("manifest from {at} hashes to {actual}, not the requested {expected}; refused")]
    ManifestDigest {
        at: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("manifest {digest} is invalid")]
    Manifest {
        digest: Digest,
        #[source]
        source: ManifestError,
    },
    /// A block is shorter than a chunk of the manifest says it is.
    #[error("block {block} has {len} bytes, but file {path:?} needs bytes up to {needed} of it")]
    BlockTooShort {
        block: Digest,
        len: u64,
        needed: u64,
        path: RelPath,
    },
    /// A file assembled from its blocks does not hash to its content digest. Nothing was cached.
    #[error("file {path:?} assembled from its blocks hashes to {actual}, expected {expected}; not cached")]
    FileIntegrity {
        path: RelPath,
        expected: Digest,
        actual: Digest,
    },
    /// `materialise` was asked for a file that is not in the file cache.
    #[error("file {path:?} ({digest}) is not in the file cache; fetch it before materialising")]
    NotCached { path: RelPath, digest: Digest },
    /// The requested link mode cannot be used; no silent fallback to another.
    #[error("--link-mode {mode} is impossible for {path:?}: {reason}")]
    LinkImpossible {
        mode: &'static str,
        path: RelPath,
        reason: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} already exists; pass --replace to swap it atomically")]
    DestExists(PathBuf),
    #[error("{0} exists and is not a directory; refusing to replace it")]
    DestNotDir(PathBuf),
    #[error("destination {0} has no final path component")]
    BadDest(PathBuf),
    /// A signal (Ctrl-C, SIGTERM) stopped the pull; the partial tree was removed.
    #[error("interrupted; the partial tree was removed")]
    Interrupted,
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl PullError {
    /// Stable machine code, for `--json` error output.
    pub fn code(&self) -> &'static str {
        match self {
            PullError::Fetch { source, .. } => match **source {
                TransferError::NotFound { .. } => "not_found",
                TransferError::Integrity { .. } => "integrity",
                TransferError::Unauthorized { .. } => "unauthorized",
                TransferError::Unavailable { .. } => "unavailable",
                TransferError::Encoding { .. } => "bad_encoding",
                TransferError::Rejected { .. } | TransferError::Other { .. } => "fetch_failed",
            },
            PullError::ManifestDigest { .. }
            | PullError::BlockTooShort { .. }
            | PullError::FileIntegrity { .. } => "integrity",
            PullError::Manifest { .. } => "bad_manifest",
            PullError::NotCached { .. } => "not_cached",
            PullError::LinkImpossible { .. } => "link_impossible",
            PullError::DestExists(_) | PullError::DestNotDir(_) => "dest_exists",
            PullError::BadDest(_) => "bad_dest",
            PullError::Interrupted => "interrupted",
            PullError::Io { .. } => "io",
        }
    }

    pub(crate) fn fetch(what: String, source: TransferError) -> Self {
        PullError::Fetch {
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        PullError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// `.map_err(io_err("creating", &path))` in one short call.
pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(io::Error) -> PullError + 'a {
    move |e| PullError::io(action, path, e)
}
