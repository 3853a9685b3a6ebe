//! `prewarm store verify`: re-hash the origin's local disk tier and quarantine what is damaged.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use prewarm_server::config::Config;
use prewarm_store::{DiskStore, StoreVerifyReport};

use crate::cache_cmd::{damaged_line, verify_headline, EXIT_DAMAGE_FOUND};
use crate::cli_output;

#[derive(Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Re-hash every block and manifest of `prewarm serve`'s data directory against its name
    /// and move the damaged ones into `quarantine-v1/` (after disk errors, a full disk under an
    /// older version, a power loss). They then read as missing, so the next push of a runtime
    /// that uses them uploads them again.
    ///
    /// Safe while the server runs. Exit status: 0 everything intact; 3 damage found and
    /// quarantined; 1 error.
    Verify {
        /// The TOML config `prewarm serve` runs with (for its `data_dir`).
        #[arg(long, env = "PREWARM_CONFIG")]
        config: Option<PathBuf>,
        /// The data directory (as given to `prewarm serve`). Default: the config's, else
        /// `prewarm-data`.
        #[arg(long, env = "PREWARM_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(a: StoreArgs) -> anyhow::Result<ExitCode> {
    let StoreCommand::Verify {
        config,
        data_dir,
        json,
    } = a.command;
    let cfg = match &config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let dir = data_dir.unwrap_or_else(|| cfg.data_dir_or_default());
    if !dir.join("blocks-v1").is_dir() {
        anyhow::bail!(
            "{} is not a prewarm data directory (no blocks-v1/)",
            dir.display()
        );
    }
    let store = DiskStore::beside_server(&dir);
    let report = tokio::task::spawn_blocking(move || store.verify())
        .await?
        .with_context(|| format!("verifying {}", dir.display()))?;
    let damaged = report.quarantined > 0;
    cli_output::result(&report, json, human);
    Ok(if damaged {
        ExitCode::from(EXIT_DAMAGE_FOUND)
    } else {
        ExitCode::SUCCESS
    })
}

fn human(r: &StoreVerifyReport) -> String {
    let mut s = verify_headline(
        "objects",
        r.objects_checked,
        r.bytes_checked,
        r.quarantined,
        "quarantined (they read as missing; the next push uploads them again)",
    );
    for d in &r.damaged {
        s.push_str(&damaged_line(d.digest, &d.path, d.problem.describe()));
        s.push_str(&format!(" (moved to {})", d.moved_to));
    }
    s
}
