//! The node's Prometheus series (creates, time to ready, warm steps, joins, execs) and the recent history `/ui` draws.
//!
//! [`NodeMetrics`] is made by [`crate::warm::Warmer::open`] and reached with
//! [`crate::warm::Warmer::metrics`]; the server registers it into its one registry with
//! [`NodeMetrics::register`]. Every call site is one line (`self.metrics().created(…)`), so the
//! files of the sandbox and warm paths stay about sandboxes and warming.
//!
//! Runtimes are labelled by name through [`RuntimeLabels`]: a bounded set, never a digest or a
//! user.

mod history;
mod labels;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prewarm_shared::sandbox::{Status, Step, WarmState};
use prewarm_shared::RuntimeRef;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

pub use history::{ReadyPoint, RuntimeStarts};
pub use labels::{RuntimeLabels, DIGEST_LABEL, OTHER_LABEL};

use history::History;

/// How a sandbox create went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The runtime was warm: ready at once.
    Hot,
    /// A new warm was queued for it.
    Cold,
    /// It joined a warm already queued or running (single-flight).
    Joined,
    /// The create was refused or could not be done.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hot => "hot",
            Outcome::Cold => "cold",
            Outcome::Joined => "joined",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CreateLabels {
    runtime: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    runtime: String,
    /// `hot` or `cold` (a create that joined a running warm waited for it: `cold`).
    start: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabel {
    runtime: String,
}

/// Buckets of time to ready: a hot start is milliseconds, a cold one seconds to minutes.
fn ready_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        120.0, 300.0, 600.0,
    ]
    .into_iter()
}

/// The node's series. Cheap to clone (every family is shared).
#[derive(Clone)]
pub struct NodeMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    labels: RuntimeLabels,
    creates: Family<CreateLabels, Counter>,
    ready: Family<ReadyLabels, Histogram, fn() -> Histogram>,
    steps: Family<StepLabels, Histogram, fn() -> Histogram>,
    joins: Counter,
    execs: Family<RuntimeLabel, Counter>,
    exec_seconds: Family<RuntimeLabel, Histogram, fn() -> Histogram>,
    history: History,
    /// Watches of cold creates until their runtime is ready (each ends with its warm).
    watches: TaskTracker,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new(RuntimeLabels::DEFAULT_MAX)
    }
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// Series labelled with at most `max_runtimes` runtime names (plus `other`).
    pub fn new(max_runtimes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                labels: RuntimeLabels::new(max_runtimes),
                creates: Family::default(),
                ready: Family::new_with_constructor(|| Histogram::new(ready_buckets())),
                steps: Family::new_with_constructor(|| Histogram::new(ready_buckets())),
                joins: Counter::default(),
                execs: Family::default(),
                exec_seconds: Family::new_with_constructor(|| Histogram::new(ready_buckets())),
                history: History::default(),
                watches: TaskTracker::new(),
            }),
        }
    }

    /// Adds the node's series to the server's registry (names get the registry's `prewarm_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        let i = &self.inner;
        registry.register(
            "sandbox_creates",
            "Sandbox creates by runtime and outcome (hot, cold, joined a running warm, failed)",
            i.creates.clone(),
        );
        registry.register(
            "sandbox_time_to_ready_seconds",
            "From the create request to a ready sandbox, by runtime and start (hot or cold)",
            i.ready.clone(),
        );
        registry.register(
            "warm_step_seconds",
            "Time each warm step took (manifest, fetch, materialise, warm, seal)",
            i.steps.clone(),
        );
        registry.register(
            "warm_joins",
            "Requests (creates and /v1/warm) that joined a warm already queued or running instead of starting one",
            i.joins.clone(),
        );
        registry.register(
            "sandbox_execs",
            "Commands run in sandboxes, by runtime",
            i.execs.clone(),
        );
        registry.register(
            "sandbox_exec_seconds",
            "Duration of commands run in sandboxes, by runtime",
            i.exec_seconds.clone(),
        );
    }

    /// The bounded label of `runtime` (its name, `other`, or `digest` for a digest reference).
    pub fn runtime_label(&self, runtime: &RuntimeRef) -> String {
        self.inner.labels.of(runtime, true)
    }

    /// Counts a create that began at `started`. A hot one is ready now; a cold or joined one
    /// is watched through `state` until its warm ends, then its time to ready is recorded.
    pub fn created(
        &self,
        runtime: &RuntimeRef,
        outcome: Outcome,
        started: Instant,
        state: Option<watch::Receiver<WarmState>>,
    ) {
        let label = self.inner.labels.of(runtime, outcome != Outcome::Failed);
        let i = &self.inner;
        i.creates
            .get_or_create(&CreateLabels {
                runtime: label.clone(),
                outcome: outcome.as_str(),
            })
            .inc();
        i.history.created(&label, outcome);
        match (outcome, state) {
            (Outcome::Hot, _) => self.ready(&label, true, started.elapsed()),
            (Outcome::Cold | Outcome::Joined, Some(mut rx)) => {
                let m = self.clone();
                i.watches.spawn(async move {
                    loop {
                        let status = rx.borrow_and_update().status;
                        match status {
                            Status::Ready => return m.ready(&label, false, started.elapsed()),
                            Status::Failed => return,
                            Status::Warming => {}
                        }
                        if rx.changed().await.is_err() {
                            return;
                        }
                    }
                });
            }
            _ => {}
        }
    }

    /// Counts a request that joined a warm already queued or running (single-flight).
    pub fn joined_warm(&self) {
        self.inner.joins.inc();
    }

    fn ready(&self, label: &str, hot: bool, took: Duration) {
        let start = if hot { "hot" } else { "cold" };
        self.inner
            .ready
            .get_or_create(&ReadyLabels {
                runtime: label.to_owned(),
                start,
            })
            .observe(took.as_secs_f64());
        self.inner.history.ready(label, hot, took);
    }

    /// Runs a warm (`fut`), timing each step `state` moves through.
    pub async fn time_steps<F: Future>(
        &self,
        mut state: watch::Receiver<WarmState>,
        fut: F,
    ) -> F::Output {
        tokio::pin!(fut);
        // A worker runs the job now: until it reports otherwise, it is resolving the manifest.
        // (The watch keeps the latest state only: a step shorter than the poll may be folded
        // into the one before it.)
        let mut step = match state.borrow_and_update().step {
            Step::Queued => Step::Manifest,
            s => s,
        };
        let mut since = Instant::now();
        let mut open = true;
        loop {
            tokio::select! {
                // State changes first, so a step the warm reported before it yielded is seen.
                biased;
                changed = state.changed(), if open => {
                    if changed.is_err() {
                        open = false;
                        continue;
                    }
                    let now = state.borrow_and_update().step;
                    if now != step && now != Step::Queued {
                        self.step_took(step, since.elapsed());
                        step = now;
                        since = Instant::now();
                    }
                }
                out = &mut fut => {
                    // A last step the loop had not seen yet: the time goes to it from here.
                    let last = state.borrow_and_update().step;
                    if last != step && last != Step::Queued && last != Step::Done {
                        self.step_took(step, since.elapsed());
                        (step, since) = (last, Instant::now());
                    }
                    self.step_took(step, since.elapsed());
                    return out;
                }
            }
        }
    }

    fn step_took(&self, step: Step, took: Duration) {
        let Some(step) = step_name(step) else { return };
        self.inner
            .steps
            .get_or_create(&StepLabels { step })
            .observe(took.as_secs_f64());
    }

    /// Counts one command run in a sandbox of `runtime`, and how long it took.
    pub fn exec_done(&self, runtime: &RuntimeRef, took: Duration) {
        let runtime = self.runtime_label(runtime);
        let l = RuntimeLabel { runtime };
        self.inner.execs.get_or_create(&l).inc();
        self.inner
            .exec_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// Hot-start counts per runtime label, for `/ui`.
    pub fn starts(&self) -> Vec<RuntimeStarts> {
        self.inner.history.starts()
    }

    /// Times to ready of the last hour, oldest first, for `/ui`'s chart.
    pub fn recent_ready(&self) -> Vec<ReadyPoint> {
        self.inner.history.recent()
    }
}

/// The span a warm runs in: every log line of its steps carries the runtime and the manifest
/// digest, and the sandboxes waiting for it (each create logs its sandbox id with the same
/// digest, see [`create_span`]).
pub fn warm_span(job: &crate::warm::Job) -> tracing::Span {
    tracing::info_span!("warm", runtime = %job.runtime, digest = %job.digest)
}

/// The span of one sandbox create; `sandbox` is recorded once the id is chosen.
pub fn create_span(runtime: &RuntimeRef) -> tracing::Span {
    tracing::info_span!("sandbox_create", %runtime, sandbox = tracing::field::Empty, digest = tracing::field::Empty)
}

/// The label of a step that does work (`queued` and `done` take no worker time).
fn step_name(step: Step) -> Option<&'static str> {
    Some(match step {
        Step::Manifest => "manifest",
        Step::Fetch => "fetch",
        Step::FetchWarmed => "fetch_warmed",
        Step::Materialise => "materialise",
        Step::Warm => "warm",
        Step::Seal => "seal",
        Step::Queued | Step::Done => return None,
    })
}
