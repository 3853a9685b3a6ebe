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

mod mounts;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prewarm_shared::Digest;
use rustix::process::{kill_process, Pid, Signal};

use super::limits::ResourceLimits;

/// The controllers a sandbox's cgroup uses, by their v1 names.
pub const CONTROLLERS: [&str; 3] = ["pids", "memory", "cpu"];

/// The shell that joins a cgroup and then execs the jail: on every Linux host.
const SH: &str = "/bin/sh";

/// Joins each `cgroup.procs` named before `--`, then execs what follows. Paths are
/// arguments, never part of the script. Exit 125 (with a message) if a join fails: the
/// command does not run outside its cgroup.
const JOIN_SCRIPT: &str = r#"while [ "$1" != -- ]; do echo $$ > "$1" || { echo "prewarm: cannot join the sandbox cgroup ($1)" >&2; exit 125; }; shift; done; shift; exec "$@""#;

/// How long [`SandboxCgroup::remove`] keeps killing and retrying before it gives up.
const REMOVE_PATIENCE: Duration = Duration::from_secs(10);

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
    /// behind on error.
    pub fn create(&self, name: &str, limits: &ResourceLimits) -> io::Result<SandboxCgroup> {
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

/// One sandbox's (or warm job's) cgroup: a directory in each controller's hierarchy.
#[derive(Debug, Clone, Default)]
pub struct SandboxCgroup {
    dirs: Vec<(&'static str, PathBuf)>,
}

impl SandboxCgroup {
    /// The program and arguments that put the process into this cgroup and then exec
    /// `program args…`. Empty when there are no cgroups: run `program` directly.
    pub fn join_args(&self) -> Vec<std::ffi::OsString> {
        if self.dirs.is_empty() {
            return Vec::new();
        }
        let mut a: Vec<std::ffi::OsString> = vec![SH.into(), "-c".into(), JOIN_SCRIPT.into()];
        a.push("sh".into());
        for (_, d) in &self.dirs {
            a.push(d.join("cgroup.procs").into());
        }
        a.push("--".into());
        a
    }

    /// The directory of `controller`, if this cgroup has one.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, d)| d.as_path())
    }

    /// Every process in the cgroup (as the origin sees their pids), sorted.
    pub fn procs(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .dirs
            .iter()
            .filter_map(|(_, d)| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// How many times the kernel's OOM killer ended a process for the memory limit: the
    /// `oom_kill` line of `memory.oom_control`. `None` without a memory cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let text = fs::read_to_string(self.dir("memory")?.join("memory.oom_control")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// SIGKILLs every process in the cgroup, again and again until none is left (a process
    /// may fork between the read and the kill; the pids limit bounds how many). Returns
    /// whether the cgroup is empty. Blocking: a few milliseconds, at most `patience`.
    pub fn kill_all(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            let pids = self.procs();
            if pids.is_empty() {
                return true;
            }
            for pid in pids {
                if let Some(p) = Pid::from_raw(pid as i32) {
                    // Already gone is fine.
                    let _ = kill_process(p, Signal::Kill);
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills every process in the cgroup and removes its directories. Blocking; logs what
    /// it could not remove.
    pub fn remove(&self) {
        let deadline = Instant::now() + REMOVE_PATIENCE;
        if !self.kill_all(REMOVE_PATIENCE) {
            tracing::warn!(cgroup = ?self.dirs, "processes survived SIGKILL");
        }
        for (_, d) in &self.dirs {
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // Busy: a process killed a moment ago is still exiting.
                    Err(e) if Instant::now() < deadline => {
                        tracing::debug!(dir = %d.display(), error = %e, "cgroup busy");
                        self.kill_all(Duration::from_millis(100));
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => {
                        tracing::warn!(dir = %d.display(), error = %e, "could not remove a cgroup");
                        break;
                    }
                }
            }
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

    #[test]
    fn joining_passes_paths_as_arguments_then_the_command() {
        assert!(SandboxCgroup::default().join_args().is_empty());
        let cg = SandboxCgroup {
            dirs: vec![
                ("pids", "/cg/pids/sb-1".into()),
                ("memory", "/cg/memory/it's here".into()),
            ],
        };
        let a: Vec<String> = cg
            .join_args()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(a[..2], [SH, "-c"]);
        assert!(!a[2].contains("/cg/"), "paths are not in the script");
        assert_eq!(
            a[3..],
            [
                "sh",
                "/cg/pids/sb-1/cgroup.procs",
                "/cg/memory/it's here/cgroup.procs",
                "--"
            ]
        );
    }

    /// The join script, run for real with files standing in for `cgroup.procs`.
    #[test]
    fn the_join_script_writes_its_pid_everywhere_then_execs() {
        let dir = tempfile::tempdir().unwrap();
        let cg = SandboxCgroup {
            dirs: vec![
                ("pids", dir.path().join("a")),
                ("memory", dir.path().join("b")),
            ],
        };
        for (_, d) in &cg.dirs {
            fs::create_dir(d).unwrap();
        }
        let args = cg.join_args();
        let out = std::process::Command::new(&args[0])
            .args(&args[1..])
            .args(["/bin/sh", "-c", "echo $$"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let pid = String::from_utf8(out.stdout).unwrap();
        for (_, d) in &cg.dirs {
            assert_eq!(fs::read_to_string(d.join("cgroup.procs")).unwrap(), pid);
        }
        // A join that fails runs nothing.
        let missing = SandboxCgroup {
            dirs: vec![("pids", dir.path().join("nope"))],
        };
        let args = missing.join_args();
        let out = std::process::Command::new(&args[0])
            .args(&args[1..])
            .args(["/bin/echo", "ran"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125));
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot join"));
    }
}
