//! The node's index of warm runtimes (on disk, authoritative) and the cluster registry it is mirrored to (Redis).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use prewarm_shared::Digest;
use serde::{Deserialize, Serialize};

use super::layout::write_atomic;

/// One warm runtime on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    pub digest: Digest,
    /// The reference it was first warmed for (`python-data:v1`).
    pub runtime: String,
    /// Where sandboxes mount it.
    pub prefix: String,
    pub env: BTreeMap<String, String>,
    /// `meta.json`'s `interpreters` (empty in records written before they existed).
    #[serde(default)]
    pub interpreters: BTreeMap<String, prewarm_shared::pack::Interpreter>,
    /// Apparent bytes of its files (hard links to the cache count in full).
    pub size_bytes: u64,
    pub files: u64,
    /// How long warming took.
    pub warm_ms: u64,
    /// Unix milliseconds of the last create or exec that used it.
    pub last_used_ms: u64,
    /// Warmed here, fetched warmed from another node, or warmed here and published.
    #[serde(default)]
    pub warmed: super::warmed::WarmedHow,
    /// The warmed manifest fetched or published, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmed_manifest: Option<Digest>,
}

#[derive(Default, Serialize, Deserialize)]
struct IndexFile {
    runtimes: BTreeMap<String, RuntimeRecord>,
}

/// Warm runtimes by manifest digest; persisted to `index.json` (atomically) on every insert
/// and removal, and at shutdown for `last_used` updates.
#[derive(Debug, Default)]
pub struct RuntimeIndex {
    map: HashMap<Digest, RuntimeRecord>,
}

impl RuntimeIndex {
    /// Loads `index.json`; a missing or unreadable file is an empty index (logged), never a
    /// reason to refuse to start: runtimes not in the index are swept and rebuilt on demand.
    pub fn load(path: &Path) -> Self {
        let file: IndexFile = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), %e, "node index unreadable; starting empty");
                IndexFile::default()
            }),
            Err(_) => IndexFile::default(),
        };
        Self {
            map: file.runtimes.into_values().map(|r| (r.digest, r)).collect(),
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let file = IndexFile {
            runtimes: self
                .map
                .values()
                .map(|r| (r.digest.hex(), r.clone()))
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        write_atomic(path, &bytes)
    }

    pub fn get(&self, d: &Digest) -> Option<&RuntimeRecord> {
        self.map.get(d)
    }

    pub fn touch(&mut self, d: &Digest) -> Option<RuntimeRecord> {
        let r = self.map.get_mut(d)?;
        r.last_used_ms = now_ms();
        Some(r.clone())
    }

    pub fn insert(&mut self, r: RuntimeRecord) {
        self.map.insert(r.digest, r);
    }

    pub fn remove(&mut self, d: &Digest) -> Option<RuntimeRecord> {
        self.map.remove(d)
    }

    pub fn retain(&mut self, keep: impl Fn(&RuntimeRecord) -> bool) {
        self.map.retain(|_, r| keep(r));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn total_bytes(&self) -> u64 {
        self.map.values().map(|r| r.size_bytes).sum()
    }

    /// Records, least recently used first.
    pub fn by_age(&self) -> Vec<RuntimeRecord> {
        let mut v: Vec<_> = self.map.values().cloned().collect();
        v.sort_by_key(|r| r.last_used_ms);
        v
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A mount a sandbox of the runtime gets, as published to the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub readonly: bool,
}

/// What the registry holds per warm runtime per node (`{runtime, node, mounts, env, last_used}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryEntry {
    pub runtime: String,
    pub digest: Digest,
    pub node: String,
    pub mounts: Vec<Mount>,
    pub env: BTreeMap<String, String>,
    pub last_used: u64,
}

/// Why the registry could not be updated. The node index stays authoritative; a registry
/// failure is logged and retried on the next flush, never a failed warm.
#[derive(Debug, thiserror::Error)]
#[error("registry {backend}: {message}")]
pub struct RegistryError {
    pub backend: &'static str,
    pub message: String,
}

/// Where other nodes (the predictive warmer, a scheduler) learn which runtimes are warm where.
///
/// # Contract
/// `publish` creates or refreshes an entry with a TTL of [`REGISTRY_TTL_SECS`]; publishing
/// again refreshes `last_used` and the TTL. `withdraw` of an absent entry succeeds.
#[async_trait::async_trait]
pub trait Registry: Send + Sync {
    fn name(&self) -> &'static str;
    async fn publish(&self, entry: &RegistryEntry) -> Result<(), RegistryError>;
    async fn withdraw(&self, node: &str, digest: &Digest) -> Result<(), RegistryError>;
}

/// Registry entries expire unless refreshed by use within this many seconds.
pub const REGISTRY_TTL_SECS: u64 = 3600;

/// The Redis key of an entry: `prewarm:warm:<node>:<manifest hex>`.
pub fn registry_key(node: &str, digest: &Digest) -> String {
    format!("prewarm:warm:{node}:{}", digest.hex())
}

/// No cluster registry: the node index alone (single-node setups, tests without Redis).
#[derive(Debug, Default)]
pub struct NoRegistry;

#[async_trait::async_trait]
impl Registry for NoRegistry {
    fn name(&self) -> &'static str {
        "none"
    }
    async fn publish(&self, _: &RegistryEntry) -> Result<(), RegistryError> {
        Ok(())
    }
    async fn withdraw(&self, _: &str, _: &Digest) -> Result<(), RegistryError> {
        Ok(())
    }
}

/// The registry in Redis: one JSON string per entry under [`registry_key`], `SET … EX 3600`.
pub struct RedisRegistry {
    conn: redis::aio::ConnectionManager,
}

impl RedisRegistry {
    /// Connects and probes (`PING`), so a wrong URL fails at startup, not on the first warm.
    /// Takes the Redis tier's client, so it connects with the same URL and TLS settings.
    pub async fn connect(client: redis::Client) -> Result<Self, RegistryError> {
        let err = |e: redis::RedisError| RegistryError {
            backend: "redis",
            message: e.to_string(),
        };
        let mut conn = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(err)?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(err)?;
        Ok(Self { conn })
    }
}

#[async_trait::async_trait]
impl Registry for RedisRegistry {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn publish(&self, entry: &RegistryEntry) -> Result<(), RegistryError> {
        let json = serde_json::to_string(entry).map_err(|e| RegistryError {
            backend: "redis",
            message: e.to_string(),
        })?;
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(registry_key(&entry.node, &entry.digest))
            .arg(json)
            .arg("EX")
            .arg(REGISTRY_TTL_SECS)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| RegistryError {
                backend: "redis",
                message: e.to_string(),
            })
    }

    async fn withdraw(&self, node: &str, digest: &Digest) -> Result<(), RegistryError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(registry_key(node, digest))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| RegistryError {
                backend: "redis",
                message: e.to_string(),
            })
    }
}
