//! `prewarm serve`'s flags for warming and sandboxes, and starting the service from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prewarm_shared::limits::{Limit, LimitError};

use super::{SandboxConfig, SandboxService};
use crate::jail::bwrap::{find_bwrap, find_prlimit};
use crate::jail::cgroup::Cgroups;
use crate::jail::ResourceLimits;
use crate::warm::layout::NODE_DIR;
use crate::warm::{NoRegistry, RedisRegistry, Registry, WarmConfig, Warmer};
use prewarm_client::transfer::Source;

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
    pub const PIDS: &str = "sandbox-pids";
    pub const TOTAL_MEMORY: &str = "sandbox-total-memory-bytes";
    pub const CPU_WEIGHT: &str = "sandbox-cpu-weight";
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
    /// Processes (and threads) of one sandbox at once, all its commands together (its
    /// cgroup's `pids.max`), and the most a create request may ask for. Default 512.
    #[arg(long = flags::PIDS, env = "PREWARM_SANDBOX_PIDS", default_value_t = ResourceLimits::DEFAULT.pids)]
    pub pids: u64,
    /// Memory of all of one sandbox's processes together, page cache and `/tmp` included (its
    /// cgroup's memory limit; the OOM killer ends a process past it), and the most a create
    /// request may ask for. Default 4 GiB.
    #[arg(long = flags::TOTAL_MEMORY, env = "PREWARM_SANDBOX_TOTAL_MEMORY_BYTES", default_value_t = ResourceLimits::DEFAULT.total_memory_bytes)]
    pub total_memory_bytes: u64,
    /// A sandbox's CPU share under contention, relative to other sandboxes (1-10000, 100 is
    /// an even share), and the most a create request may ask for.
    #[arg(long = flags::CPU_WEIGHT, env = "PREWARM_SANDBOX_CPU_WEIGHT", default_value_t = ResourceLimits::DEFAULT.cpu_weight)]
    pub cpu_weight: u64,
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
    #[error("--{flag}: {source}")]
    Limits {
        flag: &'static str,
        #[source]
        source: LimitError,
    },
    #[error("opening the node directory")]
    Node(#[from] prewarm_client::pull::PullError),
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
        let Some(bwrap) = find_bwrap() else {
            tracing::warn!("{}; sandboxes are disabled", NodeStartError::NoBwrap);
            return Ok(None);
        };
        // Never run sandboxes without their limits.
        let Some(prlimit) = find_prlimit() else {
            tracing::warn!("{}; sandboxes are disabled", NodeStartError::NoPrlimit);
            return Ok(None);
        };
        let registry: Arc<dyn Registry> = match redis {
            Some(client) => Arc::new(RedisRegistry::connect(client).await?),
            None => Arc::new(NoRegistry),
        };
        let node_name = self.node_name.clone().unwrap_or_else(hostname);
        let node_dir = self
            .node_dir
            .clone()
            .unwrap_or_else(|| data_dir.join(NODE_DIR));
        let cgroups = sandbox_cgroups(&node_name, &node_dir);
        let cfg = WarmConfig {
            node_dir,
            node_name,
            workers: self.workers.max(1),
            fetch_concurrency: 16,
            disk_budget: self.disk_budget,
            warm_command_timeout: Duration::from_secs(self.warm_command_timeout_secs),
            bwrap,
            prlimit,
            limits,
            cgroups,
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
            pids: self.pids,
            total_memory_bytes: self.total_memory_bytes,
            cpu_weight: self.cpu_weight,
        }
        .checked()
        .map_err(|source| {
            let flag = match source.limit() {
                Limit::MemoryBytes => flags::MEMORY,
                Limit::CpuSecs => flags::CPU,
                Limit::FileBytes => flags::FILE,
                Limit::OpenFiles => flags::OPEN_FILES,
                Limit::Pids => flags::PIDS,
                Limit::TotalMemoryBytes => flags::TOTAL_MEMORY,
                Limit::CpuWeight => flags::CPU_WEIGHT,
            };
            NodeStartError::Limits { flag, source }
        })
    }
}

/// This node's cgroups, with what a previous run left in them killed and removed. Without
/// some controller the sandboxes run without that limit, and the log says so at start: the
/// sandbox-wide limits degrade, the origin still serves (`scripts/sandbox-tools` mounts the
/// missing v1 controllers where it can).
fn sandbox_cgroups(node_name: &str, node_dir: &Path) -> Cgroups {
    let found = match Cgroups::discover(node_name, node_dir) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read this process's cgroups; sandboxes run without sandbox-wide limits (pids, total memory, CPU weight) and DELETE kills by process group only");
            return Cgroups::none();
        }
    };
    for c in &found.missing {
        let what = match *c {
            "pids" => format!(
                "no process cap per sandbox (--{}): a fork bomb is bounded only by the host",
                flags::PIDS
            ),
            "memory" => format!(
                "no memory cap per sandbox (--{}): only the per-process --{}",
                flags::TOTAL_MEMORY,
                flags::MEMORY
            ),
            _ => format!("no CPU weight per sandbox (--{})", flags::CPU_WEIGHT),
        };
        tracing::warn!(
            controller = c,
            cgroup_v2 = found.v2,
            "no usable cgroup v1 `{c}` hierarchy for this process (cgroup v2 alone is not supported yet; run scripts/sandbox-tools to mount v1 controllers): {what}"
        );
    }
    if !found.cgroups.enabled() {
        tracing::warn!("sandboxes run without cgroups: DELETE kills by process group only");
    }
    found.cgroups.sweep();
    found.cgroups
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}
