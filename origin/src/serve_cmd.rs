//! `prewarm serve`: read the config, build and probe the tiers, then run the origin until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use prewarm_origin::cli_output;
use prewarm_origin::config::{overrides as o, Config, Overrides, SecretUrl};
use prewarm_origin::repo::Repo;
use prewarm_origin::server::{self, AppState, ConnLimits, EncodedCache, Limits, Token};
use prewarm_origin::store::{
    DiskStore, RamCache, RedisClientCert, RedisOptions, RedisStore, RedisTls, Role, S3Options,
    S3Store, Tier, Tiered,
};

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// TOML config file (see `prewarm_origin::config` for every key). Flags override it.
    #[arg(long, env = "PREWARM_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (`127.0.0.1:0` picks a free port; the bound address is printed).
    /// Default `127.0.0.1:7070`.
    #[arg(long, env = "PREWARM_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory of the local disk tier (blocks, manifests, tags). Default `prewarm-data`.
    #[arg(long, env = "PREWARM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// File holding the bearer token required for writes. Without it, writes are open.
    #[arg(long, env = "PREWARM_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Redis URL of the hot tier (`redis://[user:pass@]host:port[/db]`, `rediss://…` for TLS).
    #[arg(long = o::REDIS_URL, env = o::REDIS_URL_ENV, hide_env_values = true)]
    redis_url: Option<String>,
    /// Endpoint of an S3-compatible server for the durable tier (omit for AWS).
    #[arg(long = o::S3_ENDPOINT, env = o::S3_ENDPOINT_ENV)]
    s3_endpoint: Option<String>,
    /// Bucket of the durable tier; setting it enables S3.
    #[arg(long = o::S3_BUCKET, env = o::S3_BUCKET_ENV)]
    s3_bucket: Option<String>,
    /// Region to sign S3 requests for.
    #[arg(long = o::S3_REGION, env = o::S3_REGION_ENV)]
    s3_region: Option<String>,
    /// Prefix of every S3 key (e.g. `prod/`).
    #[arg(long = o::S3_PREFIX, env = o::S3_PREFIX_ENV)]
    s3_prefix: Option<String>,
    /// Milliseconds a client has to send a request's headers (`[http] header_timeout_ms`).
    #[arg(long = o::HEADER_TIMEOUT_MS, env = o::HEADER_TIMEOUT_MS_ENV)]
    http_header_timeout_ms: Option<u64>,
    /// Seconds a connection may sit with nothing in flight (`[http] idle_timeout_secs`).
    #[arg(long = o::IDLE_TIMEOUT_SECS, env = o::IDLE_TIMEOUT_SECS_ENV)]
    http_idle_timeout_secs: Option<u64>,
    /// Connections open at once; more wait to be accepted (`[http] max_connections`).
    #[arg(long = o::MAX_CONNECTIONS, env = o::MAX_CONNECTIONS_ENV)]
    http_max_connections: Option<usize>,
    /// zstd level (1-19) for blocks and manifests sent to clients that accept zstd; 0 = off,
    /// always identity. Bodies that shrink less than 10 % go out as they are.
    #[arg(
        long,
        env = "PREWARM_COMPRESSION_LEVEL",
        default_value_t = server::DEFAULT_COMPRESSION_LEVEL,
        value_parser = clap::value_parser!(i32).range(0..=19),
    )]
    compression_level: i32,
    #[command(flatten)]
    node: prewarm_origin::sandbox::node::NodeArgs,
}

pub(crate) async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let file = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let overrides = Overrides {
        redis_url: a.redis_url.map(SecretUrl::new),
        s3_endpoint: a.s3_endpoint,
        s3_bucket: a.s3_bucket,
        s3_region: a.s3_region,
        s3_prefix: a.s3_prefix,
        header_timeout_ms: a.http_header_timeout_ms,
        idle_timeout_secs: a.http_idle_timeout_secs,
        max_connections: a.http_max_connections,
    };
    let cfg = file.resolve(overrides, |k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    })?;
    let listen = a
        .listen
        .or(cfg.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)));
    let data_dir = data_dir(a.data_dir, &cfg);
    let token = match a.token_file.as_ref().or(cfg.token_file.as_ref()) {
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
    let sandboxes = a
        .node
        .start(&data_dir, Arc::new(repo.clone()), redis)
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
        compression_level: a.compression_level,
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
    let conns = ConnLimits {
        header_timeout: Duration::from_millis(cfg.http.header_timeout_ms),
        idle_timeout: Duration::from_secs(cfg.http.idle_timeout_secs),
        max_connections: cfg.http.max_connections,
    };
    server::serve(listener, server::app(state), conns, shutdown_signal()).await;
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
