//! `prewarm serve`'s flags for warming and sandboxes, and starting the service from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prewarm_shared::limits::{Limit, LimitError};

use super::bwrap::{find_bwrap, find_prlimit, JailTools};
use super::identity::{find_setpriv, SandboxUser};
use super::limits::ResourceLimits;
use super::{SandboxConfig, SandboxService};
use crate::transfer::Source;
use crate::warm::layout::NODE_DIR;
use crate::warm::{NoRegistry, RedisRegistry, Registry, WarmConfig, Warmer};

/// Flag names, declared once.
pub mod flags {
    pub const NO_SANDBOXES: &str = "no-sandboxes";
    pub const WORKERS: &str = "sandbox-concurrency";
    pub const DISK_BUDGET: &str = "warm-disk-budget";
    pub const IDLE: &str = "sandbox-idle-timeout-secs";
    pub const WARM_TIMEOUT: &str = "warm-command-timeout-secs";
    pub const NODE_NAME: &str = "node-name";
    pub const NODE_DIR: &str = "node-dir";
    pub const MEMORY: &str = "sandbox-memory-bytes";
    pub const CPU: &str = "sandbox-cpu-secs";
    pub const FILE: &str = "sandbox-file-bytes";
    pub const OPEN_FILES: &str = "sandbox-open-files";
    pub const UID: &str = "sandbox-uid";
    pub const GID: &str = "sandbox-gid";
}

/// Warming and sandbox options of `prewarm serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Disable `/v1/sandboxes` and `/v1/warm` on this origin.
    #[arg(long = flags::NO_SANDBOXES, env = "PREWARM_NO_SANDBOXES")]
    pub no_sandboxes: bool,
    /// Runtimes warming at once; more wait in a priority queue (high > normal > low).
    #[arg(long = flags::WORKERS, env = "PREWARM_SANDBOX_CONCURRENCY", default_value_t = 2)]
    pub workers: usize,
    /// Bytes of warm runtimes kept on this node; beyond it the least recently used runtime
    /// without sandboxes is evicted. Default 50 GiB.
    #[arg(long = flags::DISK_BUDGET, env = "PREWARM_WARM_DISK_BUDGET", default_value_t = 50 << 30)]
    pub disk_budget: u64,
    /// Sandboxes unused for this long are removed.
    #[arg(long = flags::IDLE, env = "PREWARM_SANDBOX_IDLE_TIMEOUT_SECS", default_value_t = 1800)]
    pub idle_timeout_secs: u64,
    /// Longest one `meta.warm` command may run.
    #[arg(long = flags::WARM_TIMEOUT, env = "PREWARM_WARM_COMMAND_TIMEOUT_SECS", default_value_t = 600)]
    pub warm_command_timeout_secs: u64,
    /// The node directory (cache, warm runtimes, sandboxes). Default `<data-dir>/node-v1`.
    /// Keep the cache and runtimes on one filesystem: materialising is hard linking.
    #[arg(long = flags::NODE_DIR, env = "PREWARM_NODE_DIR")]
    pub node_dir: Option<PathBuf>,
    /// This node's name in the Redis registry of warm runtimes. Default: the hostname.
    #[arg(long = flags::NODE_NAME, env = "PREWARM_NODE_NAME")]
    pub node_name: Option<String>,
    /// Per-process memory limit of sandboxed commands (`RLIMIT_DATA`: heap and other writable
    /// private memory), and the most a request may ask for. Default 4 GiB.
    #[arg(long = flags::MEMORY, env = "PREWARM_SANDBOX_MEMORY_BYTES", default_value_t = ResourceLimits::DEFAULT.memory_bytes)]
    pub memory_bytes: u64,
    /// Per-process CPU seconds of sandboxed commands (SIGXCPU, then SIGKILL 2 s later), and
    /// the most a request may ask for.
    #[arg(long = flags::CPU, env = "PREWARM_SANDBOX_CPU_SECS", default_value_t = ResourceLimits::DEFAULT.cpu_secs)]
    pub cpu_secs: u64,
    /// Largest file a sandboxed process may write, and the most a request may ask for.
    /// Default 1 GiB.
    #[arg(long = flags::FILE, env = "PREWARM_SANDBOX_FILE_BYTES", default_value_t = ResourceLimits::DEFAULT.file_bytes)]
    pub file_bytes: u64,
    /// Open files per sandboxed process, and the most a request may ask for.
    #[arg(long = flags::OPEN_FILES, env = "PREWARM_SANDBOX_OPEN_FILES", default_value_t = ResourceLimits::DEFAULT.open_files)]
    pub open_files: u64,
    /// The host uid sandboxed commands (warm commands and exec) run as. It must own nothing on
    /// the host and be no other service's or user's: all sandboxes share it. Not 0.
    #[arg(long = flags::UID, env = "PREWARM_SANDBOX_UID", default_value_t = SandboxUser::DEFAULT.uid)]
    pub uid: u32,
    /// The host gid sandboxed commands run as (no supplementary groups). Not 0.
    #[arg(long = flags::GID, env = "PREWARM_SANDBOX_GID", default_value_t = SandboxUser::DEFAULT.gid)]
    pub gid: u32,
}

/// Why the sandbox service could not start. Start-up fails fast rather than on first use.
#[derive(Debug, thiserror::Error)]
pub enum NodeStartError {
    #[error(
        "bubblewrap (`bwrap`) is not installed; run scripts/sandbox-tools or pass --{}",
        flags::NO_SANDBOXES
    )]
    NoBwrap,
    #[error(
        "util-linux `prlimit` (which applies sandbox resource limits) is not installed; run scripts/sandbox-tools or pass --{}",
        flags::NO_SANDBOXES
    )]
    NoPrlimit,
    #[error(
        "util-linux `setpriv` (which switches sandboxed commands to the sandbox uid) is not installed; run scripts/sandbox-tools or pass --{}",
        flags::NO_SANDBOXES
    )]
    NoSetpriv,
    #[error(
        "sandboxes need the origin to run as root, to run sandboxed commands as the sandbox uid; pass --{} otherwise",
        flags::NO_SANDBOXES
    )]
    NotRoot,
    #[error("--{uid}/--{gid}: {0}", uid = flags::UID, gid = flags::GID)]
    User(&'static str),
    #[error("--{flag}: {source}")]
    Limits {
        flag: &'static str,
        #[source]
        source: LimitError,
    },
    #[error("opening the node directory")]
    Node(#[from] crate::pull::PullError),
    #[error("the warm-runtime registry")]
    Registry(#[from] crate::warm::index::RegistryError),
}

impl NodeArgs {
    /// Opens `<data_dir>/node-v1`, connects the registry (with the Redis tier's client, TLS
    /// settings included, when the origin has one; else none) and starts the service.
    /// `Ok(None)` when disabled.
    pub async fn start(
        &self,
        data_dir: &Path,
        source: Arc<dyn Source>,
        redis: Option<redis::Client>,
    ) -> Result<Option<SandboxService>, NodeStartError> {
        if self.no_sandboxes {
            return Ok(None);
        }
        let limits = self.limits()?;
        let user = SandboxUser {
            uid: self.uid,
            gid: self.gid,
        }
        .checked()
        .map_err(NodeStartError::User)?;
        let Some(bwrap) = find_bwrap() else {
            tracing::warn!("{}; sandboxes are disabled", NodeStartError::NoBwrap);
            return Ok(None);
        };
        // Never run sandboxes without their limits.
        let Some(prlimit) = find_prlimit() else {
            tracing::warn!("{}; sandboxes are disabled", NodeStartError::NoPrlimit);
            return Ok(None);
        };
        // Never run sandboxed commands as the owner of the node's files.
        let Some(setpriv) = find_setpriv() else {
            tracing::warn!("{}; sandboxes are disabled", NodeStartError::NoSetpriv);
            return Ok(None);
        };
        if !rustix::process::geteuid().is_root() {
            tracing::warn!("{}; sandboxes are disabled", NodeStartError::NotRoot);
            return Ok(None);
        }
        let registry: Arc<dyn Registry> = match redis {
            Some(client) => Arc::new(RedisRegistry::connect(client).await?),
            None => Arc::new(NoRegistry),
        };
        let node_name = self.node_name.clone().unwrap_or_else(hostname);
        let cfg = WarmConfig {
            node_dir: self
                .node_dir
                .clone()
                .unwrap_or_else(|| data_dir.join(NODE_DIR)),
            node_name,
            workers: self.workers.max(1),
            fetch_concurrency: 16,
            disk_budget: self.disk_budget,
            warm_command_timeout: Duration::from_secs(self.warm_command_timeout_secs),
            jail: JailTools {
                bwrap,
                prlimit,
                setpriv,
                user,
            },
            limits,
        };
        let warmer = Warmer::open(cfg, source, registry)?;
        Ok(Some(SandboxService::start(
            warmer,
            SandboxConfig {
                idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
                default_exec_timeout: Duration::from_secs(60),
                max_exec_timeout: Duration::from_secs(280),
                output_cap: 1 << 20,
            },
        )))
    }
}

impl NodeArgs {
    /// The limit flags, within the bounds a request's must keep too.
    fn limits(&self) -> Result<ResourceLimits, NodeStartError> {
        ResourceLimits {
            memory_bytes: self.memory_bytes,
            cpu_secs: self.cpu_secs,
            file_bytes: self.file_bytes,
            open_files: self.open_files,
        }
        .checked()
        .map_err(|source| {
            let flag = match source.limit() {
                Limit::MemoryBytes => flags::MEMORY,
                Limit::CpuSecs => flags::CPU,
                Limit::FileBytes => flags::FILE,
                Limit::OpenFiles => flags::OPEN_FILES,
            };
            NodeStartError::Limits { flag, source }
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}
