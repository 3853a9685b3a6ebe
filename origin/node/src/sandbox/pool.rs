//! The interpreter pool: per hot runtime with an interpreter, K sandboxes whose interpreter is started and preloaded, refilled in the background, capped by a memory budget.
//!
//! A pooled sandbox is made exactly as a create makes one (its own id, workspace, cgroup and
//! runtime hold) and its interpreter is started in its own jail; only env and context are
//! missing. [`SandboxService::create`] takes one (a queue pop: O(1)) when the request can use
//! it: the runtime declares a `python` interpreter, and the request asks neither for network
//! nor for limits of its own (both fixed when the jail started). The taken sandbox gets its
//! env and context written to its interpreter's `os.environ` (and the context file to its
//! workspace) before any code of it runs, and is never handed out again: delete discards
//! it like any sandbox.
//!
//! Which runtimes are pooled: every warm runtime with an interpreter that a create (when
//! warm) or a run has asked for since the origin started. Filling is one interpreter at a time, at a low CPU weight
//! (raised to the sandbox's when taken). Before a start the pool checks that the idle
//! interpreters' resident memory (measured from the host, [`crate::interp::rss_of`]) plus the
//! last measured size of one fits `pool_memory_bytes`; one that turns out over it is stopped.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prewarm_shared::pack::Interpreter;
use prewarm_shared::sandbox::Priority;
use prewarm_shared::{Digest, RuntimeRef};
use serde::Serialize;

use prewarm_shared::sandbox::{CreateSandbox, SandboxInfo, WarmState};
use tokio::sync::watch;

use super::{make_workspace, write_context, Sandbox, SandboxError, SandboxService};
use crate::interp::{rss_of, Interp};
use crate::jail::cgroup::SandboxCgroup;
use crate::jail::{Jail, ResourceLimits};
use crate::warm::layout::remove_tree;
use crate::warm::Ensured;

/// The language pooled sandboxes have an interpreter of.
pub const POOLED_LANGUAGE: &str = "python";
/// CPU weight of a sandbox while its interpreter starts in the pool (sandboxes in use get
/// theirs, 100 by default): refilling yields to real work.
const FILL_CPU_WEIGHT: u64 = 10;
/// Longest an interpreter may take to start and import its preloads.
pub const START_PATIENCE: Duration = Duration::from_secs(120);
/// How often the pool looks for work besides being woken (a take, a new runtime).
const TICK: Duration = Duration::from_secs(2);

/// `sandbox.pool_size` and `sandbox.pool_memory_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Ready sandboxes kept per pooled runtime; 0 turns the pool off.
    pub size: usize,
    /// Resident memory all idle pooled interpreters together may use.
    pub memory_budget: u64,
}

/// One ready sandbox: everything a create makes, plus a started interpreter.
pub(super) struct Pooled {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) cgroup: SandboxCgroup,
    pub(super) interp: Interp,
    pub(super) rss: u64,
}

/// A pooled runtime's queue and what was learned starting its interpreters.
struct Slot {
    spec: Interpreter,
    ready: VecDeque<Pooled>,
    /// Resident bytes of the last interpreter started: the estimate of the next.
    last_rss: u64,
    /// Held back by the memory budget: the next interpreter (by the last one's size) would
    /// not fit, or one started did not. Cleared when any pooled sandbox is taken.
    over_budget: bool,
    /// Starting failed (the interpreter is broken): not retried until a create asks again.
    broken: bool,
}

/// Counters and gauges of the pool, for `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolStats {
    pub size: usize,
    pub memory_budget_bytes: u64,
    /// Ready sandboxes, all runtimes.
    pub ready: u64,
    /// Resident bytes of every idle pooled interpreter together.
    pub idle_rss_bytes: u64,
    pub runtimes: Vec<RuntimePool>,
    pub taken_total: u64,
    /// Creates of a pooled runtime that found the pool empty.
    pub misses_total: u64,
    pub started_total: u64,
    pub start_failures_total: u64,
    /// Interpreters stopped because they did not fit the memory budget.
    pub over_budget_total: u64,
}

/// One pooled runtime's part of [`PoolStats`].
#[derive(Debug, Clone, Serialize)]
pub struct RuntimePool {
    pub digest: Digest,
    pub ready: u64,
    pub idle_rss_bytes: u64,
    /// Resident bytes of the last interpreter started.
    pub last_rss_bytes: u64,
    /// Milliseconds the last one took from spawn to preloads imported.
    pub last_start_ms: u64,
    /// Short of `size`, but the memory budget has no room for another.
    pub held_by_budget: bool,
}

/// The node's pool. One per [`SandboxService`].
pub(super) struct Pool {
    cfg: PoolConfig,
    slots: Mutex<HashMap<Digest, Slot>>,
    last_start_ms: Mutex<HashMap<Digest, u64>>,
    pub(super) wake: tokio::sync::Notify,
    taken: AtomicU64,
    misses: AtomicU64,
    started: AtomicU64,
    failures: AtomicU64,
    over_budget: AtomicU64,
}

impl Pool {
    pub(super) fn new(cfg: PoolConfig) -> Self {
        Self {
            cfg,
            slots: Mutex::default(),
            last_start_ms: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            taken: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            started: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `digest` wanted: the pool fills it from now on.
    pub(super) fn want(&self, digest: Digest, spec: &Interpreter) {
        if self.cfg.size == 0 {
            return;
        }
        let mut slots = self.lock();
        let slot = slots.entry(digest).or_insert_with(|| Slot {
            spec: spec.clone(),
            ready: VecDeque::new(),
            last_rss: 0,
            over_budget: false,
            broken: false,
        });
        // A create or run asking again retries an interpreter that failed to start.
        let wake = slot.broken || slot.ready.len() < self.cfg.size;
        slot.broken = false;
        drop(slots);
        if wake {
            self.wake.notify_one();
        }
    }

    /// A ready sandbox of `digest`, if there is one; the runtime is wanted from now on. O(1).
    pub(super) fn take(&self, digest: Digest, spec: &Interpreter) -> Option<Pooled> {
        if self.cfg.size == 0 {
            return None;
        }
        self.want(digest, spec);
        let mut slots = self.lock();
        let slot = slots.get_mut(&digest)?;
        let got = slot.ready.pop_front();
        if got.is_some() {
            // Room in the budget again, for every runtime.
            slots.values_mut().for_each(|s| s.over_budget = false);
        }
        drop(slots);
        match &got {
            Some(_) => self.taken.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        self.wake.notify_one();
        got
    }

    /// The next runtime to start an interpreter for, if one is short and the budget has room.
    fn next_fill(&self) -> Option<(Digest, Interpreter)> {
        let mut slots = self.lock();
        let idle: u64 = slots
            .values()
            .flat_map(|s| s.ready.iter().map(|p| p.rss))
            .sum();
        let budget = self.cfg.memory_budget;
        let mut best: Option<(usize, Digest, Interpreter)> = None;
        for (d, s) in slots.iter_mut() {
            if s.broken || s.over_budget || s.ready.len() >= self.cfg.size {
                continue;
            }
            if idle + s.last_rss > budget {
                s.over_budget = true;
                continue;
            }
            if best.as_ref().is_none_or(|b| s.ready.len() < b.0) {
                best = Some((s.ready.len(), *d, s.spec.clone()));
            }
        }
        best.map(|(_, d, spec)| (d, spec))
    }

    /// Adds a started sandbox if it fits the budget; else gives it back, to be discarded.
    fn put(&self, digest: Digest, p: Pooled, start_ms: u64) -> Option<Pooled> {
        let mut slots = self.lock();
        let idle: u64 = slots
            .values()
            .flat_map(|s| s.ready.iter().map(|p| p.rss))
            .sum();
        self.last_start_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest, start_ms);
        let Some(slot) = slots.get_mut(&digest) else {
            return Some(p);
        };
        slot.last_rss = p.rss;
        if idle + p.rss > self.cfg.memory_budget {
            slot.over_budget = true;
            self.over_budget.fetch_add(1, Ordering::Relaxed);
            return Some(p);
        }
        slot.ready.push_back(p);
        None
    }

    fn broken(&self, digest: Digest) {
        if let Some(s) = self.lock().get_mut(&digest) {
            s.broken = true;
        }
    }

    /// Every pooled sandbox, taken out (at shutdown, or when a runtime is gone).
    fn drain(&self, only: Option<Digest>) -> Vec<(Digest, Pooled)> {
        let mut slots = self.lock();
        let mut out = Vec::new();
        for (d, s) in slots.iter_mut() {
            if only.is_none_or(|o| o == *d) {
                out.extend(s.ready.drain(..).map(|p| (*d, p)));
            }
        }
        if let Some(d) = only {
            slots.remove(&d);
        }
        out
    }

    pub(super) fn stats(&self) -> PoolStats {
        let slots = self.lock();
        let starts = self.last_start_ms.lock().unwrap_or_else(|p| p.into_inner());
        let mut runtimes: Vec<RuntimePool> = slots
            .iter()
            .map(|(d, s)| RuntimePool {
                digest: *d,
                ready: s.ready.len() as u64,
                idle_rss_bytes: s.ready.iter().map(|p| p.rss).sum(),
                last_rss_bytes: s.last_rss,
                last_start_ms: starts.get(d).copied().unwrap_or(0),
                held_by_budget: s.over_budget,
            })
            .collect();
        runtimes.sort_by_key(|r| r.digest.to_string());
        PoolStats {
            size: self.cfg.size,
            memory_budget_bytes: self.cfg.memory_budget,
            ready: runtimes.iter().map(|r| r.ready).sum(),
            idle_rss_bytes: runtimes.iter().map(|r| r.idle_rss_bytes).sum(),
            runtimes,
            taken_total: self.taken.load(Ordering::Relaxed),
            misses_total: self.misses.load(Ordering::Relaxed),
            started_total: self.started.load(Ordering::Relaxed),
            start_failures_total: self.failures.load(Ordering::Relaxed),
            over_budget_total: self.over_budget.load(Ordering::Relaxed),
        }
    }
}

impl SandboxService {
    /// The pool's state now.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Keeps the pool filled until cancelled, one interpreter at a time.
    pub(super) async fn fill_pool(self) {
        loop {
            if let Some((digest, spec)) = self.pool.next_fill() {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = self.fill_one(digest, &spec) => {}
                }
                continue;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = self.pool.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Makes one pooled sandbox of `digest` and offers it to the pool.
    async fn fill_one(&self, digest: Digest, spec: &Interpreter) {
        // A hold, as a create takes: the runtime is not evicted under the pooled sandbox.
        let hot = self
            .warmer
            .ensure(&RuntimeRef::Digest(digest), Priority::Low, true)
            .await;
        let rec = match hot {
            Ok((_, Ensured::Hot(rec))) => rec,
            Ok(_) | Err(_) => {
                // Evicted (or no longer resolvable): stop pooling it.
                self.warmer.release(&digest);
                for (d, p) in self.pool.drain(Some(digest)) {
                    self.discard_pooled(d, p).await;
                }
                return;
            }
        };
        let id = format!("sb-{:016x}", rand::random::<u64>());
        let dir = self.warmer.layout().sandboxes.join(&id);
        let limits = ResourceLimits {
            cpu_weight: self.cfg.limits.cpu_weight.min(FILL_CPU_WEIGHT),
            ..self.cfg.limits
        };
        let made = make_workspace(&dir, None, self.cfg.jail.user, false)
            .and_then(|()| self.cfg.jail.cgroups.create(&id, &limits));
        let cgroup = match made {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "pool: could not make a sandbox");
                self.warmer.release(&digest);
                remove_tree(&dir);
                self.pool.failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(TICK).await;
                return;
            }
        };
        let jail = Jail {
            tools: self.cfg.jail.clone(),
            limits: self.cfg.limits,
            runtime: self.warmer.runtime_dir(&digest),
            prefix: rec.prefix.clone(),
            runtime_writable: false,
            workspace: Some(dir.join("workspace")),
            network: false,
            resolv_conf: None,
            env: rec.env.clone(),
            cgroup: cgroup.clone(),
        };
        self.pool.started.fetch_add(1, Ordering::Relaxed);
        match Interp::start(&jail, spec, &spec.preload, None, START_PATIENCE).await {
            Ok(interp) => {
                if !interp.ready.preload_failed.is_empty() {
                    tracing::warn!(%digest, failed = ?interp.ready.preload_failed, "pool: preloads failed to import");
                }
                let rss = rss_of(&cgroup).unwrap_or(interp.ready.rss_bytes);
                let start_ms = interp.ready.start_ms;
                let p = Pooled {
                    id,
                    dir,
                    cgroup,
                    interp,
                    rss,
                };
                if let Some(p) = self.pool.put(digest, p, start_ms) {
                    tracing::info!(%digest, rss, budget = self.pool.cfg.memory_budget, "pool: an interpreter does not fit the memory budget");
                    self.discard_pooled(digest, p).await;
                }
            }
            Err(e) => {
                tracing::warn!(%digest, error = %e, "pool: the interpreter did not start");
                self.pool.failures.fetch_add(1, Ordering::Relaxed);
                self.pool.broken(digest);
                self.discard_parts(digest, cgroup, dir).await;
            }
        }
    }

    /// Makes a pooled sandbox the one `req` creates: env and context into its interpreter
    /// (before any code of the sandbox runs: requests on the pipe are handled in order) and
    /// the context file into its workspace, its CPU weight raised to the sandbox's.
    pub(super) async fn hand_out(
        &self,
        req: CreateSandbox,
        digest: Digest,
        context: Option<String>,
        limits: ResourceLimits,
        mut p: Pooled,
    ) -> Result<SandboxInfo, SandboxError> {
        let ws = p.dir.join("workspace");
        let made = match p.interp.setup(&req.env, context.as_deref()).await {
            Ok(()) => write_context(&ws, req.context.as_ref(), self.cfg.jail.user)
                .and_then(|()| p.cgroup.set_cpu_weight(limits.cpu_weight)),
            Err(e) => Err(e),
        };
        if let Err(e) = made {
            self.discard_pooled(digest, p).await;
            return Err(SandboxError::Io {
                action: "handing out a pooled sandbox",
                source: e,
            });
        }
        let sb = Arc::new(Sandbox {
            id: p.id,
            user_id: req.user_id,
            runtime: req.runtime,
            digest,
            hot: true,
            env: req.env,
            context,
            network: false,
            limits,
            dir: p.dir,
            cgroup: p.cgroup,
            state: watch::channel(WarmState::ready()).1,
            last_used: std::sync::Mutex::new(std::time::Instant::now()),
            busy: Default::default(),
            stop: Default::default(),
            ended: tokio::sync::Notify::new(),
            interp: tokio::sync::Mutex::new(Some(p.interp)),
        });
        let info = sb.info();
        self.lock().insert(sb.id.clone(), sb);
        Ok(info)
    }

    /// Stops a pooled sandbox that is not handed out: its interpreter, cgroup, hold, directory.
    pub(super) async fn discard_pooled(&self, digest: Digest, mut p: Pooled) {
        p.interp.kill().await;
        self.discard_parts(digest, p.cgroup, p.dir).await;
    }

    async fn discard_parts(&self, digest: Digest, cgroup: SandboxCgroup, dir: PathBuf) {
        let warmer = self.warmer.clone();
        let _ = tokio::task::spawn_blocking(move || {
            cgroup.remove();
            warmer.release(&digest);
            remove_tree(&dir);
        })
        .await;
    }

    /// Discards every pooled sandbox (shutdown).
    pub(super) async fn drain_pool(&self) {
        for (d, p) in self.pool.drain(None) {
            self.discard_pooled(d, p).await;
        }
    }
}
