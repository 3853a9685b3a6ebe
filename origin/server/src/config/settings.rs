//! Every setting of `prewarm.toml` with its one flag and one environment variable, declared once.
//!
//! `prewarm serve` turns this table into its flags (each reading its variable too), and
//! [`Config::load_with`] writes what was given into the file's table before it is checked, so
//! flags, variables and the file go through the same parsing and validation. Precedence: flag >
//! variable > file > default. The S3 keys (`s3.access_key_id`, …) are the exception: they come
//! from the file or the standard `AWS_*` variables, never from a flag that `ps` would show.

use std::path::Path;

use super::{Config, ConfigError};

/// How a setting's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text as is (addresses, paths, URLs, names).
    Text,
    /// A whole number.
    Integer,
    /// `true` or `false`; the flag alone means `true`.
    Switch,
    /// A flag that turns the setting off when present (`--no-sandboxes` for `sandbox.enabled`).
    Off,
}

/// One setting: its dotted key in `prewarm.toml`, its flag and its variable.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// `section.key`, or `key` at the top level.
    pub key: &'static str,
    /// The `prewarm serve` flag, without `--`.
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
    pub kind: Kind,
    /// One line for `--help`; `examples/prewarm.toml` says more.
    pub help: &'static str,
}

const fn s(
    key: &'static str,
    flag: &'static str,
    env: &'static str,
    kind: Kind,
    help: &'static str,
) -> Setting {
    Setting {
        key,
        flag,
        env,
        kind,
        help,
    }
}

use Kind::{Integer as I, Off, Switch as B, Text as T};

/// Every setting. Names of flags and variables that existed before this table are kept.
#[rustfmt::skip]
pub const SETTINGS: &[Setting] = &[
    s("listen", "listen", "PREWARM_LISTEN", T, "Address to listen on (`127.0.0.1:0` picks a free port; the bound address is printed). Default 127.0.0.1:7070"),
    s("data_dir", "data-dir", "PREWARM_DATA_DIR", T, "Directory of the local disk tier (and of the node dir). Default prewarm-data"),
    s("token_file", "token-file", "PREWARM_TOKEN_FILE", T, "File holding one bearer token that acts as an admin token (reads stay public). Without it or --tokens-file, everything is open"),
    s("tokens_file", "tokens-file", "PREWARM_TOKENS_FILE", T, "TOML file of scoped tokens (sha256 hash, scope read/push/sandbox/admin, user); `prewarm token issue` makes entries; re-read on SIGHUP"),
    s("public_reads", "public-reads", "PREWARM_PUBLIC_READS", B, "Reads (blocks, manifests, tags, /metrics) need no token. Default: true unless --tokens-file is set"),
    s("compression_level", "compression-level", "PREWARM_COMPRESSION_LEVEL", I, "zstd level (1-19) for blocks and manifests sent to clients that accept zstd; 0 = off. Default 1"),
    s("http.header_timeout_ms", "http-header-timeout-ms", "PREWARM_HTTP_HEADER_TIMEOUT_MS", I, "Milliseconds a client has to send a request's headers. Default 10000"),
    s("http.idle_timeout_secs", "http-idle-timeout-secs", "PREWARM_HTTP_IDLE_TIMEOUT_SECS", I, "Seconds a connection may sit with nothing in flight. Default 120"),
    s("http.max_connections", "http-max-connections", "PREWARM_HTTP_MAX_CONNECTIONS", I, "Connections open at once; more wait to be accepted. Default 4096"),
    s("local.enabled", "local-enabled", "PREWARM_LOCAL_ENABLED", B, "Keep the local disk tier; false (only with S3) makes the origin stateless"),
    s("memory.max_bytes", "memory-max-bytes", "PREWARM_MEMORY_MAX_BYTES", I, "Bytes of verified small objects kept in memory; 0 turns it off"),
    s("memory.max_object_bytes", "memory-max-object-bytes", "PREWARM_MEMORY_MAX_OBJECT_BYTES", I, "Largest object kept in memory"),
    s("memory.max_encoded_bytes", "memory-max-encoded-bytes", "PREWARM_MEMORY_MAX_ENCODED_BYTES", I, "Bytes of zstd bodies kept so a popular block is compressed once"),
    s("redis.url", "redis-url", "PREWARM_REDIS_URL", T, "Redis URL of the hot tier (redis://[user:pass@]host:port[/db], rediss://… for TLS)"),
    s("redis.namespace", "redis-namespace", "PREWARM_REDIS_NAMESPACE", T, "First segment of every Redis key"),
    s("redis.ttl_secs", "redis-ttl-secs", "PREWARM_REDIS_TTL_SECS", I, "Lifetime of every Redis key, in seconds"),
    s("redis.max_block_bytes", "redis-max-block-bytes", "PREWARM_REDIS_MAX_BLOCK_BYTES", I, "Larger blocks never go to Redis"),
    s("redis.budget_bytes", "redis-budget-bytes", "PREWARM_REDIS_BUDGET_BYTES", I, "Bytes this origin may add to Redis per TTL window"),
    s("redis.timeout_ms", "redis-timeout-ms", "PREWARM_REDIS_TIMEOUT_MS", I, "Limit on connecting and on each Redis command, in milliseconds"),
    s("redis.required", "redis-required", "PREWARM_REDIS_REQUIRED", B, "/readyz answers 503 while Redis is down"),
    s("redis.ca_file", "redis-ca-file", "PREWARM_REDIS_CA_FILE", T, "PEM CA certificate(s) trusted instead of the public roots (rediss:// only)"),
    s("redis.client_cert_file", "redis-client-cert-file", "PREWARM_REDIS_CLIENT_CERT_FILE", T, "PEM client certificate for mutual TLS"),
    s("redis.client_key_file", "redis-client-key-file", "PREWARM_REDIS_CLIENT_KEY_FILE", T, "PEM private key of the client certificate"),
    s("s3.endpoint", "s3-endpoint", "PREWARM_S3_ENDPOINT", T, "Endpoint of an S3-compatible server for the durable tier (omit for AWS)"),
    s("s3.region", "s3-region", "PREWARM_S3_REGION", T, "Region to sign S3 requests for"),
    s("s3.bucket", "s3-bucket", "PREWARM_S3_BUCKET", T, "Bucket of the durable tier; setting it enables S3"),
    s("s3.prefix", "s3-prefix", "PREWARM_S3_PREFIX", T, "Prefix of every S3 key (e.g. prod/)"),
    s("s3.connect_timeout_ms", "s3-connect-timeout-ms", "PREWARM_S3_CONNECT_TIMEOUT_MS", I, "Limit on establishing an S3 connection, in milliseconds"),
    s("s3.timeout_ms", "s3-timeout-ms", "PREWARM_S3_TIMEOUT_MS", I, "Limit on one S3 request attempt, in milliseconds"),
    s("node.dir", "node-dir", "PREWARM_NODE_DIR", T, "The node directory (cache, warm runtimes, sandboxes). Default <data-dir>/node-v1"),
    s("node.name", "node-name", "PREWARM_NODE_NAME", T, "This node's name in the Redis registry of warm runtimes. Default: the hostname"),
    s("node.workers", "sandbox-concurrency", "PREWARM_SANDBOX_CONCURRENCY", I, "Runtimes warming at once; more wait in a priority queue. Default 2"),
    s("node.fetch_concurrency", "warm-fetch-concurrency", "PREWARM_WARM_FETCH_CONCURRENCY", I, "Blocks downloading at once within one warm. Default 16"),
    s("node.disk_budget_bytes", "warm-disk-budget", "PREWARM_WARM_DISK_BUDGET", I, "Bytes of warm runtimes kept on this node. Default 50 GiB"),
    s("node.warm_command_timeout_secs", "warm-command-timeout-secs", "PREWARM_WARM_COMMAND_TIMEOUT_SECS", I, "Longest one meta.warm command may run. Default 600"),
    s("node.bwrap", "bwrap", "PREWARM_BWRAP", T, "The bubblewrap binary. Default: bwrap on PATH"),
    s("node.prlimit", "prlimit", "PREWARM_PRLIMIT", T, "util-linux prlimit. Default: prlimit on PATH"),
    s("node.warmed", "warmed", "PREWARM_WARMED", T, "Warmed runtimes shared across the fleet: use (fetch others', publish ours), publish-only, or ignore. Default use"),
    s("node.warmed_lease_ms", "warmed-lease-ms", "PREWARM_WARMED_LEASE_MS", I, "TTL of the Redis lease held while warming a runtime others wait for. Default 30000"),
    s("node.setpriv", "setpriv", "PREWARM_SETPRIV", T, "util-linux setpriv, which switches jailed commands to the sandbox uid. Default: setpriv on PATH"),
    s("sandbox.enabled", "no-sandboxes", "PREWARM_NO_SANDBOXES", Off, "Disable /v1/sandboxes and /v1/warm on this origin"),
    s("sandbox.idle_timeout_secs", "sandbox-idle-timeout-secs", "PREWARM_SANDBOX_IDLE_TIMEOUT_SECS", I, "Sandboxes unused for this long are removed. Default 1800"),
    s("sandbox.default_exec_timeout_secs", "sandbox-default-exec-timeout-secs", "PREWARM_SANDBOX_DEFAULT_EXEC_TIMEOUT_SECS", I, "Exec timeout when a request gives none. Default 60"),
    s("sandbox.max_exec_timeout_secs", "sandbox-max-exec-timeout-secs", "PREWARM_SANDBOX_MAX_EXEC_TIMEOUT_SECS", I, "Longest exec timeout a request may ask for. Default 280"),
    s("sandbox.output_cap_bytes", "sandbox-output-cap-bytes", "PREWARM_SANDBOX_OUTPUT_CAP_BYTES", I, "Bytes kept of each of stdout and stderr per exec. Default 1 MiB"),
    s("sandbox.memory_bytes", "sandbox-memory-bytes", "PREWARM_SANDBOX_MEMORY_BYTES", I, "Per-process memory limit of sandboxed commands, and the most a request may ask for. Default 4 GiB"),
    s("sandbox.cpu_secs", "sandbox-cpu-secs", "PREWARM_SANDBOX_CPU_SECS", I, "Per-process CPU seconds of sandboxed commands, and the most a request may ask for. Default 600"),
    s("sandbox.file_bytes", "sandbox-file-bytes", "PREWARM_SANDBOX_FILE_BYTES", I, "Largest file a sandboxed process may write. Default 1 GiB"),
    s("sandbox.open_files", "sandbox-open-files", "PREWARM_SANDBOX_OPEN_FILES", I, "Open files per sandboxed process. Default 1024"),
    s("sandbox.uid", "sandbox-uid", "PREWARM_SANDBOX_UID", I, "The host uid sandboxed commands run as; it must own nothing on the host. Not 0"),
    s("sandbox.gid", "sandbox-gid", "PREWARM_SANDBOX_GID", I, "The host gid sandboxed commands run as (no supplementary groups). Not 0"),
    s("sandbox.network", "sandbox-network", "PREWARM_SANDBOX_NETWORK", T, "What a sandbox asking for network gets: outbound (own namespace via slirp4netns; never the host, private or reserved addresses) or off (refused with 400). Default outbound"),
    s("sandbox.network_deny", "sandbox-network-deny", "PREWARM_SANDBOX_NETWORK_DENY", T, "More IPv4 ranges networked sandboxes may not reach (CIDRs, comma-separated), on top of private/reserved ranges and the host's addresses"),
    s("sandbox.network_allow", "sandbox-network-allow", "PREWARM_SANDBOX_NETWORK_ALLOW", T, "IPv4 ranges networked sandboxes may reach even inside a denied range (CIDRs, comma-separated; e.g. a package mirror). Default none"),
    s("sandbox.pids", "sandbox-pids", "PREWARM_SANDBOX_PIDS", I, "Processes and threads of one sandbox at once (its cgroup), and the most a create may ask for. Default 512"),
    s("sandbox.total_memory_bytes", "sandbox-total-memory-bytes", "PREWARM_SANDBOX_TOTAL_MEMORY_BYTES", I, "Memory of all of one sandbox's processes together (its cgroup), and the most a create may ask for. Default 4 GiB"),
    s("sandbox.cpu_weight", "sandbox-cpu-weight", "PREWARM_SANDBOX_CPU_WEIGHT", I, "A sandbox's CPU share under contention (1-10000, 100 = even), and the most a create may ask for. Default 100"),
    s("sandbox.pool_size", "sandbox-pool-size", "PREWARM_SANDBOX_POOL_SIZE", I, "Sandboxes kept ready with their interpreter started and preloaded, per warm runtime declaring a python interpreter; 0 = no pool. Default 2"),
    s("sandbox.pool_memory_bytes", "sandbox-pool-memory-bytes", "PREWARM_SANDBOX_POOL_MEMORY_BYTES", I, "Resident memory all idle pooled interpreters together may use. Default 1 GiB"),
    s("telemetry.otlp_endpoint", "otlp-endpoint", "PREWARM_OTLP_ENDPOINT", T, "OTLP/HTTP collector to export trace spans to (e.g. http://127.0.0.1:4318; /v1/traces is added). Default none: spans are logged only"),
    s("telemetry.service_name", "otlp-service-name", "PREWARM_OTLP_SERVICE_NAME", T, "service.name of exported spans. Default prewarm-origin"),
    s("predict.policy", "predict-policy", "PREWARM_PREDICT_POLICY", T, "Predictive warming policy: none, keepalive, popular, user-history, hybrid or prewarm. Default none"),
    s("predict.clock", "predict-clock", "PREWARM_PREDICT_CLOCK", T, "The predictor's clock: system, or manual (set by POST /v1/predict/clock; tests only). Default system"),
    s("predict.retention_hours", "predict-retention-hours", "PREWARM_PREDICT_RETENTION_HOURS", I, "Hours of recorded usage kept and replayed at start. Default 168"),
    s("predict.max_events_per_hour", "predict-max-events-per-hour", "PREWARM_PREDICT_MAX_EVENTS_PER_HOUR", I, "Creates recorded per hour per node (more are seen, not stored). Default 5000"),
];

/// A setting given on the command line or in the environment, as text.
#[derive(Debug, Clone)]
pub struct Given {
    pub setting: Setting,
    pub value: String,
}

impl Config {
    /// Reads the file (if any), writes `given` over it, and parses the result: the one way
    /// `prewarm serve` builds its config. Call [`Config::resolve`] after it.
    pub fn load_with(path: Option<&Path>, given: &[Given]) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let at = path.map(Path::to_owned).unwrap_or_default();
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            path: at.clone(),
            source: Box::new(e),
        };
        let mut table: toml::Table = toml::from_str(&text).map_err(parse_err)?;
        for g in given {
            set(&mut table, &g.setting, &g.value)?;
        }
        toml::Table::try_into(table).map_err(parse_err)
    }
}

/// Writes `value` at the setting's dotted key, typed by its kind.
fn set(table: &mut toml::Table, setting: &Setting, value: &str) -> Result<(), ConfigError> {
    let bad = |what: &str| {
        ConfigError::Invalid(format!(
            "--{} / {}: {value:?} is not {what}",
            setting.flag, setting.env
        ))
    };
    let switch = |v: &str| match v.to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad("true or false")),
    };
    let v = match setting.kind {
        Kind::Text => toml::Value::String(value.to_string()),
        Kind::Integer => toml::Value::Integer(value.parse().map_err(|_| bad("a whole number"))?),
        Kind::Switch => toml::Value::Boolean(switch(value)?),
        Kind::Off => toml::Value::Boolean(!switch(value)?),
    };
    let mut at = table;
    let mut parts = setting.key.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            at.insert(part.to_string(), v);
            break;
        }
        let entry = at
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Invalid(format!("{part} is not a table")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(flag: &str, value: &str) -> Given {
        let setting = *SETTINGS.iter().find(|s| s.flag == flag).unwrap();
        Given {
            setting,
            value: value.to_string(),
        }
    }

    #[test]
    fn every_setting_has_its_own_key_flag_and_variable() {
        for (i, a) in SETTINGS.iter().enumerate() {
            for b in &SETTINGS[i + 1..] {
                assert!(
                    a.key != b.key && a.flag != b.flag && a.env != b.env,
                    "{a:?} {b:?}"
                );
            }
            assert!(a.env.starts_with("PREWARM_"), "{a:?}");
        }
    }

    #[test]
    fn every_setting_is_documented_in_the_example() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/prewarm.toml");
        let text = std::fs::read_to_string(path).unwrap();
        // `section.key` (or `key` at the top) of every line that sets or shows a key.
        let mut section = String::new();
        let mut keys = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix('[') {
                section = rest.split(']').next().unwrap_or("").to_string();
            } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(" = ") {
                let key = key.trim();
                keys.push(if section.is_empty() {
                    key.to_string()
                } else {
                    format!("{section}.{key}")
                });
            }
        }
        for s in SETTINGS {
            assert!(
                keys.iter().any(|k| k == s.key),
                "{} is not in examples/prewarm.toml",
                s.key
            );
            let flag = format!("--{}", s.flag);
            let named = text.match_indices(&flag).any(|(i, _)| {
                !text[i + flag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            });
            assert!(named, "{flag} is not in examples/prewarm.toml");
        }
    }

    #[test]
    fn given_settings_override_the_file_and_make_their_section() {
        let c = Config::load_with(
            None,
            &[
                given("sandbox-max-exec-timeout-secs", "100"),
                given("no-sandboxes", ""),
                given("redis-url", "redis://h:1/0"),
                given("redis-required", "true"),
                given("listen", "127.0.0.1:9"),
            ],
        )
        .unwrap();
        assert_eq!(c.sandbox.max_exec_timeout_secs, 100);
        assert!(!c.sandbox.enabled);
        assert_eq!(c.sandbox.idle_timeout_secs, 1800);
        let r = c.redis.unwrap();
        assert!(r.required);
        assert_eq!(r.ttl_secs, 3600);
        assert_eq!(c.listen.unwrap().port(), 9);
        let e = Config::load_with(None, &[given("sandbox-cpu-secs", "lots")]).unwrap_err();
        assert!(e.to_string().contains("--sandbox-cpu-secs"), "{e}");
    }
}
