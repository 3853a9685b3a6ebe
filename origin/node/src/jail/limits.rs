//! Resource limits of sandboxed commands: the server's ceiling, narrowing by requests, the `prlimit` arguments, and naming the limit that ended a command.
//!
//! Applied with util-linux `prlimit`, which sets its own rlimits and then execs bubblewrap:
//! rlimits are inherited, so bwrap and every process in the sandbox run under them. The
//! workspace forbids `unsafe`, so there is no `pre_exec` to call `setrlimit` ourselves.
//!
//! Every rlimit is per process, so N processes may use N times the memory, and nothing in
//! them caps the number of processes (`RLIMIT_NPROC` counts a uid's processes, and every
//! sandbox runs as the same sandbox uid, so one could starve all). The sandbox-wide limits
//! here (`pids`, `total_memory_bytes`, `cpu_weight`) do that, through the sandbox's cgroup
//! ([`super::cgroup`]).

use prewarm_shared::limits::{Limit, LimitError, LimitHit, Limits};
use rustix::process::Signal;

/// After the CPU soft limit (SIGXCPU, which ends a process that does not handle it) a process
/// gets this many more CPU seconds before the hard limit's SIGKILL.
pub const CPU_GRACE_SECS: u64 = 2;

/// The limits one command runs under: each one concrete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    pub memory_bytes: u64,
    pub cpu_secs: u64,
    pub file_bytes: u64,
    pub open_files: u64,
    /// Sandbox-wide: processes and threads at once.
    pub pids: u64,
    /// Sandbox-wide: memory of all processes together.
    pub total_memory_bytes: u64,
    /// Sandbox-wide: relative CPU share (100 = default).
    pub cpu_weight: u64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl ResourceLimits {
    /// Out of reach of ordinary Python or Node work, within reach of a runaway: 4 GiB of
    /// memory and 10 minutes of CPU per process, 1 GiB files, 1024 descriptors; 512
    /// processes and 4 GiB of memory per sandbox, at the default CPU weight.
    pub const DEFAULT: Self = Self {
        memory_bytes: 4 << 30,
        cpu_secs: 600,
        file_bytes: 1 << 30,
        open_files: 1024,
        pids: 512,
        total_memory_bytes: 4 << 30,
        cpu_weight: 100,
    };

    pub fn get(&self, limit: Limit) -> u64 {
        match limit {
            Limit::MemoryBytes => self.memory_bytes,
            Limit::CpuSecs => self.cpu_secs,
            Limit::FileBytes => self.file_bytes,
            Limit::OpenFiles => self.open_files,
            Limit::Pids => self.pids,
            Limit::TotalMemoryBytes => self.total_memory_bytes,
            Limit::CpuWeight => self.cpu_weight,
        }
    }

    fn set(&mut self, limit: Limit, v: u64) {
        match limit {
            Limit::MemoryBytes => self.memory_bytes = v,
            Limit::CpuSecs => self.cpu_secs = v,
            Limit::FileBytes => self.file_bytes = v,
            Limit::OpenFiles => self.open_files = v,
            Limit::Pids => self.pids = v,
            Limit::TotalMemoryBytes => self.total_memory_bytes = v,
            Limit::CpuWeight => self.cpu_weight = v,
        }
    }

    /// The server's own limits, checked against the same bounds as a request's.
    pub fn checked(self) -> Result<Self, LimitError> {
        Limit::ALL
            .iter()
            .try_fold(Limits::default(), |l, k| l.with(*k, self.get(*k)))?;
        Ok(self)
    }

    /// These limits lowered by `req`. A request can only lower: asking for more than `self`
    /// is an error naming the limit and the maximum.
    pub fn narrow(&self, req: &Limits) -> Result<Self, LimitError> {
        let mut out = *self;
        for limit in Limit::ALL {
            let Some(value) = req.get(limit) else {
                continue;
            };
            let max = self.get(limit);
            if value > max {
                return Err(LimitError::AboveMax { limit, value, max });
            }
            out.set(limit, value);
        }
        Ok(out)
    }

    /// [`ResourceLimits::narrow`] for one command: only per-process limits, since the
    /// sandbox-wide ones were fixed when the sandbox's cgroup was made.
    pub fn narrow_exec(&self, req: &Limits) -> Result<Self, LimitError> {
        if let Some(limit) = req.sandbox_wide() {
            return Err(LimitError::SandboxWide { limit });
        }
        self.narrow(req)
    }

    /// `prlimit`'s options (before its `--`). Soft and hard limits are equal, except CPU:
    /// SIGXCPU at `cpu_secs`, SIGKILL [`CPU_GRACE_SECS`] later. Core dumps are always off.
    pub fn prlimit_args(&self) -> Vec<String> {
        vec![
            format!("--data={}", self.memory_bytes),
            format!(
                "--cpu={}:{}",
                self.cpu_secs,
                self.cpu_secs.saturating_add(CPU_GRACE_SECS)
            ),
            format!("--fsize={}", self.file_bytes),
            format!("--nofile={}", self.open_files),
            "--core=0".to_string(),
        ]
    }

    /// The limit a command killed by `signal` (as named by [`signal_name`]) ran into, if the
    /// signal is one only a limit sends.
    pub fn hit(&self, signal: &str) -> Option<LimitHit> {
        let limit = match signal {
            "SIGXCPU" => Limit::CpuSecs,
            "SIGXFSZ" => Limit::FileBytes,
            _ => return None,
        };
        let value = self.get(limit);
        Some(LimitHit {
            limit,
            value,
            message: format!(
                "killed by {signal}: {limit} limit ({}) reached",
                limit.show(value)
            ),
        })
    }
}

impl ResourceLimits {
    /// The sandbox's memory cap, as the limit that ended a command the OOM killer took.
    pub fn oom_hit(&self) -> LimitHit {
        let (limit, value) = (Limit::TotalMemoryBytes, self.total_memory_bytes);
        LimitHit {
            limit,
            value,
            message: format!(
                "killed by SIGKILL: the sandbox's {limit} limit ({}) reached (out of memory)",
                limit.show(value)
            ),
        }
    }
}

/// Signals a command may die of, by name. From rustix, so the numbers are the platform's.
const SIGNALS: &[(Signal, &str)] = &[
    (Signal::Hup, "SIGHUP"),
    (Signal::Int, "SIGINT"),
    (Signal::Quit, "SIGQUIT"),
    (Signal::Ill, "SIGILL"),
    (Signal::Trap, "SIGTRAP"),
    (Signal::Abort, "SIGABRT"),
    (Signal::Bus, "SIGBUS"),
    (Signal::Fpe, "SIGFPE"),
    (Signal::Kill, "SIGKILL"),
    (Signal::Usr1, "SIGUSR1"),
    (Signal::Segv, "SIGSEGV"),
    (Signal::Usr2, "SIGUSR2"),
    (Signal::Pipe, "SIGPIPE"),
    (Signal::Alarm, "SIGALRM"),
    (Signal::Term, "SIGTERM"),
    (Signal::Xcpu, "SIGXCPU"),
    (Signal::Xfsz, "SIGXFSZ"),
    (Signal::Vtalarm, "SIGVTALRM"),
    (Signal::Prof, "SIGPROF"),
    (Signal::Sys, "SIGSYS"),
];

/// `SIGXCPU` for SIGXCPU's number; `SIG<n>` for one not in the table.
pub fn signal_name(n: i32) -> String {
    SIGNALS
        .iter()
        .find(|(s, _)| *s as i32 == n)
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| format!("SIG{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(json: &str) -> Limits {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_request_only_lowers_and_names_what_it_asked_too_much_of() {
        let server = ResourceLimits::default();
        let l = server
            .narrow(&limits(r#"{"memory_bytes":268435456,"cpu_secs":1}"#))
            .unwrap();
        assert_eq!(l.memory_bytes, 256 << 20);
        assert_eq!(l.cpu_secs, 1);
        assert_eq!(l.file_bytes, server.file_bytes, "absent: kept");
        assert_eq!(server.narrow(&Limits::default()).unwrap(), server);
        let e = server
            .narrow(&limits(r#"{"file_bytes":2147483648}"#))
            .unwrap_err();
        assert_eq!(e.code(), "limit_above_max");
        let msg = e.to_string();
        assert!(
            msg.contains("limits.file_bytes") && msg.contains("1073741824"),
            "{msg}"
        );
        // Equal to the maximum is allowed.
        assert!(server.narrow(&limits(r#"{"open_files":1024}"#)).is_ok());
        // Sandbox-wide limits: a create lowers them, an exec cannot touch them.
        let l = server
            .narrow(&limits(r#"{"pids":64,"total_memory_bytes":1073741824}"#))
            .unwrap();
        assert_eq!((l.pids, l.total_memory_bytes), (64, 1 << 30));
        let e = server.narrow(&limits(r#"{"pids":100000}"#)).unwrap_err();
        assert!(e.to_string().contains("limits.pids") && e.to_string().contains("512"));
        let e = l.narrow_exec(&limits(r#"{"pids":32}"#)).unwrap_err();
        assert_eq!(e.code(), "limit_not_per_exec");
        assert!(e.to_string().contains("limits.pids"), "{e}");
        assert_eq!(
            l.narrow_exec(&limits(r#"{"cpu_secs":1}"#)).unwrap().pids,
            64
        );
    }

    #[test]
    fn server_limits_are_bounded_too() {
        assert!(ResourceLimits::default().checked().is_ok());
        let zero_cpu = ResourceLimits {
            cpu_secs: 0,
            ..Default::default()
        };
        let e = zero_cpu.checked().unwrap_err();
        assert!(e.to_string().contains("limits.cpu_secs"), "{e}");
    }

    #[test]
    fn prlimit_arguments() {
        let l = ResourceLimits {
            memory_bytes: 1 << 30,
            cpu_secs: 5,
            file_bytes: 4096,
            open_files: 64,
            ..Default::default()
        };
        assert_eq!(
            l.prlimit_args(),
            [
                "--data=1073741824",
                "--cpu=5:7",
                "--fsize=4096",
                "--nofile=64",
                "--core=0"
            ]
        );
    }

    #[test]
    fn only_limit_signals_name_a_limit() {
        let l = ResourceLimits {
            cpu_secs: 3,
            ..Default::default()
        };
        let hit = l.hit(&signal_name(Signal::Xcpu as i32)).unwrap();
        assert_eq!((hit.limit, hit.value), (Limit::CpuSecs, 3));
        assert_eq!(
            hit.message,
            "killed by SIGXCPU: cpu_secs limit (3 s) reached"
        );
        let hit = l.hit("SIGXFSZ").unwrap();
        assert_eq!(hit.limit, Limit::FileBytes);
        assert!(l.hit("SIGKILL").is_none());
        assert!(l.hit("SIGSEGV").is_none());
        assert_eq!(signal_name(Signal::Kill as i32), "SIGKILL");
        assert_eq!(signal_name(77), "SIG77");
    }
}
