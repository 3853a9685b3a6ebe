//! Keeping warm-up from corrupting the shared file cache, and sealing a warm runtime read-only.
//!
//! Warm commands run with the runtime writable, and many of its files are hard links to cache
//! inodes shared with every other runtime on the node. Two defences, one preventive, one
//! detective:
//! 1. Warm commands run under bubblewrap with `--cap-drop ALL`. Cached inodes are read-only
//!    (no write bits), and without `CAP_DAC_OVERRIDE` even uid 0 cannot open them for writing
//!    (measured: with bwrap's default capabilities as root, the write succeeds). New files and
//!    directories (bytecode) can still be created, because directories are owner-writable.
//! 2. The owner can still `chmod` a file and then write it. So before the commands run, every
//!    cache inode the tree links to is snapshotted (inode, size, mtime, ctime-free mode), and
//!    checked afterwards. Any change fails the warm, and the damaged cache file is removed from
//!    the cache so it is fetched and verified again next time. (Runtimes already linked to the
//!    same inode would share the damage; that is why (1) is there.) Files the commands replaced
//!    by rename or deleted are new inodes or gone: the cache is untouched by those.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use prewarm_shared::Manifest;

use crate::pull::FileCache;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    mode: u32,
}

fn stamp(m: &fs::Metadata) -> Stamp {
    Stamp {
        ino: m.ino(),
        size: m.size(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        mode: m.mode() & 0o7777,
    }
}

/// The cache inodes a materialised tree shares, as they were before warm-up.
#[derive(Debug, Default)]
pub struct CacheSnapshot {
    linked: HashMap<PathBuf, Stamp>,
}

impl CacheSnapshot {
    /// Records every cache file that `root`'s files are hard links of. Blocking.
    pub fn take(manifest: &Manifest, cache: &FileCache, root: &Path) -> io::Result<Self> {
        let mut linked = HashMap::new();
        for (path, mode, digest, _) in manifest.files() {
            let cached = cache.path_for(digest, mode);
            if linked.contains_key(&cached) {
                continue;
            }
            let (Ok(c), Ok(t)) = (
                fs::symlink_metadata(&cached),
                fs::symlink_metadata(root.join(path.as_str())),
            ) else {
                continue;
            };
            if c.dev() == t.dev() && c.ino() == t.ino() {
                linked.insert(cached, stamp(&c));
            }
        }
        Ok(Self { linked })
    }

    pub fn len(&self) -> usize {
        self.linked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.linked.is_empty()
    }

    /// Checks every recorded inode is unchanged. Changed ones are removed from the cache;
    /// returns their cache paths (empty when all is well). Blocking.
    pub fn verify_and_evict(&self) -> Vec<PathBuf> {
        let mut bad = Vec::new();
        for (path, before) in &self.linked {
            let now = fs::symlink_metadata(path).map(|m| stamp(&m));
            if now.as_ref().ok() != Some(before) {
                tracing::error!(path = %path.display(), "a warm command modified a cached file in place; evicting it");
                if let Err(e) = fs::remove_file(path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::error!(path = %path.display(), %e, "could not evict a damaged cache file");
                    }
                }
                bad.push(path.clone());
            }
        }
        bad
    }
}

/// What sealing found in the tree.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sealed {
    pub files: u64,
    pub bytes: u64,
}

/// Removes every write bit under `root` (files first, directories deepest last), so nothing
/// changes a warm runtime after it is registered. Files that are already read-only (cache
/// links) are left alone: not even their ctime changes. Symlinks are not followed. Blocking.
pub fn seal(root: &Path) -> io::Result<Sealed> {
    let mut out = Sealed::default();
    let mut dirs = Vec::new();
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.map_err(io::Error::other)?;
        let m = e.metadata().map_err(io::Error::other)?;
        if m.is_dir() {
            dirs.push((e.into_path(), m.mode()));
            continue;
        }
        if m.is_file() {
            out.files += 1;
            out.bytes += m.len();
            if m.mode() & 0o222 != 0 {
                let mode = m.mode() & 0o555;
                fs::set_permissions(e.path(), fs::Permissions::from_mode(mode))?;
            }
        }
    }
    for (d, mode) in dirs.iter().rev() {
        fs::set_permissions(d, fs::Permissions::from_mode(mode & 0o555))?;
    }
    Ok(out)
}
