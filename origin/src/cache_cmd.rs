//! `prewarm cache prune` and `prewarm cache verify`: look after the file cache pulls link from.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use prewarm_client::pull::{default_cache_dir, CacheLock, FileCache, VerifyReport};
use prewarm_shared::Digest;
use serde::Serialize;

use crate::cli_output;

/// `prewarm cache verify`'s exit status when it found damage (and removed it). Not 1, which
/// every command exits with on an error, nor 2, clap's usage error.
pub(crate) const EXIT_DAMAGE_FOUND: u8 = 3;

/// What `verify` tells whoever runs it when it removed something.
const REPULL_ADVICE: &str = "runtimes pulled from this cache may hold the damaged bytes \
(hard-linked trees share them, copies may have taken them): pull them again with --replace";

#[derive(Args)]
pub(crate) struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Remove cached files that no pulled tree links to any more (after `rm -rf` of a runtime).
    /// Refuses to run while a pull is using the cache.
    Prune {
        /// The file-level cache (as given to `prewarm pull`).
        #[arg(long, env = "PREWARM_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every cached file against its name and remove the damaged ones, so the next
    /// pull fetches them again (after a power loss or disk errors: the cache is not fsynced).
    ///
    /// Runtimes already pulled may hold the damaged bytes: the report names each damaged
    /// digest with its link count (more than 1: a tree still links it); pull those runtimes
    /// again with --replace. Refuses to run while a pull is using the cache; pulls started
    /// meanwhile wait for it.
    ///
    /// Exit status: 0 everything intact; 3 damage found and removed; 1 error.
    Verify {
        /// The file-level cache (as given to `prewarm pull`).
        #[arg(long, env = "PREWARM_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct PruneReport {
    files_removed: u64,
    bytes_freed: u64,
}

#[derive(Serialize)]
struct VerifyOutput {
    #[serde(flatten)]
    report: VerifyReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    advice: Option<&'static str>,
}

pub(crate) async fn run(a: CacheArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        CacheCommand::Prune { cache_dir, json } => {
            let dir = cache_dir.unwrap_or_else(default_cache_dir);
            let report = tokio::task::spawn_blocking(move || -> anyhow::Result<PruneReport> {
                let cache = FileCache::open(&dir)?;
                let _lock = lock_exclusive(&cache, &dir)?;
                let (files_removed, bytes_freed) = cache
                    .prune_unlinked()
                    .with_context(|| format!("pruning {}", dir.display()))?;
                Ok(PruneReport {
                    files_removed,
                    bytes_freed,
                })
            })
            .await??;
            cli_output::result(&report, json, |r| {
                format!(
                    "removed {} files, freed {} bytes",
                    r.files_removed, r.bytes_freed
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Verify { cache_dir, json } => {
            let dir = cache_dir.unwrap_or_else(default_cache_dir);
            let report = tokio::task::spawn_blocking(move || -> anyhow::Result<VerifyReport> {
                let cache = FileCache::open(&dir)?;
                let _lock = lock_exclusive(&cache, &dir)?;
                cache
                    .verify()
                    .with_context(|| format!("verifying {}", dir.display()))
            })
            .await??;
            let damaged = !report.damaged.is_empty();
            let out = VerifyOutput {
                report,
                advice: damaged.then_some(REPULL_ADVICE),
            };
            cli_output::result(&out, json, human_verify);
            Ok(if damaged {
                ExitCode::from(EXIT_DAMAGE_FOUND)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// The cache's exclusive lock, or a message saying a pull holds it.
fn lock_exclusive(cache: &FileCache, dir: &Path) -> anyhow::Result<CacheLock> {
    cache.lock(true).map_err(|e| {
        let what = if e.kind() == io::ErrorKind::WouldBlock {
            format!(
                "{} is in use by a pull; try again when it is done",
                dir.display()
            )
        } else {
            format!("locking {}", dir.display())
        };
        anyhow::Error::new(e).context(what)
    })
}

fn human_verify(out: &VerifyOutput) -> String {
    let r = &out.report;
    let mut s = verify_headline(
        "files",
        r.files_checked,
        r.bytes_checked,
        r.files_removed,
        "removed from the cache (the next pull fetches them again)",
    );
    for d in &r.damaged {
        s.push_str(&damaged_line(d.digest, &d.path, d.problem.describe()));
        match d.links {
            0 => {}
            1 => s.push_str("; 1 link"),
            n => s.push_str(&format!("; {n} links (still in a pulled tree)")),
        }
    }
    if let Some(advice) = out.advice {
        s.push('\n');
        s.push_str(advice);
    }
    s
}

/// The first line of a verify report (`cache verify`, `store verify`): what was checked, then
/// "all intact" or how many were damaged and what was `done` about them.
pub(crate) fn verify_headline(
    what: &str,
    checked: u64,
    bytes: u64,
    damaged: u64,
    done: &str,
) -> String {
    let mut s = format!("verified {checked} {what}, {bytes} bytes: ");
    if damaged == 0 {
        s.push_str("all intact");
    } else {
        s.push_str(&format!("{damaged} damaged, {done}"));
    }
    s
}

/// One damaged entry of a verify report, on its own line: its digest (else its path) and why.
pub(crate) fn damaged_line(digest: Option<Digest>, path: &str, problem: &str) -> String {
    let name = digest.map_or_else(|| path.to_string(), |d| d.to_string());
    format!("\n  {name}: {problem}")
}
