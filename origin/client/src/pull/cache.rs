//! The file-level content-addressed cache that pull assembles into and materialises from.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use prewarm_shared::{Digest, Hasher};

use super::error::{io_err, PullError};

mod verify;

pub use verify::{Damaged, Problem, VerifyReport};

/// Versioned name of the files bucket; bump it if the naming or mode rule ever changes.
const FILES_DIR: &str = "files-v1";
const TMP_DIR: &str = "tmp";
/// Symlinks to the staging trees pulls are building from this cache.
const STAGING_DIR: &str = "staging";
/// Scratch directories older than this belong to a pull that crashed; `open` removes them.
const STALE_SCRATCH: Duration = Duration::from_secs(24 * 3600);

/// Holds a [`FileCache::lock`] until dropped (closing the file releases the lock).
#[derive(Debug)]
pub struct CacheLock(#[allow(dead_code)] fs::File);

/// Whole files by content digest and mode, so a runtime is materialised by hard links instead
/// of being rebuilt from blocks. Shared by every runtime and version pulled on the host: a file
/// that did not change between two versions is downloaded and stored once.
///
/// ```text
/// $CACHE_DIR/                      default: see `default_cache_dir`
/// ├── files-v1/                    versioned bucket
/// │   ├── 3f/
/// │   │   ├── 3fa9…e1.555          <sha256 hex of content>.<octal cache mode>, read-only
/// │   │   └── 3fa9…e1.444          same bytes, other mode: another inode
/// │   └── …                        256 fan-out dirs (first byte of the digest), made on demand
/// ├── tmp/
/// │   └── <pid>-<rand>/            one per running fetch: files being assembled, removed at the
/// │                                end; a crashed pull's leftovers are swept after 24 h
/// └── staging/
///     └── <rand> -> /…/.NAME.prewarm-tmp-<rand>   one per tree being materialised (beside its
///                                  destination, anywhere); a killed pull's tree is removed by
///                                  the next prune, as it pins cache files
/// ```
///
/// Every cached file's mtime is [`super::MATERIALISED_MTIME`].
/// The cache mode is `(entry mode & 0o555) | 0o400`: write bits are always cleared, so nothing
/// that reaches a cached inode through a hard link can change it by accident, and the owner
/// can always read it (to copy or reflink from it). Files enter the cache only after their
/// bytes hashed to their digest, by an atomic rename from `tmp/`, which is on the same
/// filesystem; a reader never sees a partial file under a real name. Nothing is fsynced (a
/// cache can be refetched): after a power loss a file whose size is wrong is fetched again,
/// but bytes are not re-hashed on every use; the cache is trusted once written. After a power
/// loss or disk errors, [`FileCache::verify`] (`prewarm cache verify`) re-hashes every file and
/// removes the damaged ones so that pulls fetch them again; runtimes already linked to a
/// damaged file must be pulled again with `--replace`.
#[derive(Debug, Clone)]
pub struct FileCache {
    root: PathBuf,
    files: PathBuf,
    tmp: PathBuf,
}

impl FileCache {
    /// Opens (creating if needed) the cache at `dir`, and sweeps stale scratch directories.
    pub fn open(dir: &Path) -> Result<Self, PullError> {
        let files = dir.join(FILES_DIR);
        let tmp = dir.join(TMP_DIR);
        for d in [&files, &tmp] {
            fs::create_dir_all(d).map_err(io_err("creating cache directory", d))?;
        }
        let cache = Self {
            root: dir.to_path_buf(),
            files,
            tmp,
        };
        cache.sweep_stale_scratch();
        Ok(cache)
    }

    /// A lock on the whole cache: shared while a pull fetches and links, exclusive for
    /// [`FileCache::prune_unlinked`] and [`FileCache::verify`] across processes. Taking it
    /// shared waits; taking it exclusive fails at once (`WouldBlock`) if it is held. Released
    /// when dropped.
    pub fn lock(&self, exclusive: bool) -> io::Result<CacheLock> {
        use rustix::fs::{flock, FlockOperation};
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))?;
        let op = if exclusive {
            FlockOperation::NonBlockingLockExclusive
        } else {
            FlockOperation::LockShared
        };
        flock(&file, op).map_err(io::Error::from)?;
        Ok(CacheLock(file))
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The mode a cached copy of a file with manifest mode `mode` has (see the type's docs).
    pub fn cache_mode(mode: u32) -> u32 {
        (mode & 0o555) | 0o400
    }

    /// Where the file with content `digest` and manifest mode `mode` lives (or would live).
    pub fn path_for(&self, digest: &Digest, mode: u32) -> PathBuf {
        let hex = digest.hex();
        self.files
            .join(&hex[..2])
            .join(format!("{hex}.{:03o}", Self::cache_mode(mode)))
    }

    /// True if the file is cached (as a regular file).
    pub fn contains(&self, digest: &Digest, mode: u32) -> bool {
        fs::symlink_metadata(self.path_for(digest, mode)).is_ok_and(|m| m.is_file())
    }

    /// True if the file is cached with the right size. Nothing is fsynced, so after a power
    /// loss a renamed file can be empty or short; those are fetched again, not trusted.
    pub(crate) fn holds(&self, digest: &Digest, mode: u32, size: u64) -> bool {
        fs::symlink_metadata(self.path_for(digest, mode))
            .is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Removes cached files that no materialised tree links to (link count 1), returning how
    /// many files and bytes were freed. This is how evicting a runtime gives its disk back.
    ///
    /// # Contract
    /// The caller makes sure no fetch on this cache is between [`super::fetch_missing`] and
    /// [`super::materialise`]: the files such a fetch just assembled are not linked yet.
    pub fn prune_unlinked(&self) -> io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        // A killed pull's staging tree links to cache files: removed first, they are free.
        self.sweep_registered_staging();
        let (mut files, mut bytes) = (0u64, 0u64);
        let fans = match fs::read_dir(&self.files) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        for fan in fans {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(fan.path())? {
                let entry = entry?;
                let meta = entry.metadata()?;
                if meta.is_file() && meta.nlink() == 1 {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => {
                            files += 1;
                            bytes += meta.len();
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok((files, bytes))
    }

    /// A fresh scratch directory under `tmp/`, removed when the guard drops.
    pub(crate) fn scratch(&self) -> Result<Scratch, PullError> {
        let path = self.tmp.join(format!(
            "{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        fs::create_dir(&path).map_err(io_err("creating cache scratch directory", &path))?;
        Ok(Scratch(path))
    }

    /// Moves the verified file at `tmp` (inside a scratch dir) into the cache under
    /// (`digest`, `mode`): clears its write bits, then renames it into place atomically.
    pub(crate) fn insert(&self, tmp: &Path, digest: &Digest, mode: u32) -> Result<(), PullError> {
        // Hard links share the inode: every runtime linked from it gets the fixed mtime.
        super::link::set_fixed_mtime(tmp)?;
        let perms = fs::Permissions::from_mode(Self::cache_mode(mode));
        fs::set_permissions(tmp, perms).map_err(io_err("setting the mode of", tmp))?;
        let dest = self.path_for(digest, mode);
        match fs::rename(tmp, &dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && tmp.exists() => {
                let fan = dest.parent().unwrap_or(&self.files);
                fs::create_dir_all(fan).map_err(io_err("creating cache directory", fan))?;
                fs::rename(tmp, &dest)
            }
            other => other,
        }
        .map_err(io_err("moving an assembled file into the cache at", &dest))
    }

    /// Adds (`digest`, `mode`) by copying the cached (`digest`, `from_mode`): same bytes, no
    /// download, its own inode (a hard link would share the other mode).
    pub(crate) fn derive(
        &self,
        scratch: &Scratch,
        digest: &Digest,
        from_mode: u32,
        mode: u32,
    ) -> Result<(), PullError> {
        let src = self.path_for(digest, from_mode);
        let tmp = scratch.file(digest, mode);
        fs::copy(&src, &tmp).map_err(io_err("copying cached file", &src))?;
        self.insert(&tmp, digest, mode)
    }

    /// Records a staging tree being built from this cache, so that [`FileCache::prune_unlinked`]
    /// finds it if its pull dies. Returns the record, to remove once the tree is gone or placed.
    pub(crate) fn register_staging(&self, tree: &Path) -> io::Result<PathBuf> {
        let dir = self.root.join(STAGING_DIR);
        fs::create_dir_all(&dir)?;
        let link = dir.join(format!("{:016x}", rand::random::<u64>()));
        // The tree may not be there yet (recorded before it is): its parent is.
        let name = tree
            .file_name()
            .ok_or_else(|| io::Error::other("no file name"))?;
        let parent = match tree.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::os::unix::fs::symlink(fs::canonicalize(parent)?.join(name), &link)?;
        Ok(link)
    }

    /// Removes the registered staging trees no live pull holds, and their records.
    fn sweep_registered_staging(&self) {
        let Ok(dir) = fs::read_dir(self.root.join(STAGING_DIR)) else {
            return;
        };
        for e in dir.flatten() {
            let gone = match fs::read_link(e.path()) {
                Ok(tree) => super::materialise::remove_if_stale(&tree),
                Err(_) => true,
            };
            if gone {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    fn sweep_stale_scratch(&self) {
        let Ok(dir) = fs::read_dir(&self.tmp) else {
            return;
        };
        let now = SystemTime::now();
        for e in dir.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_SCRATCH);
            if old {
                if let Err(err) = fs::remove_dir_all(e.path()) {
                    tracing::warn!(path = %e.path().display(), %err, "could not remove stale cache scratch");
                }
            }
        }
    }
}

/// A per-fetch scratch directory inside the cache; removed with its contents on drop.
#[derive(Debug)]
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// The scratch path for a file being assembled or copied.
    pub(crate) fn file(&self, digest: &Digest, mode: u32) -> PathBuf {
        self.0.join(format!("{}.{:03o}", digest.hex(), mode))
    }

    /// The scratch path a file is assembled at from its blocks.
    pub(crate) fn part(&self, digest: &Digest) -> PathBuf {
        self.0.join(format!("{}.part", digest.hex()))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_dir_all(&self.0) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), %err, "could not remove cache scratch");
            }
        }
    }
}

/// SHA-256 of a file's bytes, read in 256 KiB pieces (memory stays flat whatever the size).
pub fn hash_file(path: &Path) -> io::Result<Digest> {
    hash_file_sized(path).map(|(digest, _)| digest)
}

/// [`hash_file`], and how many bytes were hashed.
pub(crate) fn hash_file_sized(path: &Path) -> io::Result<(Digest, u64)> {
    Hasher::of_reader(fs::File::open(path)?)
}
