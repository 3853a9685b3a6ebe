//! The node's settings (`[node]` and `[sandbox]`), and starting warming and sandboxes from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prewarm_shared::limits::{Limit, LimitError};
use serde::Deserialize;

use super::{SandboxConfig, SandboxService};
use crate::jail::bwrap::{find_bwrap, find_prlimit};
use crate::jail::identity::{find_setpriv, SandboxUser};
use crate::jail::net::{CidrList, NetFilter, NetTools};
use crate::jail::{Cgroups, JailTools, ResourceLimits};
use crate::warm::layout::NODE_DIR;
use crate::warm::lease::Leases;
use crate::warm::{Fleet, NoRegistry, RedisRegistry, Registry, WarmConfig, WarmedMode, Warmer};
use prewarm_client::transfer::{Sink, Source};

/// `[node]` of `prewarm.toml`: where and how this host warms runtimes. Each key also has a
/// `prewarm serve` flag and a `PREWARM_*` variable (`prewarm_server::config::settings`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// The node directory (cache, warm runtimes, sandboxes). Default `<data_dir>/node-v1`.
    /// Keep the cache and runtimes on one filesystem: materialising is hard linking.
    pub dir: Option<PathBuf>,
    /// This node's name in the Redis registry of warm runtimes. Default: the hostname.
    pub name: Option<String>,
    /// Runtimes warming at once; more wait in a priority queue (high > normal > low).
    pub workers: usize,
    /// Blocks downloading at once within one warm.
    pub fetch_concurrency: usize,
    /// Bytes of warm runtimes kept on this node; beyond it the least recently used runtime
    /// without sandboxes is evicted. Default 50 GiB.
    pub disk_budget_bytes: u64,
    /// Longest one `meta.warm` command may run, in seconds.
    pub warm_command_timeout_secs: u64,
    /// The bubblewrap binary. Default: `bwrap` on `PATH`.
    pub bwrap: Option<PathBuf>,
    /// util-linux `prlimit`, which applies the limits before it execs bubblewrap. Default:
    /// `prlimit` on `PATH`.
    pub prlimit: Option<PathBuf>,
    /// util-linux `setpriv`, which switches jailed commands to the sandbox uid. Default:
    /// `setpriv` on `PATH`.
    pub setpriv: Option<PathBuf>,
    /// Warmed runtimes shared across the fleet: `use` (fetch another node's, publish ours),
    /// `publish-only` (never run another node's), `ignore` (neither). Default `use`.
    pub warmed: WarmedMode,
    /// Time-to-live of the Redis lease a node holds while it warms a runtime others wait for,
    /// in milliseconds (renewed every third of it). A node that dies holding it delays the
    /// others this long. Default 30000.
    pub warmed_lease_ms: u64,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            dir: None,
            name: None,
            workers: 2,
            fetch_concurrency: 16,
            disk_budget_bytes: 50 << 30,
            warm_command_timeout_secs: 600,
            bwrap: None,
            prlimit: None,
            setpriv: None,
            warmed: WarmedMode::Use,
            warmed_lease_ms: 30_000,
        }
    }
}

/// `[sandbox]` of `prewarm.toml`: what sandboxes may do. Each key also has a `prewarm serve`
/// flag and a `PREWARM_*` variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// Serve `/v1/sandboxes` and `/v1/warm` (`--no-sandboxes` turns them off).
    pub enabled: bool,
    /// Sandboxes unused for this long, in seconds, are removed.
    pub idle_timeout_secs: u64,
    /// Exec timeout when a request gives none, in seconds.
    pub default_exec_timeout_secs: u64,
    /// Longest exec timeout a request may ask for, in seconds (below the HTTP request
    /// timeout, so a long exec still gets its answer).
    pub max_exec_timeout_secs: u64,
    /// Bytes kept of each of stdout and stderr per exec.
    pub output_cap_bytes: usize,
    /// Per-process memory limit of sandboxed commands (`RLIMIT_DATA`: heap and other writable
    /// private memory), and the most a request may ask for. Default 4 GiB.
    pub memory_bytes: u64,
    /// Per-process CPU seconds of sandboxed commands (SIGXCPU, then SIGKILL 2 s later), and
    /// the most a request may ask for.
    pub cpu_secs: u64,
    /// Largest file a sandboxed process may write, and the most a request may ask for.
    /// Default 1 GiB.
    pub file_bytes: u64,
    /// Open files per sandboxed process, and the most a request may ask for.
    pub open_files: u64,
    /// The host uid sandboxed commands (warm commands and exec) run as. It must own nothing on
    /// the host and be no other service's or user's: all sandboxes share it. Not 0.
    pub uid: u32,
    /// The host gid sandboxed commands run as (no supplementary groups). Not 0.
    pub gid: u32,
    /// Whether a sandbox may ask for network (`"network": true`): `outbound` (its own network
    /// namespace, connected by slirp4netns, no way to the host or private networks) or `off`
    /// (such a create is refused with 400). Default `outbound`.
    pub network: NetworkPolicy,
    /// IPv4 ranges a networked sandbox may not reach, on top of the private, link-local and
    /// reserved ranges and the host's own addresses, which it never reaches.
    pub network_deny: CidrList,
    /// IPv4 ranges a networked sandbox may reach even inside a denied range (a package mirror
    /// on the private network, say). Default none.
    pub network_allow: CidrList,
    /// Processes (and threads) of one sandbox at once, all its commands together (its
    /// cgroup's `pids.max`), and the most a create request may ask for. Default 512.
    pub pids: u64,
    /// Memory of all of one sandbox's processes together, page cache and `/tmp` included (its
    /// cgroup's memory limit: the OOM killer ends one of its processes past it), and the most
    /// a create request may ask for. Default 4 GiB.
    pub total_memory_bytes: u64,
    /// A sandbox's CPU share under contention, relative to other sandboxes (1-10000; 100 is an
    /// even share), and the most a create request may ask for. Default 100.
    pub cpu_weight: u64,
    /// Sandboxes kept ready, interpreter started and preloads imported, per warm runtime whose
    /// `meta.json` declares a `python` interpreter (once a create asked for it); 0 turns the
    /// pool off. Default 2.
    pub pool_size: usize,
    /// Resident memory all idle pooled interpreters together may use; the pool stays below
    /// it. Default 1 GiB.
    pub pool_memory_bytes: u64,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout_secs: 1800,
            default_exec_timeout_secs: 60,
            max_exec_timeout_secs: 280,
            output_cap_bytes: 1 << 20,
            memory_bytes: ResourceLimits::DEFAULT.memory_bytes,
            cpu_secs: ResourceLimits::DEFAULT.cpu_secs,
            file_bytes: ResourceLimits::DEFAULT.file_bytes,
            open_files: ResourceLimits::DEFAULT.open_files,
            uid: SandboxUser::DEFAULT.uid,
            gid: SandboxUser::DEFAULT.gid,
            network: NetworkPolicy::Outbound,
            network_deny: CidrList::default(),
            network_allow: CidrList::default(),
            pids: ResourceLimits::DEFAULT.pids,
            total_memory_bytes: ResourceLimits::DEFAULT.total_memory_bytes,
            cpu_weight: ResourceLimits::DEFAULT.cpu_weight,
            pool_size: 2,
            pool_memory_bytes: 1 << 30,
        }
    }
}

/// The network tools with `sandbox`'s filter, or `None` (logged) when one is missing: then
/// sandboxes asking for network are refused, as with `sandbox.network = "off"`.
fn find_net_tools(sandbox: &SandboxSettings) -> Option<NetTools> {
    let filter = NetFilter {
        deny: sandbox.network_deny.clone(),
        allow: sandbox.network_allow.clone(),
    };
    let tools = match NetTools::find(filter) {
        Ok(t) => t,
        Err(missing) => {
            tracing::warn!("{missing} is not installed (scripts/sandbox-tools installs it): sandboxes asking for network are refused, as with sandbox.network = \"off\"");
            return None;
        }
    };
    // slirp4netns makes a tap device in the sandbox's namespace.
    if !Path::new("/dev/net/tun").exists() {
        tracing::warn!("/dev/net/tun is missing: sandboxes asking for network are refused, as with sandbox.network = \"off\"");
        return None;
    }
    Some(tools)
}

/// `sandbox.network`: what `"network": true` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkPolicy {
    /// Refused: no sandbox of this origin has network.
    Off,
    /// Outbound through slirp4netns (see `crate::jail::net`).
    Outbound,
}

/// Why the sandbox service could not start. Start-up fails fast rather than on first use.
#[derive(Debug, thiserror::Error)]
pub enum NodeStartError {
    #[error(
        "bubblewrap (`bwrap`) is not installed; run scripts/sandbox-tools or pass --no-sandboxes"
    )]
    NoBwrap,
    #[error(
        "util-linux `prlimit` (which applies sandbox resource limits) is not installed; run scripts/sandbox-tools or pass --no-sandboxes"
    )]
    NoPrlimit,
    #[error(
        "util-linux `setpriv` (which switches sandboxed commands to the sandbox uid) is not installed; run scripts/sandbox-tools or pass --no-sandboxes"
    )]
    NoSetpriv,
    #[error(
        "sandboxes need the origin to run as root, to run sandboxed commands as the sandbox uid; pass --no-sandboxes otherwise"
    )]
    NotRoot,
    #[error("sandbox.uid/sandbox.gid: {0}")]
    User(&'static str),
    /// `key` is the setting's name in `prewarm.toml` (`sandbox.memory_bytes`).
    #[error("{key}: {source}")]
    Limits {
        key: &'static str,
        #[source]
        source: LimitError,
    },
    #[error("opening the node directory")]
    Node(#[from] prewarm_client::pull::PullError),
    #[error("the warm-runtime registry")]
    Registry(#[from] crate::warm::index::RegistryError),
}

/// Opens the node directory (default `<data_dir>/node-v1`), connects the registry and the
/// warm lease (with the Redis tier's client, TLS settings included, when the origin has one;
/// else none) and starts the service. Warmed runtimes are published to `shared` (the origin's
/// tiers). `Ok(None)` when sandboxes are disabled or the
/// jail's tools are missing.
pub async fn start(
    node: &NodeSettings,
    sandbox: &SandboxSettings,
    data_dir: &Path,
    source: Arc<dyn Source>,
    shared: Option<Arc<dyn Sink>>,
    redis: Option<redis::Client>,
) -> Result<Option<SandboxService>, NodeStartError> {
    if !sandbox.enabled {
        return Ok(None);
    }
    let limits = sandbox.limits()?;
    let user = SandboxUser {
        uid: sandbox.uid,
        gid: sandbox.gid,
    }
    .checked()
    .map_err(NodeStartError::User)?;
    let Some(bwrap) = configured_tool(&node.bwrap).unwrap_or_else(find_bwrap) else {
        tracing::warn!("{}; sandboxes are disabled", NodeStartError::NoBwrap);
        return Ok(None);
    };
    // Never run sandboxes without their limits.
    let Some(prlimit) = configured_tool(&node.prlimit).unwrap_or_else(find_prlimit) else {
        tracing::warn!("{}; sandboxes are disabled", NodeStartError::NoPrlimit);
        return Ok(None);
    };
    // Never run sandboxed commands as the owner of the node's files.
    let Some(setpriv) = configured_tool(&node.setpriv)
        .map(|p| p.and_then(|p| p.canonicalize().ok()))
        .unwrap_or_else(find_setpriv)
    else {
        tracing::warn!("{}; sandboxes are disabled", NodeStartError::NoSetpriv);
        return Ok(None);
    };
    if !rustix::process::geteuid().is_root() {
        tracing::warn!("{}; sandboxes are disabled", NodeStartError::NotRoot);
        return Ok(None);
    }
    let lease_conn = match (&redis, node.warmed) {
        (Some(client), WarmedMode::Use) => Some(
            redis::aio::ConnectionManager::new(client.clone())
                .await
                .map_err(|e| crate::warm::index::RegistryError {
                    backend: "redis",
                    message: e.to_string(),
                })?,
        ),
        _ => None,
    };
    let fleet = Fleet {
        mode: node.warmed,
        sink: shared,
        leases: Leases::new(lease_conn, Duration::from_millis(node.warmed_lease_ms)),
    };
    let registry: Arc<dyn Registry> = match redis {
        Some(client) => Arc::new(RedisRegistry::connect(client).await?),
        None => Arc::new(NoRegistry),
    };
    let node_dir = node.dir.clone().unwrap_or_else(|| data_dir.join(NODE_DIR));
    let node_name = node.name.clone().unwrap_or_else(hostname);
    let jail = JailTools {
        bwrap,
        prlimit,
        setpriv,
        user,
        cgroups: Cgroups::for_node(&node_name, &node_dir),
        net: match sandbox.network {
            NetworkPolicy::Off => None,
            NetworkPolicy::Outbound => find_net_tools(sandbox),
        },
    };
    let cfg = WarmConfig {
        node_dir,
        node_name,
        workers: node.workers.max(1),
        fetch_concurrency: node.fetch_concurrency.max(1),
        disk_budget: node.disk_budget_bytes,
        warm_command_timeout: Duration::from_secs(node.warm_command_timeout_secs),
        jail: jail.clone(),
        limits,
    };
    let warmer = Warmer::open_in_fleet(cfg, source, registry, fleet)?;
    Ok(Some(SandboxService::start(
        warmer,
        SandboxConfig {
            idle_timeout: Duration::from_secs(sandbox.idle_timeout_secs.max(1)),
            default_exec_timeout: Duration::from_secs(sandbox.default_exec_timeout_secs),
            max_exec_timeout: Duration::from_secs(sandbox.max_exec_timeout_secs),
            output_cap: sandbox.output_cap_bytes,
            jail,
            limits,
            pool: super::pool::PoolConfig {
                size: sandbox.pool_size,
                memory_budget: sandbox.pool_memory_bytes,
            },
        },
    )))
}

impl SandboxSettings {
    /// The limit settings, within the bounds a request's must keep too.
    fn limits(&self) -> Result<ResourceLimits, NodeStartError> {
        ResourceLimits {
            memory_bytes: self.memory_bytes,
            cpu_secs: self.cpu_secs,
            file_bytes: self.file_bytes,
            open_files: self.open_files,
            pids: self.pids,
            total_memory_bytes: self.total_memory_bytes,
            cpu_weight: self.cpu_weight,
        }
        .checked()
        .map_err(|source| {
            let key = match source.limit() {
                Limit::MemoryBytes => "sandbox.memory_bytes",
                Limit::CpuSecs => "sandbox.cpu_secs",
                Limit::FileBytes => "sandbox.file_bytes",
                Limit::OpenFiles => "sandbox.open_files",
                Limit::Pids => "sandbox.pids",
                Limit::TotalMemoryBytes => "sandbox.total_memory_bytes",
                Limit::CpuWeight => "sandbox.cpu_weight",
            };
            NodeStartError::Limits { key, source }
        })
    }
}

/// A tool's configured path: `Some(None)` when it is set but not a file (the tool is missing),
/// `None` when unset (look on `PATH`).
fn configured_tool(path: &Option<PathBuf>) -> Option<Option<PathBuf>> {
    path.as_ref()
        .map(|p| Some(p.clone()).filter(|p| p.is_file()))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}
