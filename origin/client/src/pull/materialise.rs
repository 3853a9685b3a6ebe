//! Materialising: build a tree from the file cache beside the destination, then swap it in atomically.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use prewarm_shared::{Entry, Manifest};
use rustix::fs::{renameat_with, RenameFlags, CWD};
use rustix::io::Errno;
use tokio_util::sync::CancellationToken;

use super::cache::FileCache;
use super::error::{io_err, PullError};
use super::link::{set_mode, LinkStats, Linker};
use super::LinkMode;

/// What a staging tree's name carries after `.NAME.`; the sweepers look for nothing else.
const STAGING: &str = "prewarm-tmp";

/// Mode of the tree's root directory (the manifest records no entry for it).
const ROOT_MODE: u32 = 0o755;

/// About how many progress reports a materialisation makes, whatever the tree's size: one per
/// ~1% of the entries and one per ~1% of the bytes, so even a 40k-file tree makes at most ~200.
const REPORTS: u64 = 100;

/// Where a materialisation stands. Reported once before the first entry (so a bar knows its
/// length), then after about every 1% of the entries or of the bytes, and once when the new
/// tree is in place. Figures never decrease, and only that last report has
/// `entries_done == entries_total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaterialiseProgress {
    /// Entries placed in the staging tree (directories, symlinks, files), plus the tree's root,
    /// which counts as done only once the whole tree is renamed into place.
    pub entries_done: u64,
    /// The manifest's entries plus one, the root.
    pub entries_total: u64,
    /// Bytes of the regular files placed (linked, cloned or copied).
    pub bytes_done: u64,
    /// Bytes of all regular files in the manifest.
    pub bytes_total: u64,
}

impl MaterialiseProgress {
    /// Share of the entries in place, 0 to 1. Linking costs per entry, not per byte (a hard
    /// link of 1 GB is as quick as one of 1 byte), so entries measure the work best.
    pub fn fraction(&self) -> f64 {
        if self.entries_total == 0 {
            return 0.0;
        }
        self.entries_done as f64 / self.entries_total as f64
    }
}

/// Builds `manifest`'s tree at `dest` from files already in `cache` (see [`super::fetch_missing`]).
/// Blocking: call it from `spawn_blocking`. `progress` hears how far it got (see
/// [`MaterialiseProgress`]), from this thread, in manifest order.
///
/// The tree is built in `.NAME.prewarm-tmp-<rand>` beside `dest` (same parent, so same
/// filesystem), then renamed into place in one step: `dest` is either absent, the old tree, or
/// the complete new one, never half a runtime. Directories get their modes after they are
/// filled; symlinks are written verbatim; files are placed per `mode` (see [`LinkMode`]).
///
/// If `dest` exists: without `replace` this is [`PullError::DestExists`]; with it, the new tree
/// and the old directory are exchanged atomically (`renameat2(RENAME_EXCHANGE)`), then the old
/// tree is removed. On kernels or filesystems without `renameat2` the swap falls back to two
/// renames, with a moment when `dest` is absent. On any error the staging tree is removed, and
/// when `cancel` fires ([`PullError::Interrupted`], checked before each entry). One whose
/// process died (kill -9, power loss) is removed by the next materialisation into the same
/// parent, or by [`FileCache::prune_unlinked`]: the staging tree is flocked while it is built.
///
/// # Errors
/// Besides I/O: [`PullError::NotCached`] if a file was not fetched, and
/// [`PullError::LinkImpossible`] if a specific `mode` was requested and cannot be used.
pub fn materialise(
    manifest: &Manifest,
    cache: &FileCache,
    dest: &Path,
    mode: LinkMode,
    replace: bool,
    cancel: &CancellationToken,
    progress: &dyn Fn(MaterialiseProgress),
) -> Result<LinkStats, PullError> {
    // A hand-built manifest could put a file under a symlink; a validated one cannot.
    manifest.validate().map_err(|source| PullError::Manifest {
        digest: manifest.digest(),
        source,
    })?;
    let name = dest
        .file_name()
        .ok_or_else(|| PullError::BadDest(dest.to_path_buf()))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(io_err("creating the parent directory", parent))?;
    check_dest(dest, replace)?;
    sweep_stale_staging(parent);
    let staging = Staging::create(parent, name, cache)?;
    let mut linker = Linker::new(mode);
    let mut tally = Tally::new(manifest, progress);
    build(
        manifest,
        cache,
        &staging.path,
        &mut linker,
        &mut tally,
        cancel,
    )?;
    install(staging, dest, replace)?;
    tally.finish();
    Ok(linker.stats)
}

fn check_dest(dest: &Path, replace: bool) -> Result<(), PullError> {
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PullError::io("inspecting the destination", dest, e)),
        Ok(_) if !replace => Err(PullError::DestExists(dest.to_path_buf())),
        Ok(m) if !m.is_dir() => Err(PullError::DestNotDir(dest.to_path_buf())),
        Ok(_) => Ok(()),
    }
}

fn build(
    manifest: &Manifest,
    cache: &FileCache,
    root: &Path,
    linker: &mut Linker,
    tally: &mut Tally<'_>,
    cancel: &CancellationToken,
) -> Result<(), PullError> {
    let mut dirs = Vec::new();
    for entry in &manifest.entries {
        if cancel.is_cancelled() {
            return Err(PullError::Interrupted);
        }
        let at = root.join(entry.path().as_str());
        let mut bytes = 0;
        match entry {
            Entry::Dir { mode, .. } => {
                // Owner-writable while it is filled; the real mode comes at the end.
                DirBuilder::new()
                    .mode(0o700)
                    .create(&at)
                    .map_err(io_err("creating directory", &at))?;
                dirs.push((at, *mode));
            }
            Entry::Symlink { target, .. } => {
                std::os::unix::fs::symlink(target, &at).map_err(io_err("creating symlink", &at))?;
            }
            Entry::File {
                path,
                mode,
                digest,
                size,
                ..
            } => {
                let src = cache.path_for(digest, *mode);
                linker.place(&src, &at, *mode, path, digest)?;
                bytes = *size;
            }
        }
        tally.placed(bytes);
    }
    // Deepest first, so a directory without search permission never hides one still to do.
    for (at, mode) in dirs.iter().rev() {
        set_mode(at, *mode)?;
    }
    set_mode(root, ROOT_MODE)
}

/// Counts what [`build`] placed and reports it at most ~2 × [`REPORTS`] times.
struct Tally<'a> {
    at: MaterialiseProgress,
    last: MaterialiseProgress,
    every_entries: u64,
    every_bytes: u64,
    report: &'a dyn Fn(MaterialiseProgress),
}

impl<'a> Tally<'a> {
    /// Makes the first report: nothing done yet, and the totals.
    fn new(manifest: &Manifest, report: &'a dyn Fn(MaterialiseProgress)) -> Self {
        let at = MaterialiseProgress {
            entries_total: manifest.entries.len() as u64 + 1,
            bytes_total: manifest.bytes_total(),
            ..MaterialiseProgress::default()
        };
        report(at);
        Self {
            at,
            last: at,
            every_entries: at.entries_total.div_ceil(REPORTS).max(1),
            every_bytes: at.bytes_total.div_ceil(REPORTS).max(1),
            report,
        }
    }

    /// One entry is in the staging tree; `bytes` is its size if it is a file.
    fn placed(&mut self, bytes: u64) {
        self.at.entries_done += 1;
        self.at.bytes_done += bytes;
        if self.at.entries_done - self.last.entries_done >= self.every_entries
            || self.at.bytes_done - self.last.bytes_done >= self.every_bytes
        {
            self.last = self.at;
            (self.report)(self.at);
        }
    }

    /// The tree is in place: the root is done too.
    fn finish(mut self) {
        self.at.entries_done = self.at.entries_total;
        (self.report)(self.at);
    }
}

fn install(staging: Staging, dest: &Path, replace: bool) -> Result<(), PullError> {
    let tmp = staging.path.clone();
    match renameat_with(CWD, &tmp, CWD, dest, RenameFlags::NOREPLACE) {
        Ok(()) => {
            staging.disarm();
            return Ok(());
        }
        Err(Errno::EXIST | Errno::NOTEMPTY) if !replace => {
            return Err(PullError::DestExists(dest.to_path_buf()))
        }
        Err(Errno::EXIST | Errno::NOTEMPTY) => {}
        Err(Errno::INVAL | Errno::NOSYS) => {
            // No renameat2 flags here: a plain rename, after checking (racy, but best there is).
            if fs::symlink_metadata(dest).is_err() {
                fs::rename(&tmp, dest).map_err(io_err("renaming the new tree to", dest))?;
                staging.disarm();
                return Ok(());
            }
            if !replace {
                return Err(PullError::DestExists(dest.to_path_buf()));
            }
        }
        Err(e) => return Err(PullError::io("renaming the new tree to", dest, e.into())),
    }
    check_dest(dest, true)?;
    match renameat_with(CWD, &tmp, CWD, dest, RenameFlags::EXCHANGE) {
        // The staging path now holds the old tree; dropping the guard removes it.
        Ok(()) => Ok(()),
        Err(Errno::INVAL | Errno::NOSYS) => {
            let old = beside(dest, "prewarm-old")?;
            fs::rename(dest, &old).map_err(io_err("moving the old tree aside from", dest))?;
            if let Err(e) = fs::rename(&tmp, dest) {
                let _ = fs::rename(&old, dest);
                return Err(PullError::io("renaming the new tree to", dest, e));
            }
            remove_tree(&old);
            Ok(())
        }
        Err(e) => Err(PullError::io("swapping the new tree with", dest, e.into())),
    }
}

/// `PARENT/.NAME.<what>-<rand>` for `PARENT/NAME`.
fn beside(dest: &Path, what: &str) -> Result<PathBuf, PullError> {
    let name = dest
        .file_name()
        .ok_or_else(|| PullError::BadDest(dest.to_path_buf()))?;
    Ok(staging_path(
        dest.parent().unwrap_or(Path::new(".")),
        name,
        what,
    ))
}

fn staging_path(parent: &Path, name: &OsStr, what: &str) -> PathBuf {
    let mut n = std::ffi::OsString::from(".");
    n.push(name);
    n.push(format!(".{what}-{:016x}", rand::random::<u64>()));
    parent.join(n)
}

/// The staging directory; removed with everything in it on drop unless disarmed. It is
/// flocked while it lives, so a sweeper tells the tree of a pull that died from one being built.
struct Staging {
    path: PathBuf,
    armed: bool,
    /// The flock, released when the process ends however it ends.
    _lock: fs::File,
    /// Its record in the cache (see [`FileCache::register_staging`]).
    record: Option<PathBuf>,
}

impl Staging {
    fn create(parent: &Path, name: &OsStr, cache: &FileCache) -> Result<Self, PullError> {
        // Made and locked under a name no sweeper looks at, then renamed (the lock stays with
        // the inode): a sweeper never sees a staging tree unlocked while its pull lives.
        let init = staging_path(parent, name, "prewarm-init");
        DirBuilder::new()
            .mode(0o700)
            .create(&init)
            .map_err(io_err("creating staging directory", &init))?;
        let path = staging_path(parent, name, STAGING);
        // Recorded before it appears under its name, so a pull killed at any moment after
        // leaves nothing the next prune cannot find.
        let record = match cache.register_staging(&path) {
            Ok(r) => Some(r),
            Err(err) => {
                tracing::warn!(cache = %cache.dir().display(), %err, "could not record a staging tree in the cache");
                None
            }
        };
        let locked = lock_dir(&init).and_then(|lock| fs::rename(&init, &path).map(|()| lock));
        let lock = match locked {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir(&init);
                if let Some(r) = &record {
                    let _ = fs::remove_file(r);
                }
                return Err(PullError::io("creating staging directory", &path, e));
            }
        };
        Ok(Self {
            path,
            armed: true,
            _lock: lock,
            record,
        })
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed {
            remove_tree(&self.path);
        }
        if let Some(r) = &self.record {
            let _ = fs::remove_file(r);
        }
    }
}

/// An exclusive flock on the directory `path`, or `WouldBlock` if someone holds it.
fn lock_dir(path: &Path) -> io::Result<fs::File> {
    use rustix::fs::{flock, FlockOperation};
    let dir = fs::File::open(path)?;
    flock(&dir, FlockOperation::NonBlockingLockExclusive)?;
    Ok(dir)
}

/// Removes the staging tree at `path` unless a live pull holds its lock; true if it is gone.
/// Anything not named like a staging tree is left alone.
pub(crate) fn remove_if_stale(path: &Path) -> bool {
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.contains(&format!(".{STAGING}-")));
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
        Ok(m) if named && m.is_dir() => {}
        _ => return false,
    }
    match lock_dir(path) {
        Ok(_lock) => {
            tracing::info!(path = %path.display(), "removing the staging tree of a pull that died");
            remove_tree(path);
            true
        }
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Removes the staging trees in `parent` whose pulls died.
fn sweep_stale_staging(parent: &Path) {
    let Ok(dir) = fs::read_dir(parent) else {
        return;
    };
    for e in dir.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_if_stale(&e.path());
        }
    }
}

/// Removes a tree whose directories may be read-only (modes from a manifest); logs failures.
pub(crate) fn remove_tree(path: &Path) {
    make_writable(path);
    if let Err(err) = fs::remove_dir_all(path) {
        if err.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %err, "could not remove a temporary tree");
        }
    }
}

/// Gives every directory under `path` owner rwx, each before it is listed.
fn make_writable(path: &Path) {
    if set_mode(path, 0o700).is_err() {
        return;
    }
    let Ok(dir) = fs::read_dir(path) else {
        return;
    };
    for e in dir.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&e.path());
        }
    }
}
