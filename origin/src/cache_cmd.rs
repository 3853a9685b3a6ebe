//! `prewarm cache prune`: give back the disk of runtimes deleted from this host.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use prewarm_origin::cli_output;
use prewarm_origin::pull::{default_cache_dir, FileCache};
use serde::Serialize;

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
}

#[derive(Serialize)]
struct PruneReport {
    files_removed: u64,
    bytes_freed: u64,
}

pub(crate) async fn run(a: CacheArgs) -> anyhow::Result<()> {
    match a.command {
        CacheCommand::Prune { cache_dir, json } => {
            let dir = cache_dir.unwrap_or_else(default_cache_dir);
            let report = tokio::task::spawn_blocking(move || -> anyhow::Result<PruneReport> {
                let cache = FileCache::open(&dir)?;
                let _lock = cache
                    .lock(true)
                    .with_context(|| format!("{} is in use by a pull; try again", dir.display()))?;
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
            Ok(())
        }
    }
}
