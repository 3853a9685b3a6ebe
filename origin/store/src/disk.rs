//! The local-disk store: the embedded default and the hottest tier.
//!
//! Layout (versioned, fanned out so no directory grows past 65k entries):
//! ```text
//! DATA_DIR/
//! ├── blocks-v1/ab/cd/abcd…(64 hex)      block bytes, exactly as hashed
//! ├── manifests-v1/ab/cd/abcd…           canonical manifest JSON
//! ├── tags-v1/<name>/<tag>               `sha256:…` text of the manifest a tag points at
//! ├── quarantine-v1/<path, / as _>.<rnd> damaged objects moved aside (kept for inspection)
//! └── tmp/                               in-flight writes; emptied at open
//! ```
//! Writes go to `tmp/` (same filesystem), are hashed while streaming, flushed with every write
//! error surfaced, fsynced, checked to hold exactly the bytes hashed, and renamed into place
//! only if the hash matches; then the directory is fsynced. A crash or a full disk leaves at
//! most a file in `tmp/`, never a truncated object under its real name.
//!
//! Reads check too, so damage done behind the store's back (a disk error, an older version's
//! short writes, a hand edit) is never served: a whole-object read verifies the hash (before
//! returning, up to [`VERIFY_BEFORE_SERVING`]; at the end of the stream above it), and `head`
//! checks what the size alone can tell. A damaged file is moved into `quarantine-v1/` and the
//! object reported missing, so `missing-blocks` asks for it and the next push repairs it.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use prewarm_shared::{Digest, Hasher, RuntimeName, Tag};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{ByteStream, Kind, Listed, Object, Store, StoreError, TagEntry, TagStore};

mod listing;
mod quarantine;
mod records;
mod verify;
mod write;

pub use quarantine::Damage;
use quarantine::QUARANTINE_DIR;
pub(crate) use quarantine::{identity, plausible_size};
pub use verify::{DamagedObject, StoreVerifyReport};

const NAME: &str = "disk";

/// Objects up to this size are read whole and verified before a byte is served, so damage
/// reads as a miss. Bigger ones are streamed and checked at the end: damage then ends the
/// body with an error (the client sees a short response), and the object is missing from the
/// next request on.
pub const VERIFY_BEFORE_SERVING: u64 = 1 << 20;

/// Content-addressed files under one data directory.
#[derive(Debug, Clone)]
pub struct DiskStore {
    root: PathBuf,
    /// Objects moved into `quarantine-v1/` since open (shared by clones).
    quarantined: Arc<AtomicU64>,
}

impl DiskStore {
    /// Opens (creating if needed) a store at `root` and clears leftovers of interrupted writes.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let tmp = root.join("tmp");
        if tokio::fs::try_exists(&tmp).await.map_err(err)? {
            tokio::fs::remove_dir_all(&tmp).await.map_err(err)?;
        }
        for d in [
            "blocks-v1",
            "manifests-v1",
            "tags-v1",
            QUARANTINE_DIR,
            "tmp",
        ] {
            tokio::fs::create_dir_all(root.join(d)).await.map_err(err)?;
        }
        Ok(Self {
            root,
            quarantined: Arc::default(),
        })
    }

    /// A handle on an existing store that changes nothing on the way in (unlike [`open`],
    /// which clears `tmp/`), for tools that run beside a live server (`prewarm store verify`).
    ///
    /// [`open`]: DiskStore::open
    pub fn beside_server(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            quarantined: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an object lives (whether or not it exists yet).
    pub fn object_path(&self, kind: Kind, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.kind_dir(kind)
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex)
    }

    /// The top directory of one kind's objects.
    fn kind_dir(&self, kind: Kind) -> PathBuf {
        self.root.join(match kind {
            Kind::Block => "blocks-v1",
            Kind::Manifest => "manifests-v1",
        })
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
}

fn err(e: std::io::Error) -> StoreError {
    StoreError::other(NAME, e)
}

pub(crate) fn is_eio(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error())
}

/// The damage a non-file or a file of an impossible size shows.
fn shape_damage(m: &std::fs::Metadata) -> Damage {
    if m.is_file() {
        Damage::ImpossibleSize
    } else {
        Damage::Stray
    }
}

type Opened = (PathBuf, tokio::fs::File, std::fs::Metadata);

impl DiskStore {
    /// The open object file, or `None` if it is missing or its size alone shows it damaged
    /// (then it is quarantined).
    async fn open_object(&self, kind: Kind, digest: &Digest) -> Result<Option<Opened>, StoreError> {
        let path = self.object_path(kind, digest);
        let f = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let m = f.metadata().await.map_err(err)?;
        if !m.is_file() || !plausible_size(kind, digest, m.len()) {
            self.quarantine(&path, Some(identity(&m)), shape_damage(&m));
            return Ok(None);
        }
        Ok(Some((path, f, m)))
    }

    /// A whole object streamed and hashed on the way: if the bytes turn out wrong, the file is
    /// quarantined and the stream ends with [`StoreError::Integrity`] instead of finishing.
    fn verifying_stream(&self, kind: Kind, digest: Digest, opened: Opened) -> ByteStream {
        let (path, f, m) = opened;
        let id = identity(&m);
        let store = self.clone();
        let mut h = Some(Hasher::new());
        ReaderStream::with_capacity(f, 64 * 1024)
            .map(Some)
            .chain(futures::stream::once(async { None }))
            .filter_map(move |piece| {
                let out = match piece {
                    Some(Ok(b)) => {
                        if let Some(h) = h.as_mut() {
                            h.update(&b);
                        }
                        Some(Ok(b))
                    }
                    Some(Err(e)) => {
                        if is_eio(&e) {
                            store.quarantine(&path, Some(id), Damage::Unreadable);
                        }
                        h = None;
                        Some(Err(err(e)))
                    }
                    None => h.take().and_then(|h| {
                        let actual = h.finish();
                        (actual != digest).then(|| {
                            store.quarantine(&path, Some(id), Damage::HashMismatch);
                            Err(StoreError::Integrity {
                                kind: kind.as_str(),
                                expected: digest,
                                actual,
                            })
                        })
                    }),
                };
                std::future::ready(out)
            })
            .boxed()
    }

    /// Reads a whole object and verifies it; damage is quarantined and reads as `None`.
    async fn read_verified(
        &self,
        digest: &Digest,
        opened: Opened,
    ) -> Result<Option<Bytes>, StoreError> {
        let (path, mut f, m) = opened;
        let mut buf = Vec::with_capacity(m.len() as usize);
        if let Err(e) = f.read_to_end(&mut buf).await {
            if is_eio(&e) {
                self.quarantine(&path, Some(identity(&m)), Damage::Unreadable);
                return Ok(None);
            }
            return Err(err(e));
        }
        Ok(self.check_bytes(digest, &path, Some(identity(&m)), Bytes::from(buf)))
    }

    /// `bytes`, just read from `path` (the file `seen`), if they are `digest`'s; otherwise the
    /// file is quarantined and the answer is `None`.
    pub(crate) fn check_bytes(
        &self,
        digest: &Digest,
        path: &Path,
        seen: Option<(u64, u64)>,
        bytes: Bytes,
    ) -> Option<Bytes> {
        if Digest::of(&bytes) == *digest {
            return Some(bytes);
        }
        self.quarantine(path, seen, Damage::HashMismatch);
        None
    }
}

#[async_trait::async_trait]
impl Store for DiskStore {
    fn name(&self) -> &str {
        NAME
    }

    async fn get(&self, kind: Kind, digest: &Digest) -> Result<Option<Object>, StoreError> {
        let Some(opened) = self.open_object(kind, digest).await? else {
            return Ok(None);
        };
        let size = opened.2.len();
        if size <= VERIFY_BEFORE_SERVING {
            let bytes = self.read_verified(digest, opened).await?;
            return Ok(bytes.map(Object::from_bytes));
        }
        Ok(Some(Object {
            size,
            body: self.verifying_stream(kind, *digest, opened),
        }))
    }

    /// Ranges are served unverified (checking one means reading the whole object); the size is
    /// checked, and a whole-object read or `prewarm store verify` catches the rest.
    async fn get_range(
        &self,
        kind: Kind,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<Option<Object>, StoreError> {
        let Some((_, mut f, m)) = self.open_object(kind, digest).await? else {
            return Ok(None);
        };
        super::check_range(NAME, &range, m.len())?;
        f.seek(SeekFrom::Start(range.start)).await.map_err(err)?;
        let len = range.end - range.start;
        let body = ReaderStream::with_capacity(f.take(len), 64 * 1024)
            .map(|r| r.map_err(err))
            .boxed();
        Ok(Some(Object { size: len, body }))
    }

    /// The size on disk, unless it alone shows the file damaged (then it is quarantined and
    /// the object is missing). A file of a plausible size with wrong bytes still counts as
    /// present until a whole read or `prewarm store verify` finds it.
    async fn head(&self, kind: Kind, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let path = self.object_path(kind, digest);
        match tokio::fs::symlink_metadata(&path).await {
            Ok(m) if m.is_file() && plausible_size(kind, digest, m.len()) => Ok(Some(m.len())),
            Ok(m) => {
                self.quarantine(&path, Some(identity(&m)), shape_damage(&m));
                Ok(None)
            }
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

    async fn list(&self, kind: Kind) -> Result<Vec<Listed>, StoreError> {
        self.list_objects(kind).await
    }

    async fn quarantine(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError> {
        self.quarantine_object(kind, digest);
        Ok(())
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

    async fn delete_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.tag_path(name, tag)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
            _ => Ok(()),
        }
    }

    async fn list_tags(&self) -> Result<Vec<TagEntry>, StoreError> {
        self.list_tag_files().await
    }
}

#[cfg(test)]
mod tests;
