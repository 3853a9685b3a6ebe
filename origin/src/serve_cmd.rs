//! `prewarm serve`: read the config, build and probe the tiers, then run the origin until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::serve::ListenerExt;
use clap::{Arg, ArgMatches, Args, FromArgMatches};
use prewarm_server::config::{Config, Given, Kind, Overrides, SETTINGS};
use prewarm_server::repo::Repo;
use prewarm_server::{self as server, AppState, EncodedCache, Limits, Token};
use prewarm_store::{
    DiskStore, RamCache, RedisClientCert, RedisOptions, RedisStore, RedisTls, Role, S3Options,
    S3Store, Tier, Tiered,
};

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

pub(crate) async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = Config::load_with(a.config.as_deref(), &a.settings.0)?;
    let cfg = cfg.resolve(Overrides::default(), |k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    })?;
    let listen = cfg
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)));
    let data_dir = data_dir(None, &cfg);
    let token = match cfg.token_file.as_ref() {
        Some(f) => {
            let raw = std::fs::read_to_string(f)
                .with_context(|| format!("reading token file {}", f.display()))?;
            Some(Arc::new(Token::new(&raw).with_context(|| {
                format!("token file {} is empty", f.display())
            })?))
        }
        None => None,
    };
    let limits = Limits::default();
    let (tiers, redis) = build_tiers(&cfg, &data_dir, limits.max_manifest_bytes).await?;
    let repo = Repo::new(
        Arc::new(tiers.clone()),
        Arc::new(tiers.clone()),
        data_dir.display().to_string(),
    );
    let sandboxes = prewarm_node::sandbox::node::start(
        &cfg.node,
        &cfg.sandbox,
        &data_dir,
        Arc::new(repo.clone()),
        redis,
    )
    .await
    .context("starting warming and sandboxes")?;
    if sandboxes.is_some() && token.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "sandbox routes run commands and no --token-file is set: anyone who can reach this \
             address can use them (set --token-file, or --no-sandboxes)"
        );
    }
    let state = AppState {
        repo,
        token,
        limits,
        compression_level: cfg.compression_level,
        encoded: EncodedCache::new(cfg.memory.max_encoded_bytes),
        sandboxes: sandboxes.clone(),
        tiers: Some(tiers.clone()),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    cli_output::line(&format!("listening on http://{addr}"));
    tracing::info!(%addr, tiers = %tiers.describe(), "origin serving");
    // Without TCP_NODELAY, a body written in several pieces waits on delayed ACKs (~40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
    });
    axum::serve(listener, server::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    if let Some(s) = &sandboxes {
        s.shutdown().await;
    }
    Ok(())
}

/// The local tier's directory: the flag, else the config's `data_dir`, else `prewarm-data`
/// (shared with `prewarm store verify`, which must look where `serve` writes).
pub(crate) fn data_dir(flag: Option<PathBuf>, cfg: &Config) -> PathBuf {
    flag.or_else(|| cfg.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("prewarm-data"))
}

/// Builds local → Redis → S3 from the config and probes each; the first that fails stops start-up.
/// Also returns the Redis client (URL and TLS files), for the warm-runtime registry.
async fn build_tiers(
    cfg: &Config,
    data_dir: &Path,
    max_manifest_bytes: u64,
) -> anyhow::Result<(Tiered, Option<redis::Client>)> {
    let local = if cfg.local.enabled {
        let disk = DiskStore::open(data_dir)
            .await
            .with_context(|| format!("local tier: opening data dir {}", data_dir.display()))?;
        Some(Tier::local_disk(disk))
    } else {
        None
    };
    let mut redis_client = None;
    let hot = match &cfg.redis {
        Some(r) => {
            // `resolve` checked that a client certificate comes with its key.
            let client = match (&r.client_cert_file, &r.client_key_file) {
                (Some(cert), Some(key)) => Some(RedisClientCert {
                    cert_file: cert.clone(),
                    key_file: key.clone(),
                }),
                _ => None,
            };
            let store = RedisStore::new(RedisOptions {
                url: r.url.clone(),
                namespace: r.namespace.clone(),
                ttl: Duration::from_secs(r.ttl_secs),
                max_object_bytes: r.max_block_bytes,
                timeout: Duration::from_millis(r.timeout_ms),
                tls: RedisTls {
                    ca_file: r.ca_file.clone(),
                    client,
                },
            })
            .with_context(|| format!("redis tier {}", r.url))?;
            if let Err(e) = store.probe().await {
                bail!("redis tier {} is not reachable: {e}", r.url);
            }
            redis_client = Some(store.client());
            let ttl = Duration::from_secs(r.ttl_secs);
            Some(
                Tier::new(Role::Hot, Arc::new(store))
                    .with_limits(r.max_block_bytes, r.budget_bytes, ttl)
                    .required(r.required),
            )
        }
        None => None,
    };
    let remote = match &cfg.s3 {
        Some(s) => {
            // Static keys (file, then AWS_* variables) win; without them, the AWS chain.
            let store = S3Store::new(&S3Options {
                endpoint: s.endpoint.clone(),
                region: s.region.clone(),
                bucket: s.bucket.clone(),
                prefix: s.prefix.clone(),
                credentials: s.static_credentials(),
                connect_timeout: Duration::from_millis(s.connect_timeout_ms),
                timeout: Duration::from_millis(s.timeout_ms),
            })
            .await;
            if let Err(e) = store.probe().await {
                let at = s.endpoint.as_deref().unwrap_or("AWS");
                bail!("s3 tier: bucket {:?} at {at} is not usable: {e}", s.bucket);
            }
            Some(Tier::new(Role::Remote, Arc::new(store)))
        }
        None => None,
    };
    let ram = (cfg.memory.max_bytes > 0)
        .then(|| RamCache::new(cfg.memory.max_bytes, cfg.memory.max_object_bytes));
    let tiers = Tiered::new(local, hot, remote, ram, max_manifest_bytes)?;
    Ok((tiers, redis_client))
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
