//! The service layer between HTTP handlers (or the CLI) and the stores: the rules for what may be written.
//!
//! Handlers stay thin: they parse, call a [`Repo`] method, and map its error. The same rules
//! apply when `push --to DIR` writes to a local store without HTTP.

use std::sync::Arc;

use bytes::Bytes;
use prewarm_shared::{Digest, Manifest, ManifestError, RuntimeName, Tag};

use prewarm_client::transfer::{Fetched, Sink, Source, TransferError};
use prewarm_store::{ByteStream, Kind, Object, Store, StoreError, StoreExt, TagStore};

/// What a repository refused, or why it failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{kind} {digest} not found")]
    NotFound { kind: &'static str, digest: Digest },
    #[error("tag {name}:{tag} not found")]
    TagNotFound { name: RuntimeName, tag: Tag },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("manifest {manifest} references {count} missing block(s), first {first}; upload blocks before the manifest")]
    MissingBlocks {
        manifest: Digest,
        count: usize,
        first: Digest,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A content-addressed repository: objects plus tags.
#[derive(Clone)]
pub struct Repo {
    store: Arc<dyn Store>,
    tags: Arc<dyn TagStore>,
    location: String,
}

impl Repo {
    pub fn new(
        store: Arc<dyn Store>,
        tags: Arc<dyn TagStore>,
        location: impl Into<String>,
    ) -> Self {
        Self {
            store,
            tags,
            location: location.into(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stores a block; the store verifies the bytes while they stream.
    pub async fn put_block(&self, digest: &Digest, body: ByteStream) -> Result<(), RepoError> {
        Ok(self.store.put(Kind::Block, digest, body).await?)
    }

    /// Stores a manifest after checking its hash, its form, and that every block it needs is present.
    pub async fn put_manifest(&self, digest: &Digest, bytes: Bytes) -> Result<Manifest, RepoError> {
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::Integrity {
                kind: "manifest",
                expected: *digest,
                actual,
            }
            .into());
        }
        let manifest = Manifest::parse(&bytes)?;
        let blocks: Vec<Digest> = manifest.blocks().into_iter().collect();
        let missing = self.missing(&blocks).await?;
        if let Some(first) = missing.first() {
            return Err(RepoError::MissingBlocks {
                manifest: *digest,
                count: missing.len(),
                first: *first,
            });
        }
        self.store.put_bytes(Kind::Manifest, digest, bytes).await?;
        Ok(manifest)
    }

    /// Moves a tag; the manifest must already be stored durably.
    pub async fn set_tag(
        &self,
        name: &RuntimeName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), RepoError> {
        if self
            .store
            .head_durable(Kind::Manifest, digest)
            .await?
            .is_none()
        {
            return Err(RepoError::NotFound {
                kind: "manifest",
                digest: *digest,
            });
        }
        Ok(self.tags.set_tag(name, tag, digest).await?)
    }

    /// Removes a tag; what it pointed at stays until `prewarm gc` finds it unreferenced.
    /// Deleting a tag that does not exist is [`RepoError::TagNotFound`].
    pub async fn delete_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Digest, RepoError> {
        let digest = self.get_tag(name, tag).await?;
        self.tags.delete_tag(name, tag).await?;
        Ok(digest)
    }

    pub async fn get_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Digest, RepoError> {
        self.tags
            .get_tag(name, tag)
            .await?
            .ok_or_else(|| RepoError::TagNotFound {
                name: name.clone(),
                tag: tag.clone(),
            })
    }

    /// The subset of `digests` not stored as blocks, in the given order. Checked concurrently,
    /// against the durable tier: a block a cache still holds but the durable tier lost (an
    /// emptied bucket) is missing, so the next push uploads it again.
    pub async fn missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, RepoError> {
        use futures::{StreamExt, TryStreamExt};
        let lookups = digests.iter().copied().map(|d| {
            let store = self.store.clone();
            async move {
                store
                    .head_durable(Kind::Block, &d)
                    .await
                    .map(|h| h.is_some())
            }
        });
        let present: Vec<bool> = futures::stream::iter(lookups)
            .buffered(32)
            .try_collect()
            .await?;
        Ok(digests
            .iter()
            .zip(present)
            .filter(|(_, p)| !p)
            .map(|(d, _)| *d)
            .collect())
    }

    pub async fn get(&self, kind: Kind, digest: &Digest) -> Result<Object, RepoError> {
        self.store
            .get(kind, digest)
            .await?
            .ok_or(RepoError::NotFound {
                kind: kind.as_str(),
                digest: *digest,
            })
    }

    /// Bytes of a bounded object, verified against its digest before they are returned.
    async fn get_verified(&self, kind: Kind, digest: &Digest) -> Result<Bytes, TransferError> {
        let bytes = self
            .get(kind, digest)
            .await
            .map_err(|e| self.transfer_error(e))?
            .into_bytes()
            .await
            .map_err(|e| self.transfer_error(e.into()))?;
        prewarm_client::transfer::verify(kind.as_str(), &self.location, digest, &bytes)?;
        Ok(bytes)
    }

    fn transfer_error(&self, e: RepoError) -> TransferError {
        let at = self.location.clone();
        match e {
            RepoError::NotFound { .. } | RepoError::TagNotFound { .. } => TransferError::NotFound {
                what: e.to_string(),
                at,
            },
            RepoError::Store(StoreError::Integrity {
                kind,
                expected,
                actual,
            }) => TransferError::Integrity {
                what: kind.to_string(),
                at,
                expected,
                actual,
            },
            RepoError::Store(StoreError::Unavailable { .. }) => TransferError::Unavailable {
                at,
                message: e.to_string(),
            },
            RepoError::Manifest(_) | RepoError::MissingBlocks { .. } => TransferError::Rejected {
                at,
                code: crate::error::ErrorCode::BadManifest.as_str().into(),
                message: e.to_string(),
            },
            RepoError::Store(_) => TransferError::Other {
                at,
                message: e.to_string(),
            },
        }
    }
}

#[async_trait::async_trait]
impl Source for Repo {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn resolve_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Digest, TransferError> {
        self.get_tag(name, tag)
            .await
            .map_err(|e| self.transfer_error(e))
    }

    async fn fetch_manifest(&self, digest: &Digest) -> Result<Bytes, TransferError> {
        self.get_verified(Kind::Manifest, digest).await
    }

    async fn fetch_block(&self, digest: &Digest) -> Result<Fetched, TransferError> {
        self.get_verified(Kind::Block, digest)
            .await
            .map(Fetched::identity)
    }
}

#[async_trait::async_trait]
impl Sink for Repo {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn missing_blocks(&self, digests: &[Digest]) -> Result<Vec<Digest>, TransferError> {
        self.missing(digests)
            .await
            .map_err(|e| self.transfer_error(e))
    }

    async fn put_block(&self, digest: &Digest, bytes: Bytes) -> Result<(), TransferError> {
        self.put_block(digest, Object::from_bytes(bytes).body)
            .await
            .map_err(|e| self.transfer_error(e))
    }

    async fn put_manifest(&self, digest: &Digest, bytes: Bytes) -> Result<(), TransferError> {
        Repo::put_manifest(self, digest, bytes)
            .await
            .map(|_| ())
            .map_err(|e| self.transfer_error(e))
    }

    async fn set_tag(
        &self,
        name: &RuntimeName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), TransferError> {
        Repo::set_tag(self, name, tag, digest)
            .await
            .map_err(|e| self.transfer_error(e))
    }
}
