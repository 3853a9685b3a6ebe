//! The `prewarm` CLI: `serve` the origin, `push` a runtime, `pull` one onto this host.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use prewarm_origin::cli_output;
use prewarm_origin::pack::PackLimits;
use prewarm_origin::push::{push, PushOptions};
use prewarm_origin::remote::Remote;
use prewarm_origin::repo::Repo;
use prewarm_origin::server::{self, AppState, Limits, Token};
use prewarm_origin::store::DiskStore;
use prewarm_origin::transfer::Sink;
use prewarm_shared::{RuntimeName, RuntimeRef, Tag};
use tracing_subscriber::EnvFilter;

mod pull_cmd;

#[derive(Parser)]
#[command(name = "prewarm", version, about = "Content-addressed runtime distribution for fast sandbox starts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the origin server on an embedded on-disk store.
    Serve(ServeArgs),
    /// Pack a directory or runtime pack and publish it as NAME:TAG.
    Push(PushArgs),
    /// Fetch a runtime and materialise it by hard links from the local cache.
    Pull(pull_cmd::PullArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:7070", env = "PREWARM_LISTEN")]
    listen: SocketAddr,
    /// Where the embedded store keeps blocks, manifests and tags.
    #[arg(long, default_value = "prewarm-data", env = "PREWARM_DATA_DIR")]
    data_dir: PathBuf,
    /// File holding the bearer token required for writes. Without it, writes are open.
    #[arg(long, env = "PREWARM_TOKEN_FILE")]
    token_file: Option<PathBuf>,
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

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("PREWARM_LOG").unwrap_or_else(|_| EnvFilter::new("warn,prewarm_origin=info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Push(a) => push_cmd(a).await,
        Command::Pull(a) => pull_cmd::run(a).await,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let token = match &a.token_file {
        Some(f) => {
            let raw = std::fs::read_to_string(f).with_context(|| format!("reading token file {}", f.display()))?;
            Some(Arc::new(Token::new(&raw).with_context(|| format!("token file {} is empty", f.display()))?))
        }
        None => None,
    };
    let disk = Arc::new(DiskStore::open(&a.data_dir).await.with_context(|| format!("opening data dir {}", a.data_dir.display()))?);
    let repo = Repo::new(disk.clone(), disk, a.data_dir.display().to_string());
    let state = AppState { repo, token, limits: Limits::default() };
    let listener = tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr()?;
    cli_output::line(&format!("listening on http://{addr}"));
    tracing::info!(%addr, data_dir = %a.data_dir.display(), "origin serving");
    axum::serve(listener, server::app(state)).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// An origin URL, or a local store directory.
async fn sink_for(to: &str, token: Option<String>) -> anyhow::Result<Box<dyn Sink>> {
    if to.starts_with("http://") || to.starts_with("https://") {
        return Ok(Box::new(Remote::new(to, token)?));
    }
    let disk = Arc::new(DiskStore::open(to).await.with_context(|| format!("opening store directory {to}"))?);
    Ok(Box::new(Repo::new(disk.clone(), disk, to)))
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
    let opts = PushOptions { limits: PackLimits { max_total_bytes: a.max_unpacked_bytes, max_entries: a.max_entries }, ..PushOptions::default() };
    let report = push(&a.src, &name, &tag, sink.as_ref(), opts).await.with_context(|| format!("pushing {} to {}", a.src.display(), a.to))?;
    cli_output::result(&report, a.json, |r| r.digest.to_string());
    Ok(())
}
