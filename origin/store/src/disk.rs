//! The local-disk store: the embedded default and the hottest tier.
//!
//! Layout (versioned, fanned out so no directory grows past 65k entries):
//! ```text
//! DATA_DIR/
//! ├── blocks-v1/ab/cd/abcd…(64 hex)      block bytes, exactly as hashed
//! ├── manifests-v1/ab/cd/abcd…           canonical manifest JSON
//! ├── tags-v1/<name>/<tag>               `sha256:…` text of the manifest a tag points at
//! └── tmp/                               in-flight writes; emptied at open
//! ```
//! Writes go to `tmp/` (same filesystem), are hashed while streaming, fsynced, and renamed into
//! place only if the hash matches. A crash leaves at most a file in `tmp/`, never a truncated
//! object under its real name.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use prewarm_shared::{Digest, Hasher, RuntimeName, Tag};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::{ByteStream, Kind, Object, Store, StoreError, TagStore};

const NAME: &str = "disk";

/// Content-addressed files under one data directory.
#[derive(Debug, Clone)]
pub struct DiskStore {
    root: PathBuf,
}

impl DiskStore {
    /// Opens (creating if needed) a store at `root` and clears leftovers of interrupted writes.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let tmp = root.join("tmp");
        if tokio::fs::try_exists(&tmp).await.map_err(err)? {
            tokio::fs::remove_dir_all(&tmp).await.map_err(err)?;
        }
        for d in ["blocks-v1", "manifests-v1", "tags-v1", "tmp"] {
            tokio::fs::create_dir_all(root.join(d)).await.map_err(err)?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an object lives (whether or not it exists yet).
    pub fn object_path(&self, kind: Kind, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        let top = match kind {
            Kind::Block => "blocks-v1",
            Kind::Manifest => "manifests-v1",
        };
        self.root
            .join(top)
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex)
    }

    fn tag_path(&self, name: &RuntimeName, tag: &Tag) -> PathBuf {
        self.root
            .join("tags-v1")
            .join(name.as_str())
            .join(tag.as_str())
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{:016x}", rand::random::<u64>()))
    }

    /// Renames a finished temp file to its final name (atomic on one filesystem); on failure
    /// the temp file is removed, so nothing is left half-installed.
    async fn install(&self, tmp: &Path, dest: &Path) -> Result<(), StoreError> {
        let renamed = async {
            if let Some(dir) = dest.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::rename(tmp, dest).await
        }
        .await;
        if let Err(e) = renamed {
            let _ = tokio::fs::remove_file(tmp).await;
            return Err(err(e));
        }
        Ok(())
    }

    /// Writes `body` to a temp file, fsyncs, and hands back its path and digest.
    async fn write_temp(&self, mut body: ByteStream) -> Result<(PathBuf, Digest), StoreError> {
        let tmp = self.temp_path();
        let result = async {
            let mut f = tokio::fs::File::create(&tmp).await.map_err(err)?;
            let mut h = Hasher::new();
            while let Some(piece) = body.next().await {
                let piece = piece?;
                h.update(&piece);
                f.write_all(&piece).await.map_err(err)?;
            }
            f.sync_all().await.map_err(err)?;
            Ok(h.finish())
        }
        .await;
        match result {
            Ok(d) => Ok((tmp, d)),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }
}

fn err(e: std::io::Error) -> StoreError {
    StoreError::other(NAME, e)
}

async fn open_if_exists(path: &Path) -> Result<Option<tokio::fs::File>, StoreError> {
    match tokio::fs::File::open(path).await {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e)),
    }
}

#[async_trait::async_trait]
impl Store for DiskStore {
    fn name(&self) -> &str {
        NAME
    }

    async fn get(&self, kind: Kind, digest: &Digest) -> Result<Option<Object>, StoreError> {
        let Some(f) = open_if_exists(&self.object_path(kind, digest)).await? else {
            return Ok(None);
        };
        let size = f.metadata().await.map_err(err)?.len();
        let body = ReaderStream::with_capacity(f, 64 * 1024)
            .map(|r| r.map_err(err))
            .boxed();
        Ok(Some(Object { size, body }))
    }

    async fn get_range(
        &self,
        kind: Kind,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<Option<Object>, StoreError> {
        let Some(mut f) = open_if_exists(&self.object_path(kind, digest)).await? else {
            return Ok(None);
        };
        let size = f.metadata().await.map_err(err)?.len();
        super::check_range(NAME, &range, size)?;
        f.seek(SeekFrom::Start(range.start)).await.map_err(err)?;
        let len = range.end - range.start;
        let body = ReaderStream::with_capacity(f.take(len), 64 * 1024)
            .map(|r| r.map_err(err))
            .boxed();
        Ok(Some(Object { size: len, body }))
    }

    async fn head(&self, kind: Kind, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match tokio::fs::metadata(self.object_path(kind, digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    async fn put(&self, kind: Kind, digest: &Digest, body: ByteStream) -> Result<(), StoreError> {
        let (tmp, actual) = self.write_temp(body).await?;
        if actual != *digest {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(StoreError::Integrity {
                kind: kind.as_str(),
                expected: *digest,
                actual,
            });
        }
        self.install(&tmp, &self.object_path(kind, digest)).await
    }

    async fn delete(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.object_path(kind, digest)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl TagStore for DiskStore {
    async fn get_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Option<Digest>, StoreError> {
        match tokio::fs::read_to_string(self.tag_path(name, tag)).await {
            Ok(s) => s.trim().parse().map(Some).map_err(|e| {
                StoreError::other(NAME, format!("tag file {name}:{tag} is corrupt: {e}"))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    async fn set_tag(
        &self,
        name: &RuntimeName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let bytes = bytes::Bytes::from(digest.to_string());
        let (tmp, _) = self.write_temp(Object::from_bytes(bytes).body).await?;
        self.install(&tmp, &self.tag_path(name, tag)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[tokio::test]
    async fn conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).await.unwrap();
        conformance::run_all(&store).await;
        conformance::tags(&store).await;
    }

    #[tokio::test]
    async fn interrupted_write_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).await.unwrap();
        let d = Digest::of(b"abcdef");
        // A body that fails half-way, like a client that hangs up mid-upload.
        let body = futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"abc")),
            Err(StoreError::other("test", "connection reset")),
        ])
        .boxed();
        assert!(store.put(Kind::Block, &d, body).await.is_err());
        assert!(store.head(Kind::Block, &d).await.unwrap().is_none());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        // A crash leaves a temp file; reopening clears it.
        std::fs::write(dir.path().join("tmp/leftover"), b"abc").unwrap();
        DiskStore::open(dir.path()).await.unwrap();
        assert!(!dir.path().join("tmp/leftover").exists());
    }
}
