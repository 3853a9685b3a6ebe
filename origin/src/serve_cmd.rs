//! `prewarm serve`: open and probe the stores, then run the origin until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use prewarm_origin::cli_output;
use prewarm_origin::repo::Repo;
use prewarm_origin::server::{self, AppState, Limits, Token};
use prewarm_origin::store::DiskStore;

#[derive(Args)]
pub(crate) struct ServeArgs {
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

pub(crate) async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let token = match &a.token_file {
        Some(f) => {
            let raw = std::fs::read_to_string(f)
                .with_context(|| format!("reading token file {}", f.display()))?;
            Some(Arc::new(Token::new(&raw).with_context(|| {
                format!("token file {} is empty", f.display())
            })?))
        }
        None => None,
    };
    let disk = Arc::new(
        DiskStore::open(&a.data_dir)
            .await
            .with_context(|| format!("opening data dir {}", a.data_dir.display()))?,
    );
    let repo = Repo::new(disk.clone(), disk, a.data_dir.display().to_string());
    let state = AppState {
        repo,
        token,
        limits: Limits::default(),
    };
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr()?;
    cli_output::line(&format!("listening on http://{addr}"));
    tracing::info!(%addr, data_dir = %a.data_dir.display(), "origin serving");
    axum::serve(listener, server::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
