//! Predictive warming in the origin: every create recorded and shown to the configured `Predictor`, ticked on a clock, its plans applied through the node's warmer at low priority.
//!
//! Two background tasks, stopped by one token: one hears every sandbox create
//! (`SandboxService::creates`), records it ([`usage`]) and tells the policy (`observe`, then
//! `on_user`: a create is the user showing up); the other ticks the policy every 60 s of the
//! clock. With `predict.clock = "manual"` there is no ticking task: `POST /v1/predict/clock`
//! moves time and runs the ticks it passes, as the simulator's replay does. Plans go through
//! [`apply`]; docs/PREDICTION.md ("In the origin") has the whole picture.

mod apply;
mod clock;
mod metrics;
mod names;
mod routes;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use prewarm_node::metrics::Outcome;
use prewarm_node::sandbox::usage::Created;
use prewarm_node::sandbox::SandboxService;
use prewarm_predict::policy::TICK;
use prewarm_predict::{PolicyKind, Secs, Usage};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use apply::{Decision, WantView};
pub use clock::Clock;
pub use metrics::PredictMetrics;
pub use routes::router;
pub use usage::{UsageLog, UsageRec};

use apply::State;
use names::{user_hash, user_id};

/// Ticks run at most per clock move; a longer jump skips ahead (a clock set days ahead does
/// not replay days of idle ticks).
const MAX_CATCH_UP_TICKS: u64 = 24 * 60;

/// The origin's predictor. Cheap to clone.
#[derive(Clone)]
pub struct Prediction {
    inner: Arc<Inner>,
}

struct Inner {
    policy: PolicyKind,
    clock: Clock,
    service: SandboxService,
    usage: Option<UsageLog>,
    metrics: PredictMetrics,
    state: tokio::sync::Mutex<State>,
    cancel: CancellationToken,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

impl Prediction {
    /// Builds the policy (popular's K from the node's budget and the runtimes it holds),
    /// replays the usage `usage` kept, and starts the background tasks.
    pub async fn start(
        policy: PolicyKind,
        clock: Clock,
        service: SandboxService,
        usage: Option<UsageLog>,
    ) -> Self {
        let warmer = service.warmer();
        let (_, budget) = warmer.warm_bytes();
        let known = warmer.runtimes();
        let typical = if known.is_empty() {
            prewarm_predict::catalog::PYTHON_DATA_BYTES
        } else {
            (known.iter().map(|r| r.size_bytes).sum::<u64>() / known.len() as u64).max(1)
        };
        let k = (budget / typical).min(u64::from(u32::MAX)) as usize;
        let mut state = State::new(policy.build(k));
        if let Some(log) = &usage {
            match log.load(clock.now()).await {
                Ok(past) => {
                    let n = past.len();
                    for rec in past {
                        if let Some(r) = state.runtimes.id(&rec.runtime) {
                            state.predictor.observe(&Usage {
                                t: rec.t,
                                user: user_id(&rec.user),
                                runtime: r,
                                hot: rec.hot,
                            });
                        }
                    }
                    tracing::info!(
                        creates = n,
                        store = log.store,
                        "replayed recorded usage into the predictor"
                    );
                }
                Err(e) => {
                    tracing::warn!(%e, store = log.store, "could not read recorded usage; starting without it")
                }
            }
        }
        let p = Self {
            inner: Arc::new(Inner {
                policy,
                clock,
                service,
                usage,
                metrics: PredictMetrics::default(),
                state: tokio::sync::Mutex::new(state),
                cancel: CancellationToken::new(),
                tasks: Default::default(),
            }),
        };
        tracing::info!(policy = %policy, k, manual_clock = p.inner.clock.is_manual(), "predictor started");
        {
            let mut tasks = p.inner.tasks.lock().await;
            let i = p.inner.clone();
            let rx = i.service.creates();
            tasks.spawn(async move { i.listen(rx).await });
            if !p.inner.clock.is_manual() {
                let i = p.inner.clone();
                tasks.spawn(async move { i.tick_loop().await });
            }
        }
        p
    }

    pub fn metrics(&self) -> &PredictMetrics {
        &self.inner.metrics
    }

    /// Stops the tasks and writes the usage not yet stored.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let mut tasks = self.inner.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
        self.inner.flush_usage().await;
    }
}

impl Inner {
    async fn listen(&self, mut rx: tokio::sync::broadcast::Receiver<Created>) {
        loop {
            let c = tokio::select! {
                _ = self.cancel.cancelled() => return,
                c = rx.recv() => c,
            };
            match c {
                Ok(c) => self.on_create(c).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the predictor fell behind and missed creates");
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn tick_loop(&self) {
        loop {
            self.tick_until(self.clock.now()).await;
            let now = self.clock.now();
            let wait = TICK - now % TICK;
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            }
        }
    }

    /// A create: recorded, then the policy observes it and hears the user show up.
    async fn on_create(&self, c: Created) {
        let t = self.clock.now();
        let name = c.runtime.to_string();
        let hot = c.outcome == Outcome::Hot;
        let label = self.service.warmer().metrics().runtime_label(&c.runtime);
        self.metrics.start(label, hot);
        let uhash = user_hash(&c.user_id);
        if let Some(log) = &self.usage {
            log.record(UsageRec {
                t,
                user: uhash.clone(),
                runtime: name.clone(),
                hot,
            });
        }
        let mut st = self.state.lock().await;
        st.seen += 1;
        if let Some(rule) = st.used(&c.digest) {
            self.metrics.used(&rule.to_string());
        }
        let Some(r) = st.runtimes.id(&name) else {
            return;
        };
        st.digests.insert(r, c.digest);
        if c.outcome == Outcome::Cold {
            st.note(t, r, "cold", None);
        }
        let user = user_id(&uhash);
        st.predictor.observe(&Usage {
            t,
            user,
            runtime: r,
            hot,
        });
        let wants = st.predictor.on_user(t, user);
        self.want(&mut st, wants, t).await;
        // The create moved the policy's ranks: the node evicts by the new ones.
        self.sync_wanted(&st, t);
    }

    /// Runs every tick due by `now` (the simulator's replay loop), then settles predicted
    /// warms and stores recorded usage.
    async fn tick_until(&self, now: Secs) -> u64 {
        let mut ran = 0;
        {
            let mut st = self.state.lock().await;
            let mut next = st.next_tick.unwrap_or(now / TICK * TICK);
            if now >= next + MAX_CATCH_UP_TICKS * TICK {
                next = (now / TICK - MAX_CATCH_UP_TICKS + 1) * TICK;
            }
            while next <= now {
                let plan = st.predictor.tick(next);
                self.apply(&mut st, plan, next).await;
                next += TICK;
                ran += 1;
            }
            st.next_tick = Some(next);
            self.sweep(&mut st);
        }
        self.flush_usage().await;
        ran
    }

    async fn flush_usage(&self) {
        if let Some(log) = &self.usage {
            if let Err(e) = log.flush(self.clock.now()).await {
                tracing::warn!(%e, store = log.store, "could not store recorded usage; will retry");
            }
        }
    }

    /// `POST /v1/users/{id}/hint`: the user's usual runtimes, warmed now.
    async fn hint(&self, user: &str) -> Vec<WantView> {
        let t = self.clock.now();
        let mut st = self.state.lock().await;
        let wants = st.predictor.on_user(t, user_id(&user_hash(user)));
        self.want(&mut st, wants, t).await
    }
}
