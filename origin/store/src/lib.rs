//! One storage trait with a written contract, and its backends.
//!
//! Backends map their failures into [`StoreError`]'s few kinds; composing (tiers, limits,
//! metrics) is done by decorators that implement [`Store`] too.

mod disk;
mod listing;
mod memory;
mod metrics;
mod ram;
mod records;
mod redis;
mod s3;
mod secret;
mod tier;
mod tiered;

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use prewarm_shared::{Digest, RuntimeName, Tag};

pub use disk::{Damage, DamagedObject, DiskStore, StoreVerifyReport, VERIFY_BEFORE_SERVING};
pub use listing::{Listed, TagEntry};
pub use memory::MemoryStore;
pub use metrics::{
    Health, MetricsSnapshot, RamMetrics, ReadMetrics, TierHealth, TierMetrics, MEMORY_TIER,
};
pub use ram::{RamCache, RamCacheDefaults};
pub use records::{BadRecordKey, RecordKey, Records, MAX_RECORD_BYTES};
pub use redis::{RedisClientCert, RedisOptions, RedisStore, RedisTls};
pub use s3::{S3Credentials, S3Options, S3Store};
pub use secret::{Secret, SecretUrl};
pub use tier::{Budget, Probe, Role, Tier};
pub use tiered::{TierStackError, Tiered};

/// The two content-addressed namespaces. Same digest type, separate key spaces, so a manifest
/// can never be served as a block or the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Block,
    Manifest,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Block => "block",
            Kind::Manifest => "manifest",
        }
    }
}

/// A stream of bytes from or into a store.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// Bytes coming out of a store: `size` is the length of `body` (the range's length for ranges).
pub struct Object {
    pub size: u64,
    pub body: ByteStream,
}

impl Object {
    /// An object from bytes already in memory.
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self {
            size: bytes.len() as u64,
            body: futures::stream::once(async move { Ok(bytes) }).boxed(),
        }
    }

    /// Collects the body. Only for objects known to be bounded (blocks, manifests under the limit).
    /// A body that arrives as one piece (memory, a small disk read) is returned without a copy.
    pub async fn into_bytes(mut self) -> Result<Bytes, StoreError> {
        let first = match self.body.next().await {
            Some(piece) => piece?,
            None => return Ok(Bytes::new()),
        };
        let Some(second) = self.body.next().await else {
            return Ok(first);
        };
        let mut buf = bytes::BytesMut::with_capacity(
            self.size.min(prewarm_shared::wire::MAX_BLOCK_SIZE) as usize,
        );
        buf.extend_from_slice(&first);
        buf.extend_from_slice(&second?);
        while let Some(piece) = self.body.next().await {
            buf.extend_from_slice(&piece?);
        }
        Ok(buf.freeze())
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// What went wrong in a store, in the few kinds callers act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Bytes did not hash to their digest. Nothing was stored.
    #[error("{kind} {expected}: content hashes to {actual}")]
    Integrity {
        kind: &'static str,
        expected: Digest,
        actual: Digest,
    },
    /// The backend could not be reached or refused service; retrying later may work.
    #[error("store {store} is unavailable: {source}")]
    Unavailable {
        store: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Anything else (disk full, permissions, a protocol surprise).
    #[error("store {store} failed: {source}")]
    Other {
        store: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub fn other(store: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Other {
            store: store.to_string(),
            source: e.into(),
        }
    }

    pub fn unavailable(
        store: &str,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Unavailable {
            store: store.to_string(),
            source: e.into(),
        }
    }
}

/// A content-addressed object store.
///
/// # Contract
/// - `put` is atomic: a partial object is never visible under its digest, even after a crash.
/// - `put` verifies: the bytes must hash to `digest`, else [`StoreError::Integrity`] and
///   nothing is stored. Content always matches its digest.
/// - `put` of a digest already present is idempotent and succeeds.
/// - A miss is `Ok(None)` (or `Ok(false)`), never an error. Errors mean the store failed.
/// - `get_range` takes a range already clamped to the object's size by the caller (see
///   [`Store::head`]); a range past the end is an error.
/// - `list` names every complete object of a kind with its size and a `written` time that is
///   never earlier than the put that made it visible ([`Listed::written`]); an object whose
///   put is still under way is not listed. Garbage collection relies on it: it spares what is
///   younger than its grace period.
/// - `quarantine` takes an object found damaged out of every lookup (kept aside for
///   inspection where the backend can): afterwards it reads as a miss, so `missing-blocks`
///   asks for it and the next push repairs it. Quarantining a missing object succeeds.
///
/// # Cancel safety
/// Dropping a `put` future leaves at most a temporary file or an aborted upload, never a
/// visible partial object.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short name for logs and errors (`disk`, `redis`, `s3`…).
    fn name(&self) -> &str;

    async fn get(&self, kind: Kind, digest: &Digest) -> Result<Option<Object>, StoreError>;

    async fn get_range(
        &self,
        kind: Kind,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<Option<Object>, StoreError>;

    /// The object's size if present.
    async fn head(&self, kind: Kind, digest: &Digest) -> Result<Option<u64>, StoreError>;

    async fn put(&self, kind: Kind, digest: &Digest, body: ByteStream) -> Result<(), StoreError>;

    /// Removes the object; deleting a missing object succeeds.
    async fn delete(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError>;

    /// Every object of `kind`, for garbage collection (see the contract).
    async fn list(&self, kind: Kind) -> Result<Vec<Listed>, StoreError>;

    /// Takes a damaged object out of every lookup (see the contract).
    async fn quarantine(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError>;

    /// The object's size in the tier whose word is final: the one writes are acknowledged
    /// from. A single store is its own durable tier, hence the default; a tier stack answers
    /// from its durable tier alone, so `missing-blocks` never calls a block present because a
    /// cache still holds it while the durable copy is gone.
    async fn head_durable(&self, kind: Kind, digest: &Digest) -> Result<Option<u64>, StoreError> {
        self.head(kind, digest).await
    }
}

/// Checks a range against an object's size, as the [`Store::get_range`] contract requires.
pub(crate) fn check_range(store: &str, range: &Range<u64>, size: u64) -> Result<(), StoreError> {
    if range.start > range.end || range.end > size {
        return Err(StoreError::other(
            store,
            format!("range {range:?} outside object of {size} bytes"),
        ));
    }
    Ok(())
}

/// The bytes of `range` in an object already in memory, checked like [`check_range`].
pub(crate) fn slice_range(
    store: &str,
    bytes: Bytes,
    range: Range<u64>,
) -> Result<Object, StoreError> {
    check_range(store, &range, bytes.len() as u64)?;
    Ok(Object::from_bytes(
        bytes.slice(range.start as usize..range.end as usize),
    ))
}

/// Mutable names: tags that point at manifests.
///
/// # Contract
/// `set_tag` replaces atomically: readers see the old digest or the new one, never neither.
/// `delete_tag` of a missing tag succeeds. `list_tags` names every tag with its digest; a tag
/// it cannot read is an error, never skipped (garbage collection takes tags as its roots).
#[async_trait::async_trait]
pub trait TagStore: Send + Sync + 'static {
    async fn get_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Option<Digest>, StoreError>;
    async fn set_tag(
        &self,
        name: &RuntimeName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), StoreError>;
    async fn delete_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<(), StoreError>;
    async fn list_tags(&self) -> Result<Vec<TagEntry>, StoreError>;
}

/// Helpers every store gets for free.
#[async_trait::async_trait]
pub trait StoreExt: Store {
    async fn exists(&self, kind: Kind, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.head(kind, digest).await?.is_some())
    }

    async fn put_bytes(&self, kind: Kind, digest: &Digest, bytes: Bytes) -> Result<(), StoreError> {
        self.put(kind, digest, Object::from_bytes(bytes).body).await
    }

    async fn get_bytes(&self, kind: Kind, digest: &Digest) -> Result<Option<Bytes>, StoreError> {
        match self.get(kind, digest).await? {
            Some(o) => Ok(Some(o.into_bytes().await?)),
            None => Ok(None),
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(test)]
mod fault_tests;
#[cfg(any(test, feature = "testing"))]
mod test_services;
#[cfg(any(test, feature = "testing"))]
pub use test_services::test_service_env;
