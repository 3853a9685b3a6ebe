//! A cgroup per sandbox (and per warm job): the sandbox-wide limits, and killing every process a sandbox started.
//!
//! cgroup v1, one directory per controller, nested under the origin's own cgroup so the
//! sandboxes stay charged to whatever contains the origin:
//!
//! ```text
//! /sys/fs/cgroup/pids/<origin's>/prewarm/<node-key>/<sandbox-id>/   pids.max
//! /sys/fs/cgroup/memory/<origin's>/prewarm/<node-key>/<sandbox-id>/ memory.limit_in_bytes,
//!                                                                     memory.memsw.limit_in_bytes
//! /sys/fs/cgroup/cpu/<origin's>/prewarm/<node-key>/<sandbox-id>/    cpu.shares
//! ```
//!
//! `<node-key>` is the node's name and a hash of its directory, so origins sharing a host
//! never touch each other's cgroups, and a restarted origin finds (and kills) what its
//! previous run left. A command joins before it execs anything: [`SandboxCgroup::join_args`]
//! wraps it in `/bin/sh`, which writes its own pid into each `cgroup.procs` and then execs
//! `prlimit … bwrap …`, so every process of the sandbox, even one that `setsid`s away from
//! its process group, is inside. No `pre_exec`, so no `unsafe`.
//!
//! Not done: cgroup v2 (this module finds only v1 hierarchies and says so at start when the
//! host has only v2).

mod group;
mod mounts;

pub use group::SandboxCgroup;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use prewarm_shared::Digest;

use super::limits::ResourceLimits;

/// The controllers a sandbox's cgroup uses, by their v1 names.
pub const CONTROLLERS: [&str; 3] = ["pids", "memory", "cpu"];

/// Where this node's cgroups go: one directory per controller found. Empty when the host
/// has none of them (sandboxes then run without sandbox-wide limits; see [`Cgroups::discover`]).
#[derive(Debug, Clone, Default)]
pub struct Cgroups {
    /// `(controller, <its mount>/<origin's cgroup>/prewarm/<node-key>)`.
    roots: Vec<(&'static str, PathBuf)>,
}

/// What [`Cgroups::discover`] found, and what it could not.
#[derive(Debug)]
pub struct Discovery {
    pub cgroups: Cgroups,
    /// Controllers of [`CONTROLLERS`] without a usable v1 hierarchy.
    pub missing: Vec<&'static str>,
    /// The host has a cgroup v2 hierarchy (not used here).
    pub v2: bool,
}

impl Cgroups {
    /// No cgroups: commands run with rlimits only, and killing falls back to process groups.
    pub fn none() -> Self {
        Self::default()
    }

    /// Finds the v1 hierarchies of [`CONTROLLERS`] this process is in, and names this node's
    /// directory in each after `node_name` and `node_dir`. Creates nothing.
    pub fn discover(node_name: &str, node_dir: &Path) -> io::Result<Discovery> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let proc_cgroup = fs::read_to_string("/proc/self/cgroup")?;
        let mounts = mounts::v1_mounts(&mountinfo);
        let key = node_key(node_name, node_dir);
        let mut roots = Vec::new();
        let mut missing = Vec::new();
        for c in CONTROLLERS {
            match mounts::own_dir(&mounts, &proc_cgroup, c) {
                Some(dir) if dir.join("cgroup.procs").is_file() => {
                    roots.push((c, dir.join("prewarm").join(&key)))
                }
                _ => missing.push(c),
            }
        }
        Ok(Discovery {
            cgroups: Cgroups { roots },
            missing,
            v2: mounts::has_v2(&mountinfo),
        })
    }

    /// This node's cgroups, with what a previous run left in them killed and removed. Without
    /// some controller, sandboxes run without that limit and the log says so at start: the
    /// sandbox-wide limits degrade, the origin still serves (`scripts/sandbox-tools` mounts
    /// the missing v1 controllers where it can).
    pub fn for_node(node_name: &str, node_dir: &Path) -> Cgroups {
        let found = match Cgroups::discover(node_name, node_dir) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read this process's cgroups: sandboxes run without sandbox.pids, sandbox.total_memory_bytes and sandbox.cpu_weight, and DELETE kills by process group only");
                return Cgroups::none();
            }
        };
        for c in &found.missing {
            let what = match *c {
                "pids" => "sandbox.pids is not applied: a fork bomb is bounded only by the host",
                "memory" => "sandbox.total_memory_bytes is not applied: only the per-process sandbox.memory_bytes",
                _ => "sandbox.cpu_weight is not applied",
            };
            tracing::warn!(
                controller = c,
                cgroup_v2 = found.v2,
                "no usable cgroup v1 `{c}` hierarchy (cgroup v2 is not supported yet; scripts/sandbox-tools mounts v1 controllers): {what}"
            );
        }
        if !found.cgroups.enabled() {
            tracing::warn!("sandboxes run without cgroups: DELETE kills by process group only");
        }
        found.cgroups.sweep();
        found.cgroups
    }

    /// Removes this node's directories once empty (at shutdown, after its sandboxes went):
    /// a cgroup directory with a sandbox still in it stays.
    pub fn release(&self) {
        for (_, root) in &self.roots {
            let _ = fs::remove_dir(root);
        }
    }

    /// Whether any controller is in use.
    pub fn enabled(&self) -> bool {
        !self.roots.is_empty()
    }

    /// Whether `controller` is in use.
    pub fn has(&self, controller: &str) -> bool {
        self.roots.iter().any(|(c, _)| *c == controller)
    }

    /// Creates the cgroup `name` with the sandbox-wide limits of `limits`. Nothing is left
    /// behind on error. One of that name already there (a warm job's, which a failed removal
    /// left) is killed and removed first: its limits may not be these.
    pub fn create(&self, name: &str, limits: &ResourceLimits) -> io::Result<SandboxCgroup> {
        let stale = SandboxCgroup {
            dirs: self
                .roots
                .iter()
                .map(|(c, root)| (*c, root.join(name)))
                .filter(|(_, d)| d.exists())
                .collect(),
        };
        if !stale.dirs.is_empty() {
            stale.remove();
        }
        let mut cg = SandboxCgroup { dirs: Vec::new() };
        for (c, root) in &self.roots {
            let dir = root.join(name);
            let made = fs::create_dir_all(root)
                .and_then(|()| fs::create_dir(&dir))
                .map_err(|e| annotate(e, "creating", &dir));
            if let Err(e) = made {
                cg.remove();
                return Err(e);
            }
            cg.dirs.push((*c, dir.clone()));
            if let Err(e) = set_limits(c, &dir, limits) {
                cg.remove();
                return Err(e);
            }
        }
        Ok(cg)
    }

    /// Kills and removes every cgroup this node's directory holds: what a previous run of this
    /// node (killed before it could clean up) left behind.
    pub fn sweep(&self) {
        let mut names: Vec<String> = self
            .roots
            .iter()
            .filter_map(|(_, root)| fs::read_dir(root).ok())
            .flat_map(|rd| rd.flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            let cg = SandboxCgroup {
                dirs: self
                    .roots
                    .iter()
                    .map(|(c, root)| (*c, root.join(&name)))
                    .filter(|(_, d)| d.is_dir())
                    .collect(),
            };
            let had = cg.procs().len();
            tracing::warn!(cgroup = %name, processes = had, "removing a cgroup left by a previous run");
            cg.remove();
        }
    }
}

/// Writes the limits `limits` sets for `controller` into the fresh cgroup `dir`.
fn set_limits(controller: &str, dir: &Path, limits: &ResourceLimits) -> io::Result<()> {
    let write = |file: &str, v: u64| {
        let path = dir.join(file);
        fs::write(&path, v.to_string()).map_err(|e| annotate(e, "writing", &path))
    };
    match controller {
        "pids" => write("pids.max", limits.pids),
        "memory" => {
            write("memory.limit_in_bytes", limits.total_memory_bytes)?;
            // With swap accounting, memory plus swap: the cap cannot be dodged by swapping.
            if dir.join("memory.memsw.limit_in_bytes").exists() {
                write("memory.memsw.limit_in_bytes", limits.total_memory_bytes)?;
            }
            Ok(())
        }
        "cpu" => write("cpu.shares", cpu_shares(limits.cpu_weight)),
        _ => Ok(()),
    }
}

/// cgroup v2's `cpu.weight` (1–10000, default 100) as v1 `cpu.shares` (default 1024, min 2).
fn cpu_shares(weight: u64) -> u64 {
    (weight.saturating_mul(1024) / 100).max(2)
}

/// `<node name, safe characters only>-<12 hex of the node directory's hash>`.
fn node_key(node_name: &str, node_dir: &Path) -> String {
    let name: String = node_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let dir = node_dir
        .canonicalize()
        .unwrap_or_else(|_| node_dir.to_path_buf());
    let hash = Digest::of(dir.as_os_str().as_encoded_bytes()).hex();
    format!("{}-{}", name.trim_start_matches('.'), &hash[..12])
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_weight_maps_to_shares() {
        assert_eq!(cpu_shares(100), 1024);
        assert_eq!(cpu_shares(50), 512);
        assert_eq!(cpu_shares(1), 10);
        assert_eq!(cpu_shares(10_000), 102_400);
    }

    #[test]
    fn node_keys_are_safe_names_and_differ_by_directory() {
        let a = node_key("web-1", Path::new("/nonexistent/a"));
        let b = node_key("web-1", Path::new("/nonexistent/b"));
        assert!(
            a.starts_with("web-1-") && a.len() == "web-1-".len() + 12,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(a, node_key("web-1", Path::new("/nonexistent/a")));
        let odd = node_key("../x y/", Path::new("/d"));
        assert!(!odd.contains('/') && !odd.starts_with('.'), "{odd}");
    }
}
