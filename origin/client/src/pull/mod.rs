//! Pulling: manifest → missing blocks → file-level cache → a tree materialised by hard links.
//!
//! [`pull`] is the whole of `prewarm pull`. Its steps are public too, because the warming
//! pipeline runs them separately with its own progress: [`fetch_manifest`] (resolve, verify,
//! parse), [`fetch_missing`] (download the blocks of files the [`FileCache`] lacks, assemble
//! and verify those files, cache them) and [`materialise`] (link the tree into place).
//!
//! # Modes and hard links
//! Cached files are read-only (see [`FileCache`]) and a hard link shares its inode, mode
//! included. So a tree materialised by hard links has every file's manifest mode **with its
//! write bits cleared** (and owner-read set): `0o644` shows as `0o444`, `0o755` as `0o555`.
//! That is the price of instant, zero-copy materialisation, and what keeps a sandbox from
//! corrupting the cache that other sandboxes share. Reflinks and copies are new inodes and get
//! exact modes; use `--link-mode copy` where exact write bits matter. Directories and
//! symlinks are always exact.
//!
//! Read-only modes stop accidents, not an adversary: the owner of an inode can `chmod` it back,
//! and root ignores modes. A sandbox that may write to its runtime must get it through a
//! read-only bind mount (or an overlay), or run under another uid than the cache's owner.

mod assemble;
mod cache;
mod error;
mod fetch;
mod link;
mod materialise;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use prewarm_shared::{Digest, RuntimeRef};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use cache::{hash_file, CacheLock, Damaged, FileCache, Problem, VerifyReport};
pub use error::PullError;
pub use fetch::{fetch_manifest, fetch_missing, FetchProgress, FetchStats};
pub use link::{LinkStats, MATERIALISED_MTIME};
pub use materialise::{materialise, MaterialiseProgress};

use crate::transfer::Source;

/// How files get from the cache into the tree. Anything but `Auto` is a requirement: if it
/// cannot be met the pull fails, naming why, rather than quietly copying the whole runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkMode {
    /// Hard link; where the filesystem refuses (other device, link limit) reflink, then copy.
    /// The report says which were used.
    #[default]
    Auto,
    /// Hard links only: instant and shares disk, modes lose their write bits.
    Hardlink,
    /// Copy-on-write clones only (btrfs, XFS, …): instant, exact modes, own inodes.
    Reflink,
    /// Plain copies: exact modes, full disk cost.
    Copy,
}

/// Hears how far a [`pull`] got, so a front end can draw it (the CLI's progress bars); the
/// library itself never writes to the terminal.
pub trait PullProgress: Send + Sync {
    /// `done` of `total` units of `stage` so far. Called from the pulling task or thread.
    fn report(&self, stage: Stage, done: u64, total: u64);
    /// `stage` ended, successfully or not.
    fn finish(&self, stage: Stage);
}

/// What a [`PullProgress`] report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Block bytes received.
    Download,
    /// Tree entries placed.
    Materialise,
}

/// What [`pull`] does; see `prewarm pull --help` for the user's view.
#[derive(Clone)]
pub struct PullOptions {
    /// The directory to materialise; must not exist unless `replace`.
    pub into: PathBuf,
    /// The file cache. Keep it on `into`'s filesystem, or hard links are impossible.
    pub cache_dir: PathBuf,
    /// Most blocks downloading at once (and, as many, being written).
    pub concurrency: usize,
    pub link_mode: LinkMode,
    /// Swap an existing `into` atomically for the new tree.
    pub replace: bool,
    /// Who hears how far the pull got; `None` for nobody.
    pub progress: Option<Arc<dyn PullProgress>>,
    /// Fired to stop the pull (`prewarm pull` on SIGINT/SIGTERM): it ends with
    /// [`PullError::Interrupted`] and leaves nothing behind at or beside `into`.
    pub cancel: CancellationToken,
}

impl PullOptions {
    /// Defaults: [`default_cache_dir`], 16 concurrent blocks, `Auto`, no replace, no progress.
    pub fn new(into: impl Into<PathBuf>) -> Self {
        Self {
            into: into.into(),
            cache_dir: default_cache_dir(),
            concurrency: 16,
            link_mode: LinkMode::Auto,
            replace: false,
            progress: None,
            cancel: CancellationToken::new(),
        }
    }
}

/// The cache used when none is given: `$XDG_CACHE_HOME/prewarm`, else `$HOME/.cache/prewarm`,
/// else `/var/cache/prewarm` (a service account without a home).
pub fn default_cache_dir() -> PathBuf {
    let from_env = |var: &str| std::env::var_os(var).map(PathBuf::from);
    if let Some(xdg) = from_env("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return xdg.join("prewarm");
    }
    if let Some(home) = from_env("HOME").filter(|p| p.is_absolute()) {
        return home.join(".cache").join("prewarm");
    }
    PathBuf::from("/var/cache/prewarm")
}

/// What a pull did: the `--json` output of `prewarm pull`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullReport {
    pub digest: Digest,
    /// Regular files in the tree.
    pub files: u64,
    /// Bytes of regular files in the tree.
    pub bytes_total: u64,
    /// Block bytes actually received, decoded (what the blocks hold).
    pub bytes_downloaded: u64,
    /// Block body bytes as they came over the network: below `bytes_downloaded` when blocks
    /// travelled zstd-compressed (`--compress`), equal otherwise.
    pub bytes_on_wire: u64,
    pub blocks_downloaded: u64,
    /// Blocks the manifest references that did not need downloading.
    pub blocks_reused: u64,
    /// `"hardlink"`, `"reflink"`, `"copy"` or `"mixed"`; `links` has the counts.
    pub link_mode: &'static str,
    pub links: LinkStats,
    pub duration_ms: u64,
}

/// Pulls `what` from `source` into `opts.into`: fetch the manifest, download what the cache
/// lacks, materialise atomically. Fails before downloading anything if `into` exists and
/// `replace` is not set. Nothing is left at `into` unless the whole tree is there.
#[tracing::instrument(skip_all, fields(what = %what, into = %opts.into.display()))]
pub async fn pull(
    source: &dyn Source,
    what: &RuntimeRef,
    opts: &PullOptions,
) -> Result<PullReport, PullError> {
    let started = Instant::now();
    if !opts.replace && std::fs::symlink_metadata(&opts.into).is_ok() {
        return Err(PullError::DestExists(opts.into.clone()));
    }
    let cache_dir = opts.cache_dir.clone();
    let cache = tokio::task::spawn_blocking(move || FileCache::open(&cache_dir))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    let (digest, manifest) = fetch_manifest(source, what).await?;
    // Shared with other pulls; keeps `prewarm cache prune` away from files fetched, not linked yet.
    let lock = cache
        .lock(false)
        .map_err(|e| PullError::io("locking the cache", cache.dir(), e))?;

    let bar = opts.progress.clone();
    let on_progress = |p: FetchProgress| {
        if let Some(bar) = &bar {
            bar.report(
                Stage::Download,
                p.bytes_done,
                p.bytes_expected.max(p.bytes_done),
            );
        }
    };
    let fetched = tokio::select! {
        f = fetch_missing(source, &manifest, &cache, opts.concurrency, &on_progress) => f,
        () = opts.cancel.cancelled() => Err(PullError::Interrupted),
    };
    if let Some(bar) = &bar {
        bar.finish(Stage::Download);
    }
    let fetched = fetched?;

    let files = manifest.files().count() as u64;
    let bytes_total = manifest.bytes_total();
    let (into, mode, replace) = (opts.into.clone(), opts.link_mode, opts.replace);
    let cancel = opts.cancel.clone();
    let bar = opts.progress.clone();
    let links = tokio::task::spawn_blocking(move || {
        let on_progress = |p: MaterialiseProgress| {
            if let Some(bar) = &bar {
                bar.report(Stage::Materialise, p.entries_done, p.entries_total);
            }
        };
        let links = materialise(
            &manifest,
            &cache,
            Path::new(&into),
            mode,
            replace,
            &cancel,
            &on_progress,
        );
        if let Some(bar) = &bar {
            bar.finish(Stage::Materialise);
        }
        links
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    drop(lock);

    let report = PullReport {
        digest,
        files,
        bytes_total,
        bytes_downloaded: fetched.bytes_downloaded,
        bytes_on_wire: fetched.bytes_on_wire,
        blocks_downloaded: fetched.blocks_downloaded,
        blocks_reused: fetched.blocks_reused,
        link_mode: links.mode_used(mode),
        links,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    tracing::info!(
        digest = %report.digest,
        bytes_downloaded = report.bytes_downloaded,
        bytes_on_wire = report.bytes_on_wire,
        link_mode = report.link_mode,
        "pulled"
    );
    Ok(report)
}
