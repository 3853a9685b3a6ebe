//! Warming runtimes on this node: single-flight jobs, a bounded priority worker pool, the node index, LRU eviction.
//!
//! [`Warmer::ensure`] is the one entry point: it resolves the reference, answers at once when
//! the runtime is warm ([`Ensured::Hot`]), else joins the running warm of that manifest or
//! queues a new one ([`Ensured::Warming`]). Workers take jobs highest priority first (FIFO
//! within a priority) and run [`pipeline`]'s steps. The node directory is documented on
//! [`layout::NodeLayout`].

pub mod background;
pub mod estimate;
pub mod guard;
pub mod index;
mod job;
pub mod layout;
pub mod lease;
mod lend;
mod maintain;
mod pipeline;
#[cfg(test)]
mod tests;
pub mod warmed;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prewarm_shared::sandbox::{Priority, WarmStats};
use prewarm_shared::{Digest, RuntimeRef};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use index::{NoRegistry, RedisRegistry, Registry, RegistryEntry, RuntimeRecord};
pub use job::Job;
pub use warmed::{Fleet, WarmedHow, WarmedMode};

use crate::jail::{JailTools, ResourceLimits};
use crate::metrics::NodeMetrics;
use estimate::Estimator;
use index::RuntimeIndex;
use layout::NodeLayout;
use prewarm_client::pull::FileCache;
use prewarm_client::transfer::{Source, TransferError};

/// How the node warms; every field has a `prewarm serve` flag.
#[derive(Debug, Clone)]
pub struct WarmConfig {
    /// The node directory (`<data-dir>/node-v1`).
    pub node_dir: PathBuf,
    /// This node's name in the registry.
    pub node_name: String,
    /// Warms running at once; more wait in the priority queue.
    pub workers: usize,
    /// Blocks downloading at once within one warm.
    pub fetch_concurrency: usize,
    /// Warm runtimes beyond this many bytes are evicted, least recently used first.
    pub disk_budget: u64,
    /// Longest a single `meta.warm` command may run.
    pub warm_command_timeout: Duration,
    /// bubblewrap, `prlimit`, `setpriv` and the sandbox user every warm command and exec
    /// runs with.
    pub jail: JailTools,
    /// The server's sandbox resource limits: warm commands run under them, and they are the
    /// defaults and the ceiling of every sandbox's.
    pub limits: ResourceLimits,
}

/// What [`Warmer::ensure`] found.
pub enum Ensured {
    Hot(RuntimeRecord),
    Warming(Arc<Job>),
}

/// The node's warming service. Cheap to clone.
#[derive(Clone)]
pub struct Warmer {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: WarmConfig,
    pub(crate) layout: NodeLayout,
    pub(crate) source: Arc<dyn Source>,
    pub(crate) cache: FileCache,
    pub(crate) estimator: Estimator,
    registry: Arc<dyn Registry>,
    /// Sharing warmed runtimes with other nodes (`warmed`).
    pub(crate) fleet: Fleet,
    /// Lock order: `state` before `index`.
    state: Mutex<NodeState>,
    index: Mutex<RuntimeIndex>,
    /// Runtimes whose registry entry is out of date: published if in the index (warmed or
    /// used since the last flush), withdrawn if not (evicted).
    dirty: Mutex<HashSet<Digest>>,
    work: Notify,
    evict_now: Notify,
    seq: AtomicU64,
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    evictions: AtomicU64,
    /// Runtimes made ready from another node's warmed manifest / warmed and published here.
    fetched_warmed: AtomicU64,
    published: AtomicU64,
    /// `meta.warm` commands started.
    pub(crate) commands_run: AtomicU64,
    /// Held (shared) by a warm from fetching into the cache until the guard has checked the
    /// cache after its warm commands, and (exclusive) by cache pruning, which must never take a
    /// file a running warm fetched or (by replacing its link) unlinked.
    pub(crate) cache_gate: tokio::sync::RwLock<()>,
    /// Runtimes were evicted since the cache was last pruned.
    prune_pending: AtomicBool,
    /// The node's Prometheus series; the server registers them.
    metrics: NodeMetrics,
    /// Runtimes a prediction wants kept: the LRU evicts them only after every other idle one.
    pub(crate) wanted: Mutex<HashSet<Digest>>,
    /// The prediction policy's retain order of warm runtimes (lowest evicted first; absent
    /// counts as 0), when it ranks them: eviction follows it before recency.
    pub(crate) ranks: Mutex<HashMap<Digest, f64>>,
}

#[derive(Default)]
struct NodeState {
    /// Warms queued or running, by manifest digest: the single-flight table.
    jobs: HashMap<Digest, Arc<Job>>,
    queue: Vec<Arc<Job>>,
    running: usize,
    /// Sandboxes using each runtime (warm or still warming): those are never evicted.
    in_use: HashMap<Digest, usize>,
}

/// Why a runtime could not even be queued.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("could not resolve {what}: {source}")]
    Resolve {
        what: RuntimeRef,
        #[source]
        source: TransferError,
    },
}

impl Warmer {
    /// Opens the node dir (sweeping a previous run's leftovers) and loads its index, sharing
    /// no warmed runtimes ([`Fleet::alone`]). Call [`Warmer::spawn`] to start the workers.
    pub fn open(
        cfg: WarmConfig,
        source: Arc<dyn Source>,
        registry: Arc<dyn Registry>,
    ) -> Result<Self, prewarm_client::pull::PullError> {
        Self::open_in_fleet(cfg, source, registry, Fleet::alone())
    }

    /// [`Warmer::open`], fetching and publishing warmed runtimes as `fleet` says.
    pub fn open_in_fleet(
        cfg: WarmConfig,
        source: Arc<dyn Source>,
        registry: Arc<dyn Registry>,
        fleet: Fleet,
    ) -> Result<Self, prewarm_client::pull::PullError> {
        let layout =
            NodeLayout::open(&cfg.node_dir).map_err(|e| prewarm_client::pull::PullError::Io {
                action: "opening the node directory",
                path: cfg.node_dir.clone(),
                source: e,
            })?;
        let mut index = RuntimeIndex::load(&layout.index);
        // Every runtime the last run registered: republished if still here, withdrawn if its
        // tree went while the origin was down.
        let dirty = index.by_age().iter().map(|r| r.digest).collect();
        let kept = layout.sweep(|name| {
            name.parse::<Digest>()
                .ok()
                .or_else(|| format!("sha256:{name}").parse().ok())
                .is_some_and(|d| index.get(&d).is_some())
        });
        index.retain(|r| kept.contains(&r.digest.hex()));
        if let Err(e) = index.save(&layout.index) {
            tracing::warn!(%e, "could not write the node index");
        }
        let cache = FileCache::open(&layout.cache)?;
        tracing::info!(warm_runtimes = index.len(), node = %cfg.node_dir.display(), "node opened");
        Ok(Self {
            inner: Arc::new(Inner {
                estimator: Estimator::load(layout.estimates.clone()),
                cfg,
                layout,
                source,
                cache,
                registry,
                fleet,
                state: Mutex::new(NodeState::default()),
                index: Mutex::new(index),
                dirty: Mutex::new(dirty),
                work: Notify::new(),
                evict_now: Notify::new(),
                seq: AtomicU64::new(0),
                started: AtomicU64::new(0),
                succeeded: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                fetched_warmed: AtomicU64::new(0),
                published: AtomicU64::new(0),
                commands_run: AtomicU64::new(0),
                cache_gate: tokio::sync::RwLock::new(()),
                // True at start: a crash may have left files of half-built runtimes behind.
                prune_pending: AtomicBool::new(true),
                metrics: NodeMetrics::default(),
                wanted: Mutex::default(),
                ranks: Mutex::default(),
            }),
        })
    }

    /// Starts the workers (plus one for background warms, see [`background`]), the eviction
    /// loop and the registry flush loop in `tasks`; they stop when `cancel` fires (a running
    /// warm is abandoned and its build dir removed).
    pub fn spawn(&self, tasks: &mut JoinSet<()>, cancel: &CancellationToken) {
        for i in 0..=self.inner.cfg.workers.max(1) {
            let (w, c) = (self.clone(), cancel.clone());
            let background = i == 0;
            tasks.spawn(async move { w.worker(c, background).await });
        }
        let (w, c) = (self.clone(), cancel.clone());
        tasks.spawn(async move { w.maintenance(c).await });
    }

    /// This node's name (the registry's, and its usage records').
    pub fn node_name(&self) -> &str {
        &self.inner.cfg.node_name
    }

    pub fn layout(&self) -> &NodeLayout {
        &self.inner.layout
    }

    /// The node's series (creates, time to ready, warm steps, execs), for the server to register.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.inner.metrics
    }

    /// The warm runtimes on this node (the index), least recently used first: each says
    /// whether it was warmed here, fetched warmed, or warmed here and published.
    pub fn runtimes(&self) -> Vec<RuntimeRecord> {
        self.inner.lock_index().by_age()
    }

    /// The warms queued or running now (for `/ui`).
    pub fn jobs(&self) -> Vec<Arc<Job>> {
        self.inner.lock_state().jobs.values().cloned().collect()
    }

    /// The cache, source and cache gate, for snapshot bases (`crate::snapshot::base`).
    pub(crate) fn parts(&self) -> &Inner {
        &self.inner
    }

    /// Resolves `what`, then: warm → `Hot` (and marks it used); warming → the running job;
    /// cold → a new queued job. With `hold`, the runtime counts as in use by one more sandbox
    /// (release with [`Warmer::release`]) from this moment, so it cannot be evicted.
    pub async fn ensure(
        &self,
        what: &RuntimeRef,
        priority: Priority,
        hold: bool,
    ) -> Result<(Digest, Ensured), WarmError> {
        let digest = self.resolve(what).await?;
        Ok((digest, self.ensure_resolved(digest, what, priority, hold)))
    }

    /// The manifest digest `what` names now.
    pub async fn resolve(&self, what: &RuntimeRef) -> Result<Digest, WarmError> {
        Ok(match what {
            RuntimeRef::Digest(d) => *d,
            RuntimeRef::Tagged(name, tag) => self
                .inner
                .source
                .resolve_tag(name, tag)
                .await
                .map_err(|source| WarmError::Resolve {
                    what: what.clone(),
                    source,
                })?,
        })
    }

    /// [`Warmer::ensure`] once `what` is resolved to `digest`.
    fn ensure_resolved(
        &self,
        digest: Digest,
        what: &RuntimeRef,
        priority: Priority,
        hold: bool,
    ) -> Ensured {
        let mut st = self.inner.lock_state();
        if hold {
            *st.in_use.entry(digest).or_default() += 1;
        }
        if let Some(rec) = self.inner.lock_index().touch(&digest) {
            drop(st);
            self.inner.mark_dirty(digest);
            return Ensured::Hot(rec);
        }
        if let Some(job) = st.jobs.get(&digest) {
            job.raise(priority);
            self.inner.metrics.joined_warm();
            let job = job.clone();
            self.inner.publish_positions(&st);
            // A background job just became a user's: a regular worker may take it now.
            self.inner.work.notify_waiters();
            return Ensured::Warming(job);
        }
        let job = self.inner.queue_job(&mut st, digest, what, priority, false);
        drop(st);
        self.inner.work.notify_waiters();
        Ensured::Warming(job)
    }

    /// One sandbox stopped using `digest`.
    pub fn release(&self, digest: &Digest) {
        let mut st = self.inner.lock_state();
        if let Some(n) = st.in_use.get_mut(digest) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.in_use.remove(digest);
            }
        }
    }

    /// The warm runtime's record, marking it used (exec refreshes `last_used`).
    pub fn touch(&self, digest: &Digest) -> Option<RuntimeRecord> {
        let rec = self.inner.lock_index().touch(digest);
        if rec.is_some() {
            self.inner.mark_dirty(*digest);
        }
        rec
    }

    pub fn runtime_dir(&self, digest: &Digest) -> PathBuf {
        self.inner.layout.runtime_dir(digest)
    }

    pub fn stats(&self) -> WarmStats {
        let st = self.inner.lock_state();
        WarmStats {
            warms_started: self.inner.started.load(Ordering::Relaxed),
            warms_succeeded: self.inner.succeeded.load(Ordering::Relaxed),
            warms_failed: self.inner.failed.load(Ordering::Relaxed),
            queued: st.queue.len() as u64,
            running: st.running as u64,
            warm_runtimes: self.inner.lock_index().len() as u64,
            sandboxes: 0,
            evictions: self.inner.evictions.load(Ordering::Relaxed),
            warmed_fetched: self.inner.fetched_warmed.load(Ordering::Relaxed),
            warmed_published: self.inner.published.load(Ordering::Relaxed),
            warm_commands_run: self.inner.commands_run.load(Ordering::Relaxed),
        }
    }

    /// Takes jobs until `cancel`: user warms, or with `background` predictive ones only.
    async fn worker(self, cancel: CancellationToken, background: bool) {
        loop {
            let job = tokio::select! {
                _ = cancel.cancelled() => return,
                job = self.inner.next_job(background) => job,
            };
            let outcome = tokio::select! {
                _ = cancel.cancelled() => Err(prewarm_shared::sandbox::WarmFailure {
                    step: job.state().step,
                    reason: "the origin is shutting down".into(),
                }),
                r = self.inner.metrics.time_steps(job.subscribe(), pipeline::run(&self.inner, &job))
                    .instrument(crate::metrics::warm_span(&job)) => r,
            };
            self.inner.finish(&job, outcome);
        }
    }
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_index(&self) -> MutexGuard<'_, RuntimeIndex> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_dirty(&self, d: Digest) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d);
    }

    /// Tells every queued job how many are ahead of it.
    fn publish_positions(&self, st: &NodeState) {
        let mut q: Vec<&Arc<Job>> = st.queue.iter().collect();
        q.sort_by_key(|j| (std::cmp::Reverse(j.priority()), j.seq));
        for (i, j) in q.iter().enumerate() {
            j.set_queue_position(i as u64);
        }
    }

    /// Queues a new job for `digest` (the caller checked there is none) and returns it.
    fn queue_job(
        &self,
        st: &mut NodeState,
        digest: Digest,
        what: &RuntimeRef,
        priority: Priority,
        background: bool,
    ) -> Arc<Job> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let estimate = self
            .estimator
            .before_manifest(&pipeline::estimate_key(what));
        let job = Arc::new(Job::new(
            digest,
            what.clone(),
            priority,
            seq,
            estimate,
            background,
        ));
        st.jobs.insert(digest, job.clone());
        st.queue.push(job.clone());
        self.started.fetch_add(1, Ordering::Relaxed);
        self.publish_positions(st);
        job
    }

    /// Waits for the highest-priority queued job of its kind (background or a user's) and
    /// takes it.
    async fn next_job(&self, background: bool) -> Arc<Job> {
        loop {
            let notified = self.work.notified();
            {
                let mut st = self.lock_state();
                let best = st
                    .queue
                    .iter()
                    .enumerate()
                    .filter(|(_, j)| j.is_background() == background)
                    .max_by_key(|(_, j)| (j.priority(), std::cmp::Reverse(j.seq)))
                    .map(|(i, _)| i);
                if let Some(i) = best {
                    let job = st.queue.swap_remove(i);
                    st.running += 1;
                    self.publish_positions(&st);
                    return job;
                }
            }
            notified.await;
        }
    }

    /// Registers a warm runtime (index first, then the job table, so `ensure` never misses
    /// both) or reports the failure; either way every waiter hears it.
    fn finish(
        &self,
        job: &Job,
        outcome: Result<RuntimeRecord, prewarm_shared::sandbox::WarmFailure>,
    ) {
        match outcome {
            Ok(rec) => {
                match rec.warmed {
                    WarmedHow::FetchedWarmed => {
                        self.fetched_warmed.fetch_add(1, Ordering::Relaxed);
                    }
                    WarmedHow::WarmedAndPublished => {
                        self.published.fetch_add(1, Ordering::Relaxed);
                    }
                    WarmedHow::WarmedHere => {}
                }
                self.estimator
                    .record(&pipeline::estimate_key(&job.runtime), rec.warm_ms);
                {
                    let mut index = self.lock_index();
                    index.insert(rec);
                    if let Err(e) = index.save(&self.layout.index) {
                        tracing::error!(%e, "could not write the node index");
                    }
                }
                self.mark_dirty(job.digest);
                self.succeeded.fetch_add(1, Ordering::Relaxed);
                job.finish_ready();
                self.evict_now.notify_one();
            }
            Err(failure) => {
                tracing::warn!(digest = %job.digest, step = ?failure.step, reason = %failure.reason, "warm failed");
                self.failed.fetch_add(1, Ordering::Relaxed);
                job.finish_failed(failure);
            }
        }
        let mut st = self.lock_state();
        st.jobs.remove(&job.digest);
        st.running = st.running.saturating_sub(1);
    }
}
