//! One sandbox's (or warm job's) cgroup: joining it before the jail runs, the processes in it, killing them all, removing it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// The shell that joins a cgroup and then execs the jail: on every Linux host.
const SH: &str = "/bin/sh";

/// Joins each `cgroup.procs` named before `--`, then execs what follows. Paths are
/// arguments, never part of the script. Exit 125 (with a message) if a join fails: the
/// command does not run outside its cgroup.
const JOIN_SCRIPT: &str = r#"while [ "$1" != -- ]; do echo $$ > "$1" || { echo "prewarm: cannot join the sandbox cgroup ($1)" >&2; exit 125; }; shift; done; shift; exec "$@""#;

/// How long [`SandboxCgroup::remove`] keeps killing and retrying before it gives up.
const REMOVE_PATIENCE: Duration = Duration::from_secs(10);

/// One sandbox's (or warm job's) cgroup: a directory in each controller's hierarchy.
#[derive(Debug, Clone, Default)]
pub struct SandboxCgroup {
    pub(super) dirs: Vec<(&'static str, PathBuf)>,
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

    /// Sets the CPU share of a cgroup made with another (a pooled sandbox, started at a low
    /// weight, gets the sandbox's when it is handed out). Nothing without a `cpu` controller.
    pub fn set_cpu_weight(&self, weight: u64) -> io::Result<()> {
        match self.dir("cpu") {
            Some(d) => fs::write(d.join("cpu.shares"), super::cpu_shares(weight).to_string()),
            None => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
