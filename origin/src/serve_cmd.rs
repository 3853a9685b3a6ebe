//! `prewarm serve`: read the config (file, flags, variables), start the origin, serve until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Arg, ArgMatches, Args, FromArgMatches};
use prewarm_server::config::{Config, Given, Kind, Overrides, SETTINGS};
use prewarm_server::{self as server, ConnLimits};

use crate::cli_output;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// TOML config file (`examples/prewarm.toml` documents every key). Flags and their
    /// environment variables override it.
    #[arg(long, env = "PREWARM_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingArgs,
}

/// One flag (reading its environment variable too) per setting of the config, from
/// [`SETTINGS`].
pub(crate) struct SettingArgs(Vec<Given>);

impl SettingArgs {
    /// The settings given as flags or variables.
    pub(crate) fn given(&self) -> &[Given] {
        &self.0
    }
}

impl FromArgMatches for SettingArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let given = SETTINGS
            .iter()
            .filter_map(|s| {
                let value = m.get_one::<String>(s.flag)?.clone();
                Some(Given { setting: *s, value })
            })
            .collect();
        Ok(SettingArgs(given))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for SettingArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.args(SETTINGS.iter().map(|s| {
            let arg = Arg::new(s.flag)
                .long(s.flag)
                .env(s.env)
                .help(s.help)
                .value_name("VALUE")
                .hide_env_values(true);
            match s.kind {
                Kind::Switch | Kind::Off => arg.num_args(0..=1).default_missing_value("true"),
                Kind::Text | Kind::Integer => arg,
            }
        }))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// The config `serve` runs with: the file, then flags and variables, checked.
pub(crate) fn load(a: &ServeArgs) -> anyhow::Result<Config> {
    let cfg = Config::load_with(a.config.as_deref(), &a.settings.0)?;
    Ok(cfg.resolve(Overrides::default(), |k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    })?)
}

/// Serves with `cfg` (from [`load`]) until SIGINT or SIGTERM.
pub(crate) async fn run(cfg: Config) -> anyhow::Result<()> {
    let started = server::start(&cfg).await?;
    let listen = cfg.listen_addr();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    cli_output::line(&format!("listening on http://{addr}"));
    let tiers = started.state.tiers.as_ref().map(|t| t.describe());
    tracing::info!(%addr, tiers = tiers.as_deref().unwrap_or("-"), "origin serving");
    let conns = ConnLimits {
        header_timeout: Duration::from_millis(cfg.http.header_timeout_ms),
        idle_timeout: Duration::from_secs(cfg.http.idle_timeout_secs),
        max_connections: cfg.http.max_connections,
    };
    #[cfg(unix)]
    let hup = tokio::spawn(reload_on_hangup(
        started.state.auth.clone(),
        started.shutdown.clone(),
    ));
    let shutdown = started.shutdown.clone();
    server::serve(
        listener,
        server::app(started.state.clone()),
        conns,
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        },
    )
    .await;
    started.shutdown.cancel();
    #[cfg(unix)]
    let _ = hup.await;
    started.stopped().await;
    Ok(())
}

/// SIGHUP re-reads the token files; a file that does not load keeps the tokens already in
/// use (and says why). Ends with the shutdown token.
#[cfg(unix)]
async fn reload_on_hangup(
    auth: std::sync::Arc<server::Auth>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: tokens are only read at start");
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        if !auth.enabled() {
            continue;
        }
        match auth.reload() {
            Ok(n) => tracing::info!(tokens = n, "SIGHUP: tokens reloaded"),
            Err(e) => tracing::error!(
                error = %anyhow::Error::from(e),
                "SIGHUP: tokens not reloaded; the previous ones stay valid"
            ),
        }
    }
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
