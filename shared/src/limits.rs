//! Resource limits of sandboxes and their commands: the request form and its bounds.
//!
//! Two kinds. Per-process limits (setrlimit) apply to every process of a command separately:
//! two processes may each use `memory_bytes`; a sandbox or an exec can lower them. Sandbox-wide
//! limits (a cgroup per sandbox) cap all of a sandbox's processes together: `pids`,
//! `total_memory_bytes` and `cpu_weight`; only the create request can lower them. A request
//! can never raise the server's limits.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One limit, by its wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Limit {
    /// Writable private memory (heap, anonymous mappings, stacks), `RLIMIT_DATA`. Not
    /// `RLIMIT_AS`: V8, Go and the JVM reserve far more address space than they use.
    MemoryBytes,
    /// CPU time, `RLIMIT_CPU`: SIGXCPU at the limit, SIGKILL a little later.
    CpuSecs,
    /// Largest file a process may write, `RLIMIT_FSIZE`: SIGXFSZ, or EFBIG when handled.
    FileBytes,
    /// Open file descriptors, `RLIMIT_NOFILE`.
    OpenFiles,
    /// Processes and threads of the whole sandbox at once (the cgroup's `pids` controller):
    /// a fork past it fails with `EAGAIN`.
    Pids,
    /// Memory of all of the sandbox's processes together, page cache and `/tmp` included (the
    /// cgroup's `memory` controller): past it the kernel's OOM killer ends one of them.
    TotalMemoryBytes,
    /// The sandbox's share of CPU when CPUs are contended, relative to other sandboxes (100
    /// is the default; cgroup v2's `cpu.weight`, `cpu.shares` = weight × 1024 / 100 on v1).
    CpuWeight,
}

impl Limit {
    pub const ALL: [Limit; 7] = [
        Limit::MemoryBytes,
        Limit::CpuSecs,
        Limit::FileBytes,
        Limit::OpenFiles,
        Limit::Pids,
        Limit::TotalMemoryBytes,
        Limit::CpuWeight,
    ];

    /// Whether the limit caps the sandbox as a whole (set at create, never by an exec).
    pub fn sandbox_wide(self) -> bool {
        matches!(
            self,
            Limit::Pids | Limit::TotalMemoryBytes | Limit::CpuWeight
        )
    }

    /// The key in a request's `limits` object.
    pub fn name(self) -> &'static str {
        match self {
            Limit::MemoryBytes => "memory_bytes",
            Limit::CpuSecs => "cpu_secs",
            Limit::FileBytes => "file_bytes",
            Limit::OpenFiles => "open_files",
            Limit::Pids => "pids",
            Limit::TotalMemoryBytes => "total_memory_bytes",
            Limit::CpuWeight => "cpu_weight",
        }
    }

    /// The values accepted anywhere, request or server flag. The minimums still start a shell
    /// or Python under bubblewrap; the maximums only catch nonsense (the server's own limits
    /// are the real ceiling).
    pub fn bounds(self) -> (u64, u64) {
        match self {
            Limit::MemoryBytes => (16 << 20, 1 << 40),
            Limit::CpuSecs => (1, 7 * 24 * 3600),
            Limit::FileBytes => (1, 1 << 50),
            Limit::OpenFiles => (16, 1 << 20),
            // bubblewrap and the shell it starts are already 3-4 of them.
            Limit::Pids => (16, 1 << 22),
            Limit::TotalMemoryBytes => (32 << 20, 1 << 44),
            Limit::CpuWeight => (1, 10_000),
        }
    }

    /// The value with its unit, for messages.
    pub fn show(self, v: u64) -> String {
        match self {
            Limit::MemoryBytes | Limit::FileBytes | Limit::TotalMemoryBytes => {
                format!("{v} bytes")
            }
            Limit::CpuSecs => format!("{v} s"),
            Limit::OpenFiles => format!("{v} files"),
            Limit::Pids => format!("{v} processes"),
            Limit::CpuWeight => format!("weight {v}"),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A limit that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("limits.{limit} must be between {min} and {max}, not {value}")]
    OutOfRange {
        limit: Limit,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("limits.{limit} = {value} is above the maximum of {max} ({})", limit.show(*max))]
    AboveMax { limit: Limit, value: u64, max: u64 },
    #[error(
        "limits.{limit} caps the whole sandbox: set it when creating the sandbox, not per exec"
    )]
    SandboxWide { limit: Limit },
}

impl LimitError {
    /// The limit at fault.
    pub fn limit(&self) -> Limit {
        match self {
            LimitError::OutOfRange { limit, .. }
            | LimitError::AboveMax { limit, .. }
            | LimitError::SandboxWide { limit } => *limit,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            LimitError::OutOfRange { .. } => "bad_limit",
            LimitError::AboveMax { .. } => "limit_above_max",
            LimitError::SandboxWide { .. } => "limit_not_per_exec",
        }
    }
}

/// `"limits"` in `POST /v1/sandboxes` and `…/exec`: each key given lowers that limit; an absent
/// one keeps the server's (or, for an exec, the sandbox's). Unknown keys are refused, and every
/// value is within [`Limit::bounds`]: checked once, when built or parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawLimits")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open_files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pids: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_weight: Option<u64>,
}

impl Limits {
    /// Nothing asked for: every limit is the server's (or the sandbox's).
    pub fn is_empty(&self) -> bool {
        Limit::ALL.iter().all(|l| self.get(*l).is_none())
    }

    pub fn get(&self, limit: Limit) -> Option<u64> {
        *self.slot(limit)
    }

    /// The first sandbox-wide limit given, if any: an exec may not set one.
    pub fn sandbox_wide(&self) -> Option<Limit> {
        Limit::ALL
            .into_iter()
            .find(|l| l.sandbox_wide() && self.get(*l).is_some())
    }

    /// Sets one limit, if within its bounds.
    pub fn with(mut self, limit: Limit, value: u64) -> Result<Self, LimitError> {
        let (min, max) = limit.bounds();
        if !(min..=max).contains(&value) {
            return Err(LimitError::OutOfRange {
                limit,
                value,
                min,
                max,
            });
        }
        *self.slot_mut(limit) = Some(value);
        Ok(self)
    }

    fn slot(&self, limit: Limit) -> &Option<u64> {
        match limit {
            Limit::MemoryBytes => &self.memory_bytes,
            Limit::CpuSecs => &self.cpu_secs,
            Limit::FileBytes => &self.file_bytes,
            Limit::OpenFiles => &self.open_files,
            Limit::Pids => &self.pids,
            Limit::TotalMemoryBytes => &self.total_memory_bytes,
            Limit::CpuWeight => &self.cpu_weight,
        }
    }

    fn slot_mut(&mut self, limit: Limit) -> &mut Option<u64> {
        match limit {
            Limit::MemoryBytes => &mut self.memory_bytes,
            Limit::CpuSecs => &mut self.cpu_secs,
            Limit::FileBytes => &mut self.file_bytes,
            Limit::OpenFiles => &mut self.open_files,
            Limit::Pids => &mut self.pids,
            Limit::TotalMemoryBytes => &mut self.total_memory_bytes,
            Limit::CpuWeight => &mut self.cpu_weight,
        }
    }
}

/// The unchecked wire form [`Limits`] is parsed through.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_bytes: Option<u64>,
    cpu_secs: Option<u64>,
    file_bytes: Option<u64>,
    open_files: Option<u64>,
    pids: Option<u64>,
    total_memory_bytes: Option<u64>,
    cpu_weight: Option<u64>,
}

impl TryFrom<RawLimits> for Limits {
    type Error = LimitError;

    fn try_from(r: RawLimits) -> Result<Self, LimitError> {
        let given = [
            (Limit::MemoryBytes, r.memory_bytes),
            (Limit::CpuSecs, r.cpu_secs),
            (Limit::FileBytes, r.file_bytes),
            (Limit::OpenFiles, r.open_files),
            (Limit::Pids, r.pids),
            (Limit::TotalMemoryBytes, r.total_memory_bytes),
            (Limit::CpuWeight, r.cpu_weight),
        ];
        given
            .into_iter()
            .try_fold(Limits::default(), |acc, (l, v)| match v {
                Some(v) => acc.with(l, v),
                None => Ok(acc),
            })
    }
}

/// A command that a limit ended, as reported in an exec result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitHit {
    /// Which limit, named as in the request: `cpu_secs`, `file_bytes` or `total_memory_bytes`.
    pub limit: Limit,
    /// The limit the command ran under.
    pub value: u64,
    /// For people: e.g. "killed by SIGXCPU: cpu_secs limit (1 s) reached".
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Limits, String> {
        serde_json::from_str::<Limits>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn parsed_limits_are_checked_and_name_the_field() {
        let l = parse(r#"{"memory_bytes":268435456,"cpu_secs":2}"#).unwrap();
        assert_eq!(l.get(Limit::MemoryBytes), Some(256 << 20));
        assert_eq!(l.get(Limit::CpuSecs), Some(2));
        assert_eq!(l.get(Limit::FileBytes), None);
        assert_eq!(parse("{}").unwrap(), Limits::default());
        for (body, field) in [
            (r#"{"memory_bytes":0}"#, "limits.memory_bytes"),
            (r#"{"cpu_secs":0}"#, "limits.cpu_secs"),
            (r#"{"file_bytes":0}"#, "limits.file_bytes"),
            (r#"{"open_files":3}"#, "limits.open_files"),
            (
                r#"{"memory_bytes":18446744073709551615}"#,
                "limits.memory_bytes",
            ),
            (r#"{"cpu_secs":99999999}"#, "limits.cpu_secs"),
        ] {
            let e = parse(body).unwrap_err();
            assert!(e.contains(field), "{body}: {e}");
        }
        let l = parse(r#"{"pids":64,"total_memory_bytes":1073741824,"cpu_weight":50}"#).unwrap();
        assert_eq!(l.get(Limit::Pids), Some(64));
        assert_eq!(l.get(Limit::TotalMemoryBytes), Some(1 << 30));
        assert_eq!(l.get(Limit::CpuWeight), Some(50));
        for (body, field) in [
            (r#"{"pids":1}"#, "limits.pids"),
            (r#"{"cpu_weight":0}"#, "limits.cpu_weight"),
            (r#"{"total_memory_bytes":1}"#, "limits.total_memory_bytes"),
        ] {
            let e = parse(body).unwrap_err();
            assert!(e.contains(field), "{body}: {e}");
        }
        let e = parse(r#"{"memory":1}"#).unwrap_err();
        assert!(e.contains("unknown field `memory`"), "{e}");
        assert!(parse(r#"{"cpu_secs":-1}"#).is_err());
        assert!(parse(r#"{"cpu_secs":1.5}"#).is_err());
    }

    #[test]
    fn serialises_only_what_was_given() {
        let l = Limits::default().with(Limit::OpenFiles, 64).unwrap();
        assert_eq!(serde_json::to_string(&l).unwrap(), r#"{"open_files":64}"#);
        assert_eq!(parse(r#"{"open_files":64}"#).unwrap(), l);
        let e = Limits::default().with(Limit::FileBytes, 0).unwrap_err();
        assert_eq!(e.code(), "bad_limit");
    }
}
