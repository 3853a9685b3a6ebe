//! `prewarm serve`'s configuration: one TOML file (`--config`), overridden by flags and environment.
//!
//! ```toml
//! listen = "0.0.0.0:7070"
//! data_dir = "/var/lib/prewarm"
//!
//! [http]
//! header_timeout_ms = 10000           # to send a request's headers
//! idle_timeout_secs = 120             # nothing in flight, no byte moved → closed
//! max_connections = 4096              # more wait in the listen backlog
//!
//! [local]
//! enabled = true                      # keep the local disk tier (false: stateless origin)
//!
//! [memory]
//! max_bytes = 268435456               # verified small objects kept in the origin's memory
//!
//! [redis]
//! url = "redis://:secret@10.0.0.5:6379/0"  # rediss://… for TLS
//! max_block_bytes = 4194304           # bigger blocks stay on disk and in S3
//! budget_bytes = 536870912            # what this origin may add to Redis per TTL window
//! # ca_file = "/etc/prewarm/redis-ca.pem"   # rediss:// with a private CA
//!
//! [s3]
//! endpoint = "http://10.0.0.6:9000"   # omit for AWS
//! region = "eu-west-1"
//! bucket = "prewarm-runtimes"
//! prefix = "prod/"
//! ```
//! Precedence: flag > environment variable > file > default. S3 static keys come from the file
//! or the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`
//! variables (the environment wins); without any, the standard AWS chain (`AWS_PROFILE` and the
//! profile files, web identity, ECS task role, EC2 instance profile) provides them. Secrets are
//! held in [`Secret`] and never printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Flag and environment names of the overrides, declared once.
pub mod overrides {
    pub const REDIS_URL: &str = "redis-url";
    pub const REDIS_URL_ENV: &str = "PREWARM_REDIS_URL";
    pub const S3_ENDPOINT: &str = "s3-endpoint";
    pub const S3_ENDPOINT_ENV: &str = "PREWARM_S3_ENDPOINT";
    pub const S3_BUCKET: &str = "s3-bucket";
    pub const S3_BUCKET_ENV: &str = "PREWARM_S3_BUCKET";
    pub const S3_REGION: &str = "s3-region";
    pub const S3_REGION_ENV: &str = "PREWARM_S3_REGION";
    pub const S3_PREFIX: &str = "s3-prefix";
    pub const S3_PREFIX_ENV: &str = "PREWARM_S3_PREFIX";
    pub const HEADER_TIMEOUT_MS: &str = "http-header-timeout-ms";
    pub const HEADER_TIMEOUT_MS_ENV: &str = "PREWARM_HTTP_HEADER_TIMEOUT_MS";
    pub const IDLE_TIMEOUT_SECS: &str = "http-idle-timeout-secs";
    pub const IDLE_TIMEOUT_SECS_ENV: &str = "PREWARM_HTTP_IDLE_TIMEOUT_SECS";
    pub const MAX_CONNECTIONS: &str = "http-max-connections";
    pub const MAX_CONNECTIONS_ENV: &str = "PREWARM_HTTP_MAX_CONNECTIONS";
    /// The standard AWS variables, read as the SDKs do.
    pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
    pub const AWS_REGION: &str = "AWS_REGION";
    pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
}

mod predict;
mod settings;
mod telemetry;

pub use predict::{PredictConfig, MAX_EVENTS_PER_HOUR};
pub use prewarm_node::sandbox::node::{NodeSettings, SandboxSettings};
pub use prewarm_store::{Secret, SecretUrl};
pub use settings::{Given, Kind, Setting, SETTINGS};
pub use telemetry::TelemetryConfig;

/// The whole file. Every key is optional; an empty file is the embedded default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; `--listen` overrides it. Default `127.0.0.1:7070`.
    pub listen: Option<SocketAddr>,
    /// Directory of the local disk tier; `--data-dir` overrides it. Default `prewarm-data`.
    pub data_dir: Option<PathBuf>,
    /// File holding one bearer token (plaintext) that acts as an `admin` token: the form
    /// from before scoped tokens. `--token-file`.
    pub token_file: Option<PathBuf>,
    /// The tokens file: `[[token]]` entries of sha256 hash, scope (`read`, `push`, `sandbox`,
    /// `admin`), user (sandbox tokens) and name; `prewarm token issue` makes them. Re-read on
    /// SIGHUP. `--tokens-file`.
    pub tokens_file: Option<PathBuf>,
    /// Reads (blocks, manifests, tags, `/metrics`) need no token. Default: true unless
    /// `tokens_file` is set. `--public-reads`.
    pub public_reads: Option<bool>,
    /// zstd level (1-19) for blocks and manifests sent to clients that accept zstd; 0 sends
    /// identity always. Bodies that shrink less than 10 % go out as they are. Default 1.
    #[serde(default = "default_compression_level")]
    pub compression_level: i32,
    /// Connections: how long a client may take, and how many may be open.
    #[serde(default)]
    pub http: HttpConfig,
    /// The local disk tier.
    #[serde(default)]
    pub local: LocalConfig,
    /// The in-process cache of verified small objects, in front of every tier.
    #[serde(default)]
    pub memory: MemoryConfig,
    /// The hot tier. Absent: no Redis.
    pub redis: Option<RedisConfig>,
    /// The durable regional tier. Absent: the local disk is the durable tier.
    pub s3: Option<S3Config>,
    /// Warming on this host: the node directory, workers, the jail's tools.
    #[serde(default)]
    pub node: NodeSettings,
    /// Sandboxes: whether they are served, their timeouts and resource limits.
    #[serde(default)]
    pub sandbox: SandboxSettings,
    /// Trace export over OTLP.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Predictive warming: the policy, its clock, how long usage is kept.
    #[serde(default)]
    pub predict: PredictConfig,
}

/// `[http]`: what one client may hold of the origin. Without them, a client that sends half a
/// request line keeps its connection (and a task) forever.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Time to send a request's headers, in milliseconds, from when the connection is ready
    /// for one (for HTTP/1, also the longest wait for the next request on a kept-alive
    /// connection). `--http-header-timeout-ms`. Default 10 000.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_ms: u64,
    /// A connection with no request in flight that sends and receives nothing for this many
    /// seconds is closed. `--http-idle-timeout-secs`. Default 120.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Connections open at once; the next one waits in the listen backlog until one closes.
    /// `--http-max-connections`. Default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: default_header_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

/// `[local]`: the hottest tier, on this machine's disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Keep blocks and manifests on local disk. `false` (only with `[s3]`) makes the origin
    /// stateless: every read goes to Redis or S3.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[memory]`: verified blocks and manifests kept in this process, so a hot object is served
/// without a disk read, a Redis round trip or a re-hash. Objects are immutable, so it never
/// goes stale.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Bytes it may hold; `0` turns it off. Default 256 MiB.
    #[serde(default = "default_memory_max")]
    pub max_bytes: u64,
    /// Objects larger than this are never kept (they stream from disk or come from S3).
    /// Default 1 MiB.
    #[serde(default = "default_memory_max_object")]
    pub max_object_bytes: u64,
    /// Bytes of zstd-compressed bodies kept so a popular block is compressed once, not once per
    /// request (see `prewarm serve --compression-level`); `0` keeps none. Default 128 MiB.
    #[serde(default = "default_memory_max_encoded")]
    pub max_encoded_bytes: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_memory_max(),
            max_object_bytes: default_memory_max_object(),
            max_encoded_bytes: default_memory_max_encoded(),
        }
    }
}

/// `[redis]`: the hot tier, shared by the origins of a region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS (managed services
    /// such as ElastiCache with in-transit encryption). Printed with the password masked.
    pub url: SecretUrl,
    /// First segment of every key (`<namespace>:v1:…`), to share one Redis between deployments.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Lifetime of every key, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
    /// Blocks (and manifests) larger than this are never put in Redis.
    #[serde(default = "default_redis_max_block")]
    pub max_block_bytes: u64,
    /// Bytes this origin may add to Redis within one TTL window; past it, backfills are skipped.
    /// Client-side: the server's own `maxmemory` is not ours to set on a shared Redis.
    #[serde(default = "default_budget")]
    pub budget_bytes: u64,
    /// Limit on connecting and on each command, in milliseconds. Past it Redis counts as down.
    #[serde(default = "default_redis_timeout")]
    pub timeout_ms: u64,
    /// When true, `/readyz` answers 503 while Redis is down. By default requests fail over to
    /// the next tier and the origin stays ready.
    #[serde(default)]
    pub required: bool,
    /// PEM file of the CA certificate(s) that signed the server's certificate, for a Redis
    /// with a private CA. It replaces the built-in public roots: only servers it signed are
    /// trusted. Needs a `rediss://` URL.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) this origin presents to a Redis that requires client
    /// certificates (mutual TLS). Needs `client_key_file` and a `rediss://` URL.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
}

/// `[s3]`: the durable tier. Writes are acknowledged only once they are here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of an S3-compatible server (`http://host:port`); omit for AWS. Path-style
    /// addressing is always used.
    pub endpoint: Option<String>,
    /// Region to sign for. Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the `region` of the
    /// selected AWS profile (`AWS_PROFILE`, `AWS_CONFIG_FILE`), then `us-east-1`.
    pub region: Option<String>,
    /// Bucket name; it must exist (the probe at start checks it).
    pub bucket: String,
    /// Prepended to every key, e.g. `prod/`.
    #[serde(default)]
    pub prefix: String,
    /// Access key id; the `AWS_ACCESS_KEY_ID` variable overrides it. Without a key pair here or
    /// in the variables, the standard AWS chain is used (profiles, web identity, ECS, IMDS).
    pub access_key_id: Option<String>,
    /// Secret access key; the `AWS_SECRET_ACCESS_KEY` variable overrides it.
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary credentials; `AWS_SESSION_TOKEN` overrides it.
    pub session_token: Option<Secret>,
    /// Limit on establishing a connection, in milliseconds.
    #[serde(default = "default_s3_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Limit on one request attempt (and on reading one object body), in milliseconds.
    #[serde(default = "default_s3_timeout")]
    pub timeout_ms: u64,
}

impl Config {
    /// Where `prewarm serve` listens: `listen`, else `127.0.0.1:7070`.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)))
    }

    /// The local tier's directory, and the node directory's parent: `data_dir`, else
    /// `prewarm-data` (`prewarm store verify` looks where `serve` writes).
    pub fn data_dir_or_default(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("prewarm-data"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: None,
            data_dir: None,
            token_file: None,
            tokens_file: None,
            public_reads: None,
            compression_level: default_compression_level(),
            http: HttpConfig::default(),
            local: LocalConfig::default(),
            memory: MemoryConfig::default(),
            redis: None,
            s3: None,
            node: NodeSettings::default(),
            sandbox: SandboxSettings::default(),
            telemetry: TelemetryConfig::default(),
            predict: PredictConfig::default(),
        }
    }
}

fn default_compression_level() -> i32 {
    crate::DEFAULT_COMPRESSION_LEVEL
}
fn yes() -> bool {
    true
}
fn default_header_timeout() -> u64 {
    10_000
}
fn default_idle_timeout() -> u64 {
    120
}
fn default_max_connections() -> usize {
    4096
}
fn default_memory_max() -> u64 {
    prewarm_store::RamCacheDefaults::MAX_BYTES
}
fn default_memory_max_encoded() -> u64 {
    128 << 20
}
fn default_memory_max_object() -> u64 {
    prewarm_store::RamCacheDefaults::MAX_OBJECT_BYTES
}
fn default_namespace() -> String {
    "prewarm".into()
}
fn default_ttl() -> u64 {
    3600
}
fn default_redis_max_block() -> u64 {
    4 << 20
}
fn default_budget() -> u64 {
    512 << 20
}
fn default_redis_timeout() -> u64 {
    500
}
fn default_s3_connect_timeout() -> u64 {
    1000
}
fn default_s3_timeout() -> u64 {
    10_000
}

/// Values given on the command line or in the environment; `None` leaves the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub redis_url: Option<SecretUrl>,
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
    pub s3_prefix: Option<String>,
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            source: Box::new(e),
        })
    }

    /// Applies flag/env overrides, then the standard AWS variables (`env` looks them up), and checks the result.
    pub fn resolve(
        mut self,
        o: Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        use overrides as k;
        let h = &mut self.http;
        h.header_timeout_ms = o.header_timeout_ms.unwrap_or(h.header_timeout_ms);
        h.idle_timeout_secs = o.idle_timeout_secs.unwrap_or(h.idle_timeout_secs);
        h.max_connections = o.max_connections.unwrap_or(h.max_connections);
        for (value, key) in [
            (h.header_timeout_ms, "header_timeout_ms"),
            (h.idle_timeout_secs, "idle_timeout_secs"),
            (h.max_connections as u64, "max_connections"),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("http: {key} must be above 0")));
            }
        }
        if let Some(url) = o.redis_url {
            match &mut self.redis {
                Some(r) => r.url = url,
                None => self.redis = Some(RedisConfig::with_url(url)),
            }
        }
        if o.s3_endpoint.is_some()
            || o.s3_bucket.is_some()
            || o.s3_region.is_some()
            || o.s3_prefix.is_some()
        {
            let s3 = self.s3.get_or_insert_with(S3Config::unset);
            s3.endpoint = o.s3_endpoint.or(s3.endpoint.take());
            s3.region = o.s3_region.or(s3.region.take());
            if let Some(b) = o.s3_bucket {
                s3.bucket = b;
            }
            if let Some(p) = o.s3_prefix {
                s3.prefix = p;
            }
        }
        if let Some(s3) = &mut self.s3 {
            if s3.bucket.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "s3: a bucket is required (`bucket` in [s3] or --{})",
                    k::S3_BUCKET
                )));
            }
            if let Some(id) = env(k::AWS_ACCESS_KEY_ID) {
                s3.access_key_id = Some(id);
            }
            if let Some(secret) = env(k::AWS_SECRET_ACCESS_KEY) {
                s3.secret_access_key = Some(Secret::new(secret));
            }
            if let Some(token) = env(k::AWS_SESSION_TOKEN) {
                s3.session_token = Some(Secret::new(token));
            }
            if s3.region.is_none() {
                // Still `None`: the S3 store asks the AWS profile, then uses `us-east-1`.
                s3.region = env(k::AWS_REGION).or_else(|| env(k::AWS_DEFAULT_REGION));
            }
            if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                return Err(ConfigError::Invalid(
                    "s3: access_key_id and secret_access_key must be given together".into(),
                ));
            }
        }
        if !(0..=19).contains(&self.compression_level) {
            return Err(ConfigError::Invalid(format!(
                "compression_level {} is not in 0..=19",
                self.compression_level
            )));
        }
        self.telemetry.check()?;
        if !self.local.enabled && self.s3.is_none() {
            return Err(ConfigError::Invalid(
                "local.enabled = false needs [s3]: something has to be durable".into(),
            ));
        }
        self.predict.check().map_err(ConfigError::Invalid)?;
        if let Some(r) = &self.redis {
            if r.ttl_secs == 0 || r.timeout_ms == 0 {
                return Err(ConfigError::Invalid(
                    "redis: ttl_secs and timeout_ms must be positive".into(),
                ));
            }
            r.check_tls()?;
        }
        Ok(self)
    }
}

impl RedisConfig {
    fn with_url(url: SecretUrl) -> Self {
        Self {
            url,
            namespace: default_namespace(),
            ttl_secs: default_ttl(),
            max_block_bytes: default_redis_max_block(),
            budget_bytes: default_budget(),
            timeout_ms: default_redis_timeout(),
            required: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }

    /// Whether the URL asks for TLS (`rediss://`, or Valkey's `valkeys://`).
    pub fn is_tls(&self) -> bool {
        let scheme = self.url.expose().split_once("://").map(|(s, _)| s);
        scheme
            .is_some_and(|s| s.eq_ignore_ascii_case("rediss") || s.eq_ignore_ascii_case("valkeys"))
    }

    /// The TLS files only mean something over TLS, and a client certificate needs its key.
    fn check_tls(&self) -> Result<(), ConfigError> {
        let set: Vec<&str> = [
            ("ca_file", &self.ca_file),
            ("client_cert_file", &self.client_cert_file),
            ("client_key_file", &self.client_key_file),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.is_some().then_some(k))
        .collect();
        if !set.is_empty() && !self.is_tls() {
            return Err(ConfigError::Invalid(format!(
                "redis: {} set but the url {} is not TLS; use rediss://",
                set.join(", "),
                self.url
            )));
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(ConfigError::Invalid(
                "redis: client_cert_file and client_key_file must be given together".into(),
            ));
        }
        Ok(())
    }
}

impl S3Config {
    /// The key pair to sign with, once [`Config::resolve`] has applied the `AWS_*` variables;
    /// `None` leaves it to the standard AWS chain.
    pub fn static_credentials(&self) -> Option<prewarm_store::S3Credentials> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => Some(prewarm_store::S3Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: self.session_token.clone(),
            }),
            _ => None,
        }
    }

    fn unset() -> Self {
        Self {
            endpoint: None,
            region: None,
            bucket: String::new(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            connect_timeout_ms: default_s3_connect_timeout(),
            timeout_ms: default_s3_timeout(),
        }
    }
}

#[cfg(test)]
mod tests;
