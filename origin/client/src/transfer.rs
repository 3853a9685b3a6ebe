//! The two sides push and pull talk to: a [`Source`] of manifests and blocks, a [`Sink`] for them.
//!
//! An origin over HTTP ([`crate::remote::Remote`]) is both; so is the server's local repository
//! (`prewarm_server::repo::Repo`), which is how `push --to DIR` works without HTTP.

use bytes::Bytes;
use prewarm_shared::{Digest, RuntimeName, Tag};

/// Why a transfer failed, in the kinds a caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{what} not found at {at}")]
    NotFound { what: String, at: String },
    /// Bytes that do not hash to the digest they were asked for. Never used, never cached.
    #[error("{what} from {at} is corrupt: expected {expected}, got {actual}")]
    Integrity {
        what: String,
        at: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{at} refused the credentials: {message}")]
    Unauthorized { at: String, message: String },
    /// The other side understood and refused (bad input, too large, missing blocks).
    #[error("{at} rejected the request ({code}): {message}")]
    Rejected {
        at: String,
        code: String,
        message: String,
    },
    /// The other side is down, timed out, or failing; retrying later may work.
    #[error("{at} is unavailable: {message}")]
    Unavailable { at: String, message: String },
    /// A body in a content coding that was not asked for or cannot be read, or one that
    /// decodes past the size it may have (a zstd bomb). Never used, never cached.
    #[error("{what} from {at} has a bad content coding: {message}")]
    Encoding {
        what: String,
        at: String,
        message: String,
    },
    #[error("{at}: {message}")]
    Other { at: String, message: String },
}

/// A verified block and what it cost to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The block's bytes, which hash to its digest.
    pub bytes: Bytes,
    /// Body bytes received for it: fewer than `bytes.len()` when it travelled compressed.
    pub wire_bytes: u64,
}

impl Fetched {
    /// A block that travelled as it is (or never travelled: a local store).
    pub fn identity(bytes: Bytes) -> Self {
        let wire_bytes = bytes.len() as u64;
        Self { bytes, wire_bytes }
    }
}

/// Checks bytes against the digest they were fetched under.
pub fn verify(what: &str, at: &str, expected: &Digest, bytes: &[u8]) -> Result<(), TransferError> {
    let actual = Digest::of(bytes);
    if actual == *expected {
        Ok(())
    } else {
        Err(TransferError::Integrity {
            what: what.to_string(),
            at: at.to_string(),
            expected: *expected,
            actual,
        })
    }
}

/// Where manifests and blocks come from.
///
/// # Contract
/// Implementations verify what they return: `fetch_manifest(d)` and `fetch_block(d)` yield bytes
/// that hash to `d`, or [`TransferError::Integrity`].
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// Where this is, for messages (`http://…`, `/var/lib/prewarm`).
    fn location(&self) -> String;
    async fn resolve_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Digest, TransferError>;
    async fn fetch_manifest(&self, digest: &Digest) -> Result<Bytes, TransferError>;
    async fn fetch_block(&self, digest: &Digest) -> Result<Fetched, TransferError>;
}

/// Where push sends things. Order matters to readers: blocks, then the manifest (refused if
/// any block is missing), then the tag (refused if the manifest is missing).
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    fn location(&self) -> String;
    /// The subset of `digests` the sink lacks, in the order given.
    async fn missing_blocks(&self, digests: &[Digest]) -> Result<Vec<Digest>, TransferError>;
    async fn put_block(&self, digest: &Digest, bytes: Bytes) -> Result<(), TransferError>;
    async fn put_manifest(&self, digest: &Digest, bytes: Bytes) -> Result<(), TransferError>;
    async fn set_tag(
        &self,
        name: &RuntimeName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), TransferError>;
}
