//! Start-up: build and probe the tiers from the config, start the node, and hand back the
//! state [`crate::app`] serves with the one token that shuts it all down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prewarm_node::sandbox::node::NodeStartError;
use prewarm_store::{
    DiskStore, RamCache, Records, RedisClientCert, RedisOptions, RedisStore, RedisTls, Role,
    S3Options, S3Store, StoreError, Tier, TierStackError, Tiered,
};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::repo::Repo;
use crate::{AppState, Auth, EncodedCache, Limits};

/// Why the origin did not start. Misconfiguration fails here, not on the first request.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tokens(#[from] crate::auth::TokensError),
    #[error("local tier: opening data dir {path}")]
    LocalTier {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    /// `url` is printed with its password masked.
    #[error("redis tier {url}")]
    Redis {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error("redis tier {url} is not reachable: {source}")]
    RedisDown { url: String, source: StoreError },
    #[error("s3 tier: bucket {bucket:?} at {at} is not usable: {source}")]
    S3 {
        bucket: String,
        at: String,
        source: StoreError,
    },
    #[error(transparent)]
    Stack(#[from] TierStackError),
    #[error("starting warming and sandboxes")]
    Node(#[source] NodeStartError),
    #[error("{0}")]
    Predict(String),
}

/// A started origin: what [`crate::app`] serves, and the one token that stops it.
pub struct Started {
    pub state: AppState,
    /// Cancel it to stop; then [`Started::stopped`] waits for the background work.
    pub shutdown: CancellationToken,
}

impl Started {
    /// Waits for [`Started::shutdown`], then stops warming and sandboxes and waits for them.
    pub async fn stopped(self) {
        self.shutdown.cancelled().await;
        if let Some(p) = &self.state.prediction {
            p.shutdown().await;
        }
        if let Some(s) = &self.state.sandboxes {
            s.shutdown().await;
        }
    }
}

/// Builds and probes the tiers, opens the node (unless sandboxes are off) and returns the
/// state. `cfg` has been through [`Config::resolve`].
pub async fn start(cfg: &Config) -> Result<Started, StartError> {
    let data_dir = cfg.data_dir_or_default();
    let auth = Auth::load(
        cfg.token_file.clone(),
        cfg.tokens_file.clone(),
        cfg.public_reads,
    )?;
    let limits = Limits::default();
    let (tiers, redis, redis_records) =
        build_tiers(cfg, &data_dir, limits.max_manifest_bytes, false).await?;
    let repo = Repo::new(
        Arc::new(tiers.clone()),
        Arc::new(tiers.clone()),
        data_dir.display().to_string(),
    );
    // Warmed runtimes go to this origin's own tiers (the writes it holds credentials for):
    // shared ones reach other nodes; the local one serves this node's own re-warms.
    let shared: Arc<dyn prewarm_client::transfer::Sink> = Arc::new(repo.clone());
    let sandboxes = prewarm_node::sandbox::node::start(
        &cfg.node,
        &cfg.sandbox,
        &data_dir,
        Arc::new(repo.clone()),
        Some(shared),
        redis,
    )
    .await
    .map_err(StartError::Node)?;
    let listen = cfg.listen_addr();
    if sandboxes.is_some() && !auth.enabled() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "sandbox routes run commands and no --tokens-file or --token-file is set: anyone who \
             can reach this address can use them (set --tokens-file, or --no-sandboxes)"
        );
    }
    let prediction = match &sandboxes {
        Some(service) => Some(start_prediction(cfg, service, &tiers, redis_records).await?),
        None => None,
    };
    let state = AppState {
        repo,
        auth: Arc::new(auth),
        limits,
        compression_level: cfg.compression_level,
        encoded: EncodedCache::new(cfg.memory.max_encoded_bytes),
        sandboxes,
        tiers: Some(tiers),
        prediction,
    };
    Ok(Started {
        state,
        shutdown: CancellationToken::new(),
    })
}

/// The tier stack `prewarm serve` would build from `cfg`, probed, for tools that run beside a
/// live server (`prewarm gc`): the data directory is used as it is (nothing cleared or
/// created), and it must already be one. No in-process memory tier.
pub async fn open_tiers(cfg: &Config) -> Result<Tiered, StartError> {
    let data_dir = cfg.data_dir_or_default();
    let mut cfg = cfg.clone();
    cfg.memory.max_bytes = 0;
    let (tiers, _, _) =
        build_tiers(&cfg, &data_dir, Limits::default().max_manifest_bytes, true).await?;
    Ok(tiers)
}

/// Builds local → Redis → S3 from the config and probes each; the first that fails stops start-up.
/// Also returns the Redis client (URL and TLS files), for the warm-runtime registry.
/// `beside_server`: open the data directory without clearing `tmp/` (a server may be writing).
async fn build_tiers(
    cfg: &Config,
    data_dir: &Path,
    max_manifest_bytes: u64,
    beside_server: bool,
) -> Result<(Tiered, Option<redis::Client>, Option<Arc<dyn Records>>), StartError> {
    let local = if cfg.local.enabled {
        let disk = if beside_server {
            if !data_dir.join("blocks-v1").is_dir() {
                return Err(StartError::LocalTier {
                    path: data_dir.to_owned(),
                    source: StoreError::other(
                        "disk",
                        "not a prewarm data directory (no blocks-v1/)",
                    ),
                });
            }
            DiskStore::beside_server(data_dir)
        } else {
            DiskStore::open(data_dir)
                .await
                .map_err(|source| StartError::LocalTier {
                    path: data_dir.to_owned(),
                    source,
                })?
        };
        Some(Tier::local_disk(disk))
    } else {
        None
    };
    let mut redis_client = None;
    let mut redis_records = None;
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
            .map_err(|source| StartError::Redis {
                url: r.url.to_string(),
                source,
            })?;
            if let Err(source) = store.probe().await {
                return Err(StartError::RedisDown {
                    url: r.url.to_string(),
                    source,
                });
            }
            redis_client = Some(store.client());
            let store = Arc::new(store);
            redis_records = Some(store.clone() as Arc<dyn Records>);
            let ttl = Duration::from_secs(r.ttl_secs);
            Some(
                Tier::new(Role::Hot, store)
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
            if let Err(source) = store.probe().await {
                return Err(StartError::S3 {
                    bucket: s.bucket.clone(),
                    at: s.endpoint.clone().unwrap_or_else(|| "AWS".into()),
                    source,
                });
            }
            Some(Tier::new(Role::Remote, Arc::new(store)))
        }
        None => None,
    };
    let ram = (cfg.memory.max_bytes > 0)
        .then(|| RamCache::new(cfg.memory.max_bytes, cfg.memory.max_object_bytes));
    let tiers = Tiered::new(local, hot, remote, ram, max_manifest_bytes)?;
    Ok((tiers, redis_client, redis_records))
}

/// The predictor of `[predict]`, its usage kept in Redis when configured, else in the
/// durable tier's records.
async fn start_prediction(
    cfg: &Config,
    service: &prewarm_node::sandbox::SandboxService,
    tiers: &Tiered,
    redis: Option<Arc<dyn Records>>,
) -> Result<crate::predict::Prediction, StartError> {
    use crate::predict::{Clock, Prediction, UsageLog};
    // `Config::resolve` checked both.
    let policy = cfg.predict.policy_kind().map_err(StartError::Predict)?;
    let manual = cfg.predict.manual_clock().map_err(StartError::Predict)?;
    let (records, store): (Arc<dyn Records>, &'static str) = match redis {
        Some(r) => (r, "redis"),
        None => (Arc::new(tiers.clone()), "durable tier"),
    };
    let usage = UsageLog::new(
        records,
        store,
        service.warmer().node_name(),
        cfg.predict.max_events_per_hour,
        cfg.predict.retention_hours,
    );
    let clock = if manual {
        Clock::manual()
    } else {
        Clock::System
    };
    Ok(Prediction::start(policy, clock, service.clone(), Some(usage)).await)
}
