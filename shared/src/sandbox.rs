//! Wire types of the warming and sandbox API (`/v1/sandboxes`, `/v1/warm`), shared so clients cannot drift.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::limits::{LimitHit, Limits};
use crate::name::RuntimeRef;

/// How urgently a warm is wanted: `high` overtakes `normal`, which overtakes `low`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

/// `POST /v1/sandboxes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateSandbox {
    pub runtime: RuntimeRef,
    pub user_id: String,
    #[serde(default)]
    pub priority: Priority,
    /// Applied after the runtime's `meta.env`, before the context.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Reaches the sandbox as `PREWARM_CONTEXT` (a string as given, anything else as JSON) and
    /// as the file [`CONTEXT_FILE`] in the workspace. Never interpolated into code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    /// Give commands outbound network: a network namespace of their own, connected through
    /// a user-space NAT that refuses the host's loopback. Off by default: sandboxes get an
    /// empty network namespace. Refused (400) where the operator set `sandbox.network = "off"`.
    #[serde(default)]
    pub network: bool,
    /// Per-process resource limits of the sandbox's commands, at most the server's (its
    /// defaults for what is not given). An exec can lower them further.
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
}

/// Largest context, as sent to the sandbox (a string as given, anything else as JSON). It
/// travels in the environment of every command, where the kernel caps one string at 128 KiB.
pub const MAX_CONTEXT_BYTES: usize = 64 << 10;
/// Largest `env` map of one request, keys and values together. Runtime, sandbox and exec env,
/// the context and `cmd` share the kernel's argument space (2 MiB with the usual 8 MiB stack).
pub const MAX_ENV_BYTES: usize = 256 << 10;
/// Largest `cmd` of an exec (or a warm command), all arguments together.
pub const MAX_ARGV_BYTES: usize = 256 << 10;
/// Largest single argument or `KEY=value`: the kernel's `MAX_ARG_STRLEN` (128 KiB with its NUL).
pub const MAX_ARG_BYTES: usize = (128 << 10) - 1;

/// A request field that no command could be started with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{field} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        field: String,
        size: usize,
        limit: usize,
    },
    #[error("{field} contains a NUL byte")]
    Nul { field: String },
    #[error("{field} has key {key:?}: keys must be non-empty, without `=` or NUL")]
    BadKey { field: String, key: String },
    #[error("{field} must be a non-empty list of arguments")]
    Empty { field: String },
}

impl InputError {
    /// Stable machine code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            InputError::TooLarge { .. } => "field_too_large",
            _ => "bad_request",
        }
    }
}

fn too_large(field: String, size: usize, limit: usize) -> Result<(), InputError> {
    if size > limit {
        return Err(InputError::TooLarge { field, size, limit });
    }
    Ok(())
}

/// Checks an environment map named `field` (`env`, `meta.json env`): keys non-empty without
/// `=` or NUL, values without NUL, each `KEY=value` and the whole within the kernel's limits.
pub fn check_env(field: &str, env: &BTreeMap<String, String>) -> Result<(), InputError> {
    let mut total = 0;
    for (k, v) in env {
        if k.is_empty() || k.contains(['=', '\0']) {
            return Err(InputError::BadKey {
                field: field.to_string(),
                key: k.clone(),
            });
        }
        if v.contains('\0') {
            return Err(InputError::Nul {
                field: format!("{field}.{k}"),
            });
        }
        too_large(format!("{field}.{k}"), k.len() + 1 + v.len(), MAX_ARG_BYTES)?;
        total += k.len() + v.len() + 2;
    }
    too_large(field.to_string(), total, MAX_ENV_BYTES)
}

/// Checks a command named `field` (`cmd`, `warm command #0`): non-empty, no NUL, each argument
/// and the whole within the kernel's limits.
pub fn check_argv(field: &str, argv: &[String]) -> Result<(), InputError> {
    if !matches!(argv.first(), Some(a) if !a.is_empty()) {
        return Err(InputError::Empty {
            field: field.to_string(),
        });
    }
    let mut total = 0;
    for (i, a) in argv.iter().enumerate() {
        if a.contains('\0') {
            return Err(InputError::Nul {
                field: format!("{field}[{i}]"),
            });
        }
        too_large(format!("{field}[{i}]"), a.len(), MAX_ARG_BYTES)?;
        total += a.len() + 1;
    }
    too_large(field.to_string(), total, MAX_ARGV_BYTES)
}

impl CreateSandbox {
    /// The context as commands see it in `PREWARM_CONTEXT`: a string as given, else JSON.
    pub fn context_text(&self) -> Option<String> {
        match &self.context {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(v) => Some(v.to_string()),
        }
    }

    /// Checks what every command of the sandbox would otherwise fail to start with.
    pub fn check(&self) -> Result<(), InputError> {
        check_env("env", &self.env)?;
        if let Some(c) = self.context_text() {
            if c.contains('\0') {
                return Err(InputError::Nul {
                    field: "context".into(),
                });
            }
            too_large("context".into(), c.len(), MAX_CONTEXT_BYTES)?;
        }
        Ok(())
    }
}

impl ExecRequest {
    /// Checks what the command would otherwise fail to start with.
    pub fn check(&self) -> Result<(), InputError> {
        check_argv("cmd", &self.cmd)?;
        check_env("env", &self.env)
    }
}

/// Where the context lands inside the workspace (the working directory of every command).
pub const CONTEXT_FILE: &str = ".prewarm/context.json";
/// The environment variable carrying the context.
pub const CONTEXT_ENV: &str = "PREWARM_CONTEXT";
/// Where a sandbox's private workspace is mounted; every command starts there.
pub const WORKSPACE_DIR: &str = "/workspace";

/// Where a sandbox (or a warm) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Status {
    Warming,
    Ready,
    Failed,
}

/// The steps of warming a runtime, in order. Each has a weight in the progress figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Step {
    /// Waiting for a worker.
    Queued,
    /// Fetching and verifying the manifest through the tiers (the tag is resolved at request time).
    Manifest,
    /// Downloading the blocks of files the node cache lacks; progress by bytes.
    Fetch,
    /// Fetching another node's warmed runtime (`prewarm_shared::warmed`) instead of running
    /// the warm commands here; progress by bytes.
    #[serde(rename = "fetch_warmed")]
    FetchWarmed,
    /// Linking the tree from the node cache (one pass over the merged tree: base, then deps).
    Materialise,
    /// Running the pack's `warm` commands, isolated, runtime writable; progress by commands.
    Warm,
    /// Checking the cache is intact, sealing the runtime read-only, registering it.
    Seal,
    /// Finished (ready or failed).
    Done,
}

/// Why a warm failed: the step it failed in and a reason fit for a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WarmFailure {
    pub step: Step,
    pub reason: String,
}

/// The state of one warm job, as streamed over `GET /v1/sandboxes/{id}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WarmState {
    pub status: Status,
    /// 0.0 to 1.0, weighted by step; only ever moves forward.
    pub progress: f64,
    pub step: Step,
    /// Milliseconds still expected until ready (learned from earlier warms of the runtime, else
    /// from its size). `None` once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_ms: Option<u64>,
    /// Jobs ahead of this one in the queue (0 = next); `None` once a worker runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WarmFailure>,
}

impl WarmState {
    /// A runtime that is warm already.
    pub fn ready() -> Self {
        Self {
            status: Status::Ready,
            progress: 1.0,
            step: Step::Done,
            estimated_ms: None,
            queue_position: None,
            error: None,
        }
    }
}

/// `POST /v1/sandboxes` (201 or 202) and `GET /v1/sandboxes/{id}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxInfo {
    pub sandbox_id: String,
    pub runtime: RuntimeRef,
    /// The manifest the tag resolved to when the sandbox was created.
    pub digest: Digest,
    pub user_id: String,
    /// True when the runtime was already warm at creation.
    pub hot: bool,
    #[serde(flatten)]
    pub state: WarmState,
}

/// `POST /v1/warm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WarmRequest {
    pub runtime: RuntimeRef,
    #[serde(default)]
    pub priority: Priority,
}

/// `POST /v1/warm` response (200 when warm, 202 when warming).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WarmInfo {
    pub runtime: RuntimeRef,
    pub digest: Digest,
    pub hot: bool,
    #[serde(flatten)]
    pub state: WarmState,
}

/// `GET /v1/warm/stats`: counters since the origin started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WarmStats {
    /// Warm jobs started (single-flight: concurrent requests for one runtime start one).
    pub warms_started: u64,
    pub warms_succeeded: u64,
    pub warms_failed: u64,
    pub queued: u64,
    pub running: u64,
    /// Runtimes warm on this node now.
    pub warm_runtimes: u64,
    pub sandboxes: u64,
    pub evictions: u64,
    /// Runtimes made ready here from another node's warmed manifest (no warm command ran).
    #[serde(default)]
    pub warmed_fetched: u64,
    /// Runtimes this node warmed and published as warmed manifests.
    #[serde(default)]
    pub warmed_published: u64,
    /// `meta.warm` commands this node ran (a fetched warmed runtime runs none).
    #[serde(default)]
    pub warm_commands_run: u64,
}

/// `POST /v1/sandboxes/{id}/exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    /// Applied after the sandbox's env, before the context.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the command's whole process tree after this long (default: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Per-process resource limits of this command, at most the sandbox's (which it keeps for
    /// what is not given).
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
}

/// `POST /v1/sandboxes/{id}/exec` response. Output is decoded as UTF-8 (invalid bytes replaced)
/// and capped per stream; `truncated` says when the cap cut it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecResult {
    /// The exit code; `None` when killed by a signal (including the timeout). A command killed
    /// by signal N inside the sandbox is reported by bubblewrap as exit code 128 + N.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub truncated: bool,
    /// The signal that ended the command (e.g. `SIGKILL`, `SIGXCPU`), if one did: read from
    /// the 128 + N exit code, so a program that itself exits with 129-159 reads as signalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Set when a resource limit ended the command (SIGXCPU: `cpu_secs`; SIGXFSZ: `file_bytes`).
    /// Memory is not reported here: past `memory_bytes` an allocation fails, and what the
    /// program does then is its own (Python: `MemoryError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitHit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let c: CreateSandbox = serde_json::from_str(
            r#"{"runtime":"python-data:v1","user_id":"u1","priority":"high","context":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(c.priority, Priority::High);
        assert!(!c.network);
        assert!(serde_json::from_str::<CreateSandbox>(
            r#"{"runtime":"p:v1","user_id":"u","priorty":"high"}"#
        )
        .is_err());
        assert!(Priority::High > Priority::Normal && Priority::Normal > Priority::Low);
        let info = SandboxInfo {
            sandbox_id: "sb-1".into(),
            runtime: "p:v1".parse().unwrap(),
            digest: Digest::of(b""),
            user_id: "u".into(),
            hot: true,
            state: WarmState::ready(),
        };
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(v["status"], "ready");
        assert_eq!(v["step"], "done");
        assert!(v.get("queue_position").is_none());
    }

    #[test]
    fn limits_in_requests_and_results() {
        use crate::limits::Limit;
        let e: ExecRequest =
            serde_json::from_str(r#"{"cmd":["x"],"limits":{"cpu_secs":1}}"#).unwrap();
        assert_eq!(e.limits.get(Limit::CpuSecs), Some(1));
        let plain: ExecRequest = serde_json::from_str(r#"{"cmd":["x"]}"#).unwrap();
        assert!(plain.limits.is_empty());
        assert!(!serde_json::to_string(&plain).unwrap().contains("limits"));
        let bad = serde_json::from_str::<CreateSandbox>(
            r#"{"runtime":"p:v1","user_id":"u","limits":{"memory_bytes":0}}"#,
        )
        .unwrap_err();
        assert!(bad.to_string().contains("limits.memory_bytes"), "{bad}");
        // A result from before `signal` and `limit` existed still reads.
        let old: ExecResult = serde_json::from_str(
            r#"{"exit_code":0,"stdout":"","stderr":"","duration_ms":1,"timed_out":false,"truncated":false}"#,
        )
        .unwrap();
        assert_eq!((old.signal, old.limit), (None, None));
    }

    #[test]
    fn inputs_no_command_could_start_with_are_named() {
        let create = |body: serde_json::Value| {
            serde_json::from_value::<CreateSandbox>(body)
                .unwrap()
                .check()
                .map_err(|e| e.to_string())
        };
        let big = "x".repeat(MAX_CONTEXT_BYTES + 1);
        let e =
            create(serde_json::json!({"runtime":"p:v1","user_id":"u","context":big})).unwrap_err();
        assert!(e.contains("context") && e.contains("65536"), "{e}");
        let e = create(serde_json::json!({"runtime":"p:v1","user_id":"u","context":{"a":"x\0"}}));
        assert!(e.is_ok(), "JSON escapes the NUL: {e:?}");
        let e = create(serde_json::json!({"runtime":"p:v1","user_id":"u","context":"a\0"}))
            .unwrap_err();
        assert!(e.contains("context") && e.contains("NUL"), "{e}");
        let e = create(serde_json::json!({"runtime":"p:v1","user_id":"u","env":{"A=B":"1"}}))
            .unwrap_err();
        assert!(e.contains("\"A=B\""), "{e}");
        let e = create(serde_json::json!({"runtime":"p:v1","user_id":"u","env":{"A":"\0"}}))
            .unwrap_err();
        assert!(e.contains("env.A") && e.contains("NUL"), "{e}");
        let e = create(serde_json::json!({"runtime":"p:v1","user_id":"u","env":{"A":"x".repeat(MAX_ARG_BYTES)}}))
            .unwrap_err();
        assert!(e.contains("env.A") && e.contains("131071"), "{e}");
        let env: BTreeMap<String, String> = (0..4)
            .map(|i| (format!("K{i}"), "x".repeat(100_000)))
            .collect();
        let e = check_env("env", &env).unwrap_err();
        assert_eq!(e.code(), "field_too_large");
        assert!(e.to_string().contains(&MAX_ENV_BYTES.to_string()), "{e}");

        let exec = |cmd: Vec<String>| {
            ExecRequest {
                cmd,
                env: BTreeMap::new(),
                timeout_ms: None,
                limits: Limits::default(),
            }
            .check()
            .map_err(|e| e.to_string())
        };
        assert!(exec(vec!["true".into()]).is_ok());
        assert!(exec(vec![]).unwrap_err().contains("cmd"));
        let e = exec(vec!["echo".into(), "a\0b".into()]).unwrap_err();
        assert!(e.contains("cmd[1]") && e.contains("NUL"), "{e}");
        let e = exec(vec!["echo".into(); 100_000]).unwrap_err();
        assert!(
            e.contains("cmd") && e.contains(&MAX_ARGV_BYTES.to_string()),
            "{e}"
        );
    }
}
