//! `prewarm pull` argument parsing and wiring (the work is in `prewarm_client::pull`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use prewarm_client::pull::{default_cache_dir, pull, LinkMode, PullError, PullOptions, PullReport};
use prewarm_client::remote::{Compress, Remote};
use prewarm_shared::RuntimeRef;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::cli_output;
use crate::progress::Bars;

#[derive(Args)]
pub(crate) struct PullArgs {
    /// NAME:TAG to resolve, or an exact manifest digest (sha256:…).
    what: String,
    /// The origin or edge to pull from (http://…).
    #[arg(long)]
    from: String,
    /// Bearer token, for an origin whose reads need one (a tokens file without
    /// `public_reads`): a `read` token is enough.
    #[arg(long, env = "PREWARM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where the runtime appears. Built beside it and renamed into place.
    #[arg(long)]
    into: PathBuf,
    /// The file-level cache. Keep it on the same filesystem as --into, or files are copied.
    #[arg(long, env = "PREWARM_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// How files reach --into: auto tries hardlink, then reflink, then copy, and reports which.
    #[arg(long, value_enum, default_value_t = LinkArg::Auto)]
    link_mode: LinkArg,
    /// Atomically swap an existing --into instead of refusing.
    #[arg(long)]
    replace: bool,
    /// Ask for zstd-compressed blocks and manifests. auto: yes, unless --from is a loopback
    /// host (localhost, 127.0.0.0/8, ::1), where compressing costs more time than the network
    /// saves. The server still sends small or incompressible objects as they are.
    #[arg(long, value_enum, default_value_t = CompressArg::Auto)]
    compress: CompressArg,
    /// Blocks downloaded at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

/// `--link-mode`: [`LinkMode`] as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LinkArg {
    /// Hard link; where the filesystem refuses (other device, link limit) reflink, then copy.
    /// The report says which were used.
    Auto,
    /// Hard links only: instant and shares disk, modes lose their write bits.
    Hardlink,
    /// Copy-on-write clones only (btrfs, XFS, …): instant, exact modes, own inodes.
    Reflink,
    /// Plain copies: exact modes, full disk cost.
    Copy,
}

impl From<LinkArg> for LinkMode {
    fn from(a: LinkArg) -> Self {
        match a {
            LinkArg::Auto => LinkMode::Auto,
            LinkArg::Hardlink => LinkMode::Hardlink,
            LinkArg::Reflink => LinkMode::Reflink,
            LinkArg::Copy => LinkMode::Copy,
        }
    }
}

/// `--compress`: [`Compress`] as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressArg {
    /// zstd, unless the URL's host is loopback (`localhost`, `127.0.0.0/8`, `::1`), where
    /// the network is faster than compressing and decompressing.
    Auto,
    /// Always ask for zstd (the server still sends small or incompressible objects as they are).
    Zstd,
    /// Never ask: every body travels as it is.
    Never,
}

impl From<CompressArg> for Compress {
    fn from(a: CompressArg) -> Self {
        match a {
            CompressArg::Auto => Compress::Auto,
            CompressArg::Zstd => Compress::Zstd,
            CompressArg::Never => Compress::Never,
        }
    }
}

/// Runs the pull. On SIGINT or SIGTERM it stops, removes the tree it was building, and exits
/// with the conventional 128 + the signal's number (130, 143).
pub(crate) async fn run(a: PullArgs) -> anyhow::Result<ExitCode> {
    let what: RuntimeRef = a.what.parse()?;
    let source = Remote::with_compress(&a.from, a.token.clone(), a.compress.into())?;
    let opts = PullOptions {
        into: a.into.clone(),
        cache_dir: a.cache_dir.unwrap_or_else(default_cache_dir),
        concurrency: a.concurrency.max(1),
        link_mode: a.link_mode.into(),
        replace: a.replace,
        progress: Bars::if_wanted(!a.json),
        cancel: CancellationToken::new(),
    };
    let (mut int, mut term) = (
        signal(SignalKind::interrupt()).context("handling SIGINT")?,
        signal(SignalKind::terminate()).context("handling SIGTERM")?,
    );
    let work = pull(&source, &what, &opts);
    tokio::pin!(work);
    let outcome = tokio::select! {
        r = &mut work => r,
        _ = int.recv() => return interrupted(&opts, work, 130).await,
        _ = term.recv() => return interrupted(&opts, work, 143).await,
    };
    let report = outcome
        .with_context(|| format!("pulling {what} from {} into {}", a.from, a.into.display()))?;
    cli_output::result(&report, a.json, |r| {
        format!(
            "{} → {}: {} files, {} bytes downloaded ({} on the wire) in {} blocks ({} reused), {} in {} ms",
            r.digest,
            a.into.display(),
            r.files,
            r.bytes_downloaded,
            r.bytes_on_wire,
            r.blocks_downloaded,
            r.blocks_reused,
            r.link_mode,
            r.duration_ms
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// Stops the pull (a tree being built is removed before it returns) and says so.
async fn interrupted(
    opts: &PullOptions,
    work: impl std::future::Future<Output = Result<PullReport, PullError>>,
    code: u8,
) -> anyhow::Result<ExitCode> {
    opts.cancel.cancel();
    match work.await {
        Ok(_) => cli_output::error(&format!(
            "interrupted after the tree was in place at {}",
            opts.into.display()
        )),
        Err(e) => cli_output::error(&format!("pull interrupted: {e}")),
    }
    Ok(ExitCode::from(code))
}
