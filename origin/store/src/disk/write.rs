//! The disk store's write path: temp file, hash while streaming, flush, fsync, check the length, rename, fsync the directory.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use prewarm_shared::{Digest, Hasher};
use tokio::io::AsyncWriteExt;

use super::{err, DiskStore};
use crate::{ByteStream, StoreError};

/// The steps of a write, in order. Tests stop a child process at each one and `kill -9` it
/// (see `tests::kill_9_at_every_step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The temp file exists, empty.
    Created,
    /// Some of the body has been handed to the file.
    Writing,
    /// Every byte was written and `flush` reported no error.
    Flushed,
    /// The temp file was fsynced and its length checked.
    Synced,
    /// The temp file now has the object's name.
    Renamed,
    /// The directory entry is on disk too.
    DirSynced,
}

#[cfg(test)]
impl Step {
    pub(crate) const ALL: [Step; 6] = [
        Step::Created,
        Step::Writing,
        Step::Flushed,
        Step::Synced,
        Step::Renamed,
        Step::DirSynced,
    ];
}

impl DiskStore {
    /// Writes `body` to a temp file and makes sure all of it is on disk: every write error is
    /// surfaced (tokio's `File` reports a failed background write only on a later write or
    /// `flush`, never on `sync_all`), the file is fsynced, and its length must equal the bytes
    /// hashed. Hands back its path and digest; on any failure the temp file is removed.
    pub(super) async fn write_temp(
        &self,
        mut body: ByteStream,
    ) -> Result<(PathBuf, Digest), StoreError> {
        let tmp = self.temp_path();
        let result = async {
            let mut f = tokio::fs::File::create(&tmp).await.map_err(err)?;
            step(Step::Created);
            let mut h = Hasher::new();
            while let Some(piece) = body.next().await {
                let piece = piece?;
                h.update(&piece);
                f.write_all(&piece).await.map_err(err)?;
                step(Step::Writing);
            }
            f.flush().await.map_err(err)?;
            step(Step::Flushed);
            f.sync_all().await.map_err(err)?;
            let on_disk = f.metadata().await.map_err(err)?.len();
            if on_disk != h.len() {
                return Err(StoreError::other(
                    super::NAME,
                    format!(
                        "temp file holds {on_disk} bytes after writing {}; not installing it",
                        h.len()
                    ),
                ));
            }
            step(Step::Synced);
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

    /// Renames a finished temp file to its final name (atomic on one filesystem), then fsyncs
    /// the directory so the name survives a power loss, and the directories above it up to
    /// the data directory when this write created them (a new fan-out directory's own name
    /// must be on disk too). If the rename fails the temp file is removed, so nothing is left
    /// half-installed.
    pub(super) async fn install(&self, tmp: &Path, dest: &Path) -> Result<(), StoreError> {
        let dir = dest.parent().map(Path::to_path_buf);
        let mut to_sync = Vec::new();
        let renamed = async {
            if let Some(dir) = &dir {
                to_sync.push(dir.clone());
                let mut missing = dir.as_path();
                while !tokio::fs::try_exists(missing).await? && missing != self.root {
                    let Some(parent) = missing.parent() else {
                        break;
                    };
                    to_sync.push(parent.to_path_buf());
                    missing = parent;
                }
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::rename(tmp, dest).await
        }
        .await;
        if let Err(e) = renamed {
            let _ = tokio::fs::remove_file(tmp).await;
            return Err(err(e));
        }
        step(Step::Renamed);
        tokio::task::spawn_blocking(move || {
            to_sync
                .iter()
                .try_for_each(|d| std::fs::File::open(d)?.sync_all())
        })
        .await
        .map_err(|e| StoreError::other(super::NAME, e))?
        .map_err(err)?;
        step(Step::DirSynced);
        Ok(())
    }
}

/// Where the crash test's child stops to be killed; nothing outside tests.
#[cfg(not(test))]
fn step(_: Step) {}

#[cfg(test)]
fn step(s: Step) {
    super::tests::crash_point(s);
}
