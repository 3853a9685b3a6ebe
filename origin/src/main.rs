//! The `prewarm` CLI: `serve` the origin, `push` a runtime or `import` an image, `pull` one onto this host.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use prewarm_client::pack::PackLimits;
use prewarm_client::push::{push, PushOptions};
use prewarm_client::remote::Remote;
use prewarm_client::transfer::Sink;
use prewarm_shared::{RuntimeName, RuntimeRef, Tag};

mod cache_cmd;
mod cli_output;
#[cfg(feature = "server")]
mod gc_cmd;
mod import_cmd;
mod progress;
mod pull_cmd;
mod sandbox_cmd;
#[cfg(feature = "server")]
mod serve_cmd;
#[cfg(feature = "server")]
mod simulate_cmd;
#[cfg(feature = "server")]
mod store_cmd;
mod telemetry;
#[cfg(feature = "server")]
mod token_cmd;

#[derive(Parser)]
#[command(
    name = "prewarm",
    version,
    about = "Content-addressed runtime distribution for fast sandbox starts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the origin server on an embedded on-disk store.
    #[cfg(feature = "server")]
    Serve(Box<serve_cmd::ServeArgs>),
    /// Pack a directory or runtime pack and publish it as NAME:TAG.
    Push(PushArgs),
    /// Import a container image (OCI layout, OCI archive, `docker save`) as runtime NAME:TAG.
    Import(Box<import_cmd::ImportArgs>),
    /// Fetch a runtime and materialise it by hard links from the local cache.
    Pull(pull_cmd::PullArgs),
    /// Maintain the local file cache that pulls link from.
    Cache(cache_cmd::CacheArgs),
    /// Maintain the origin's own store (`prewarm serve`'s data directory).
    #[cfg(feature = "server")]
    Store(store_cmd::StoreArgs),
    /// Delete what no tag, snapshot or paused sandbox reaches, in every tier (disk, Redis, S3).
    #[cfg(feature = "server")]
    Gc(Box<gc_cmd::GcArgs>),
    /// Create sandboxes, run commands in them, copy files in and out.
    Sandbox(sandbox_cmd::SandboxArgs),
    /// Warm a runtime on the origin's node without a sandbox.
    Warm(sandbox_cmd::WarmArgs),
    /// The origin's tiers, warm runtimes, queue and sandboxes.
    Status(sandbox_cmd::StatusArgs),
    /// Issue scoped bearer tokens for the origin's tokens file.
    #[cfg(feature = "server")]
    Token(token_cmd::TokenArgs),
    /// Replay a usage trace through a warming policy on a virtual clock (or sweep, or generate one).
    #[cfg(feature = "server")]
    Simulate(Box<simulate_cmd::SimulateArgs>),
}

#[derive(Args)]
struct PushArgs {
    /// A directory, or a runtime pack (a directory with meta.json, layers/, lock.json).
    src: PathBuf,
    /// NAME:TAG to publish under.
    #[arg(long)]
    name: String,
    /// Destination: an origin URL (`http://…`) or a local store directory.
    #[arg(long)]
    to: String,
    /// Bearer token for the origin's writes.
    #[arg(long, env = "PREWARM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print a JSON report instead of the digest.
    #[arg(long)]
    json: bool,
    /// Refuse layers that unpack to more than this many bytes in total.
    #[arg(long, default_value_t = PackLimits::default().max_total_bytes)]
    max_unpacked_bytes: u64,
    /// Refuse layers with more than this many entries in total.
    #[arg(long, default_value_t = PackLimits::default().max_entries)]
    max_entries: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs its work; the client commands print results and say only what went wrong.
    let default_filter = match cli.command {
        #[cfg(feature = "server")]
        Command::Serve(_) => {
            "warn,prewarm_client=info,prewarm_store=info,prewarm_node=info,prewarm_server=info"
        }
        _ => "warn",
    };
    // `serve` reads its config before anything else: it says where trace spans go.
    #[cfg(feature = "server")]
    let serve_cfg = match &cli.command {
        Command::Serve(a) => match serve_cmd::load(a) {
            Ok(c) => Some(c),
            Err(e) => {
                cli_output::error(&error_chain(&e));
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    #[cfg(feature = "server")]
    let otlp = serve_cfg.as_ref().and_then(|c| {
        Some(telemetry::Otlp {
            traces_url: c.telemetry.traces_url()?,
            service_name: c.telemetry.service_name.clone(),
        })
    });
    let _telemetry = match telemetry::init(
        default_filter,
        #[cfg(feature = "server")]
        otlp,
    ) {
        Ok(t) => t,
        Err(e) => {
            cli_output::error(&error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(
        cli,
        #[cfg(feature = "server")]
        serve_cfg,
    )) {
        Ok(code) => code,
        Err(e) => {
            cli_output::error(&error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause its parent's message already quotes
/// (many errors print their source inline, and anyhow's `{:#}` would repeat it).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// Runs the command; errors exit 1 (`main`), and a command may choose another status for an
/// outcome that is not an error (`cache verify` finding damage).
async fn run(
    cli: Cli,
    #[cfg(feature = "server")] serve_cfg: Option<prewarm_server::config::Config>,
) -> anyhow::Result<ExitCode> {
    match cli.command {
        #[cfg(feature = "server")]
        Command::Serve(_) => {
            let cfg = serve_cfg.context("serve: the config was not loaded")?;
            serve_cmd::run(cfg).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Push(a) => push_cmd(a).await.map(|()| ExitCode::SUCCESS),
        Command::Import(a) => import_cmd::run(*a).await.map(|()| ExitCode::SUCCESS),
        Command::Pull(a) => pull_cmd::run(a).await,
        Command::Cache(a) => cache_cmd::run(a).await,
        #[cfg(feature = "server")]
        Command::Store(a) => store_cmd::run(a).await,
        #[cfg(feature = "server")]
        Command::Gc(a) => gc_cmd::run(*a).await.map(|()| ExitCode::SUCCESS),
        Command::Sandbox(a) => sandbox_cmd::run(a).await,
        Command::Warm(a) => sandbox_cmd::warm(a).await,
        #[cfg(feature = "server")]
        Command::Token(a) => token_cmd::run(a),
        Command::Status(a) => sandbox_cmd::status(a).await,

        #[cfg(feature = "server")]
        Command::Simulate(a) => simulate_cmd::run(*a).await,
    }
}

/// An origin URL, or a local store directory.
async fn sink_for(to: &str, token: Option<String>) -> anyhow::Result<Box<dyn Sink>> {
    if to.starts_with("http://") || to.starts_with("https://") {
        return Ok(Box::new(Remote::new(to, token)?));
    }
    local_sink(to).await
}

/// A local store directory, written through the server's repository rules.
#[cfg(feature = "server")]
async fn local_sink(to: &str) -> anyhow::Result<Box<dyn Sink>> {
    use std::sync::Arc;

    use prewarm_server::repo::Repo;
    use prewarm_store::DiskStore;
    let disk = Arc::new(
        DiskStore::open(to)
            .await
            .with_context(|| format!("opening store directory {to}"))?,
    );
    Ok(Box::new(Repo::new(disk.clone(), disk, to)))
}

/// A client-only build has no store to write a directory with.
#[cfg(not(feature = "server"))]
async fn local_sink(to: &str) -> anyhow::Result<Box<dyn Sink>> {
    bail!("{to} is not an origin URL (http://… or https://…); this build pushes to origins only")
}

pub(crate) fn parse_name_tag(s: &str) -> anyhow::Result<(RuntimeName, Tag)> {
    match s.parse::<RuntimeRef>()? {
        RuntimeRef::Tagged(n, t) => Ok((n, t)),
        RuntimeRef::Digest(_) => bail!("--name must be NAME:TAG, not a digest"),
    }
}

async fn push_cmd(a: PushArgs) -> anyhow::Result<()> {
    let (name, tag) = parse_name_tag(&a.name)?;
    let sink = sink_for(&a.to, a.token).await?;
    let opts = PushOptions {
        limits: PackLimits {
            max_total_bytes: a.max_unpacked_bytes,
            max_entries: a.max_entries,
        },
        ..PushOptions::default()
    };
    let report = push(&a.src, &name, &tag, sink.as_ref(), opts)
        .await
        .with_context(|| format!("pushing {} to {}", a.src.display(), a.to))?;
    cli_output::result(&report, a.json, |r| r.digest.to_string());
    Ok(())
}
