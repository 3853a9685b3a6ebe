//! Damaged objects found on disk: moved aside into `quarantine-v1/` and reported missing, so the next push repairs them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use prewarm_shared::wire::MAX_BLOCK_SIZE;
use prewarm_shared::Digest;

use super::DiskStore;
use crate::Kind;

/// Why an object file was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// Its bytes do not hash to the digest in its name.
    HashMismatch,
    /// Its length cannot be that of its digest's bytes (empty, or a block over the size limit).
    ImpossibleSize,
    /// Reading it failed with `EIO`: the disk lost the bytes.
    Unreadable,
    /// Not a regular file, or a name that is not a digest in its fan-out directory.
    Stray,
}

impl Damage {
    /// A few words for logs and the human report.
    pub fn describe(self) -> &'static str {
        match self {
            Damage::HashMismatch => "content does not match its digest",
            Damage::ImpossibleSize => "size impossible for its digest",
            Damage::Unreadable => "unreadable (I/O error)",
            Damage::Stray => "not an object file where objects live",
        }
    }
}

/// Whether a file of `len` bytes could hold `digest`'s object of `kind`: the only checks
/// possible without reading it (no object is empty but the empty one, no block is over the
/// limit).
pub(crate) fn plausible_size(kind: Kind, digest: &Digest, len: u64) -> bool {
    if len == 0 {
        return *digest == Digest::of(b"");
    }
    kind != Kind::Block || len <= MAX_BLOCK_SIZE
}

impl DiskStore {
    /// Moves the damaged file at `path` into `quarantine-v1/` (kept for inspection, out of
    /// every lookup) and counts it. `seen` is the (device, inode) that was found damaged: if
    /// the name now holds another file (a put repaired it meanwhile), that one is left alone.
    /// Failures are logged, not returned: the caller reports the object missing either way.
    /// Returns where the file went, if it was moved.
    pub(crate) fn quarantine(
        &self,
        path: &Path,
        seen: Option<(u64, u64)>,
        why: Damage,
    ) -> Option<PathBuf> {
        if let Some(seen) = seen {
            match std::fs::symlink_metadata(path) {
                Ok(m) if (m.dev(), m.ino()) == seen => {}
                _ => return None,
            }
        }
        let dest = self.quarantine_path(path);
        if let Some(dir) = dest.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::rename(path, &dest) {
            Ok(()) => {
                self.quarantined.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    path = %path.display(),
                    moved_to = %dest.display(),
                    problem = why.describe(),
                    "damaged object quarantined; it is reported missing until pushed again"
                );
                Some(dest)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, problem = why.describe(), "could not quarantine a damaged object");
                None
            }
        }
    }

    /// A fresh name in `quarantine-v1/` for a file now at `path`: its path under the data dir
    /// with `/` as `_`, and a random suffix so repeated damage keeps every copy.
    fn quarantine_path(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let flat = rel.to_string_lossy().replace('/', "_");
        self.root
            .join(QUARANTINE_DIR)
            .join(format!("{flat}.{:08x}", rand::random::<u32>()))
    }

    /// How many objects this store has quarantined since it was opened.
    pub fn quarantined(&self) -> u64 {
        self.quarantined.load(Ordering::Relaxed)
    }
}

/// Where damaged objects go, under the data directory.
pub(crate) const QUARANTINE_DIR: &str = "quarantine-v1";

/// (device, inode) of an open file's metadata, to tell whether a name still holds it.
pub(crate) fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}
