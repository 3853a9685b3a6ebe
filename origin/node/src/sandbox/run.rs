//! `run`: code in the sandbox's long-lived interpreter, started in the sandbox's jail on first use (or taken from the pool with it).

use std::time::{Duration, Instant};

use prewarm_shared::run::{RunRequest, RunResult};
use prewarm_shared::sandbox::{Status, CONTEXT_ENV};

use super::{pool, SandboxError, SandboxService};
use crate::interp::Interp;
use crate::jail::{exec, Jail};

impl SandboxService {
    /// Runs `req.code` in the sandbox's interpreter of `req.language`, starting one if the
    /// sandbox has none (the first call, or the call after a timeout or death). Calls of one
    /// sandbox run one at a time, in order. An exception is a result; so are a timeout and
    /// the interpreter dying (then its state is gone). With `live`, output is also sent there
    /// as it comes, as exec's.
    pub async fn run_code(
        &self,
        id: &str,
        req: RunRequest,
        live: Option<exec::LiveOutput>,
    ) -> Result<RunResult, SandboxError> {
        let busy = self.hold(id)?;
        let sb = &busy.0;
        req.check()?;
        let status = sb.state.borrow().status;
        let rec = match status {
            Status::Ready => self.warmer.touch(&sb.digest),
            _ => None,
        }
        .ok_or_else(|| SandboxError::NotReady {
            id: id.to_string(),
            status,
        })?;
        let spec =
            rec.interpreters.get(&req.language).ok_or_else(|| {
                let known: Vec<&str> = rec.interpreters.keys().map(String::as_str).collect();
                SandboxError::Invalid(format!(
                "language: runtime {} declares no {:?} interpreter (meta.json `interpreters`: {})",
                sb.runtime,
                req.language,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
            })?;
        if req.language == pool::POOLED_LANGUAGE {
            self.pool.want(sb.digest, spec);
        }
        let timeout = req
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.cfg.default_exec_timeout)
            .min(self.cfg.max_exec_timeout);
        let started = Instant::now();
        let mut slot = tokio::select! {
            s = sb.interp.lock() => s,
            _ = sb.stop.cancelled() => return Err(SandboxError::NotFound(id.to_string())),
        };
        let fresh = slot.is_none();
        if fresh {
            let mut env = rec.env.clone();
            env.extend(sb.env.clone());
            if let Some(c) = &sb.context {
                env.insert(CONTEXT_ENV.into(), c.clone());
            }
            let jail = Jail {
                tools: self.cfg.jail.clone(),
                limits: sb.limits,
                runtime: self.warmer.runtime_dir(&sb.digest),
                prefix: rec.prefix.clone(),
                runtime_writable: false,
                workspace: Some(sb.workspace()),
                network: sb.network,
                resolv_conf: sb.network.then(|| sb.dir.join(super::RESOLV_CONF)),
                env,
                cgroup: sb.cgroup.clone(),
            };
            let net = self.cfg.jail.net_for(sb.network).map(|n| (n, &sb.cgroup));
            // Preloads are for the pool: a call waiting here should not import what it may
            // not use.
            let started = Interp::start(&jail, spec, &[], net, pool::START_PATIENCE);
            let it = tokio::select! {
                r = started => r,
                _ = sb.stop.cancelled() => return Err(SandboxError::NotFound(id.to_string())),
            };
            *slot = Some(it.map_err(|e| SandboxError::Io {
                action: "starting the interpreter",
                source: std::io::Error::other(e.to_string()),
            })?);
        }
        let Some(it) = slot.as_mut() else {
            unreachable!("set above")
        };
        let ooms = sb.cgroup.oom_kills();
        let call = it
            .run(&req.code, timeout, self.cfg.output_cap, live, &sb.stop)
            .await;
        let mut limit = None;
        if !call.alive {
            *slot = None;
            limit = call.signal.as_deref().and_then(|s| sb.limits.hit(s));
            if sb.cgroup.oom_kills() > ooms && !call.timed_out {
                limit = Some(sb.limits.oom_hit());
            }
        }
        let died = match (&limit, call.died) {
            (Some(hit), Some(_)) => Some(hit.message.clone()),
            (_, d) => d,
        };
        Ok(RunResult {
            stdout: call.stdout,
            stderr: call.stderr,
            result: call.result,
            error: call.error,
            duration_ms: started.elapsed().as_millis() as u64,
            timed_out: call.timed_out,
            died,
            signal: call.signal,
            limit,
            truncated: call.truncated,
            fresh_interpreter: fresh,
        })
    }
}
