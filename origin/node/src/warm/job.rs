//! One warm job: its identity, and its state published through a `watch` channel to every waiter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use prewarm_shared::sandbox::{Priority, Status, Step, WarmFailure, WarmState};
use prewarm_shared::{Digest, RuntimeRef};
use tokio::sync::watch;

/// Share of the progress figure each step carries; they add up to 1.
pub(crate) fn weight(step: Step) -> f64 {
    match step {
        Step::Queued | Step::Done => 0.0,
        Step::Manifest => 0.05,
        // One or the other: a fetched warmed runtime skips the warm commands.
        Step::Fetch | Step::FetchWarmed => 0.50,
        Step::Materialise => 0.15,
        Step::Warm => 0.25,
        Step::Seal => 0.05,
    }
}

/// Progress at the start of `step`.
fn base(step: Step) -> f64 {
    let step = if step == Step::FetchWarmed {
        Step::Fetch
    } else {
        step
    };
    [
        Step::Manifest,
        Step::Fetch,
        Step::Materialise,
        Step::Warm,
        Step::Seal,
    ]
    .iter()
    .take_while(|s| **s != step)
    .map(|s| weight(*s))
    .sum()
}

/// A warm of one runtime (one manifest digest). Every request that wants it while it runs
/// subscribes to the same channel: single-flight, and all become ready together.
#[derive(Debug)]
pub struct Job {
    pub digest: Digest,
    pub runtime: RuntimeRef,
    pub(crate) priority: Mutex<Priority>,
    /// Order of arrival in the queue (FIFO within a priority).
    pub(crate) seq: u64,
    tx: watch::Sender<WarmState>,
    started: Mutex<Option<Instant>>,
    /// Expected total duration in ms; refined once the manifest's size is known.
    estimate_ms: AtomicU64,
    /// No sandbox create has claimed this warm as its own yet (see [`Job::claim`]).
    fresh: std::sync::atomic::AtomicBool,
    /// A predictive warm nobody asked for yet: only the background worker takes it, so it
    /// never holds a worker a user's warm waits for. Cleared when a request joins it.
    background: std::sync::atomic::AtomicBool,
    /// Every state [`Job::progress`] sent to subscribers, in order: what a fast enough
    /// subscriber would have seen, readable by tests without racing the warm.
    #[cfg(test)]
    pub(crate) sent: Mutex<Vec<WarmState>>,
}

impl Job {
    pub(crate) fn new(
        digest: Digest,
        runtime: RuntimeRef,
        priority: Priority,
        seq: u64,
        estimate_ms: u64,
        background: bool,
    ) -> Self {
        let (tx, _) = watch::channel(WarmState {
            status: Status::Warming,
            progress: 0.0,
            step: Step::Queued,
            estimated_ms: Some(estimate_ms),
            queue_position: Some(0),
            error: None,
        });
        Self {
            digest,
            runtime,
            priority: Mutex::new(priority),
            seq,
            tx,
            started: Mutex::new(None),
            estimate_ms: AtomicU64::new(estimate_ms),
            fresh: std::sync::atomic::AtomicBool::new(true),
            background: std::sync::atomic::AtomicBool::new(background),
            #[cfg(test)]
            sent: Mutex::default(),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<WarmState> {
        self.tx.subscribe()
    }

    /// True for the first caller only: the create that started this warm (a later one joined it).
    pub fn claim(&self) -> bool {
        self.fresh.swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    pub fn state(&self) -> WarmState {
        self.tx.borrow().clone()
    }

    pub(crate) fn priority(&self) -> Priority {
        *self.priority.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this is a predictive warm no request has joined (see [`crate::warm::background`]).
    pub fn is_background(&self) -> bool {
        self.background.load(Ordering::SeqCst)
    }

    /// Raises the priority (a `high` request joining a `low` warm); never lowers it. Any
    /// request joining makes it a user's warm: the regular workers may take it.
    pub(crate) fn raise(&self, p: Priority) {
        self.background.store(false, Ordering::SeqCst);
        let mut cur = self.priority.lock().unwrap_or_else(|p| p.into_inner());
        if p > *cur {
            *cur = p;
        }
    }

    pub(crate) fn set_queue_position(&self, pos: u64) {
        self.tx.send_if_modified(|s| {
            let changed = s.queue_position != Some(pos);
            s.queue_position = Some(pos);
            changed
        });
    }

    pub(crate) fn set_estimate(&self, ms: u64) {
        self.estimate_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn estimate(&self) -> u64 {
        self.estimate_ms.load(Ordering::Relaxed)
    }

    /// Reports that `step` is `fraction` (0..=1) done. Progress never moves backwards.
    /// Subscribers hear of a new step, of every 0.1% further, and of the step's completion;
    /// a finished job ignores it.
    pub(crate) fn progress(&self, step: Step, fraction: f64) {
        if step == Step::Manifest {
            let mut s = self.started.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert_with(Instant::now);
        }
        let total = (base(step) + weight(step) * fraction.clamp(0.0, 1.0)).min(1.0);
        let remaining = (self.estimate() as f64 * (1.0 - total)) as u64;
        self.tx.send_if_modified(|s| {
            // A step abandoned at shutdown may still be reporting from a blocking thread.
            if s.status != Status::Warming {
                return false;
            }
            // Small steps are not worth a message, except the one that completes the step.
            let moved = step != s.step
                || total > s.progress + 0.001
                || (fraction >= 1.0 && total > s.progress);
            s.step = step;
            s.queue_position = None;
            s.progress = s.progress.max(total);
            s.estimated_ms = Some(remaining);
            #[cfg(test)]
            if moved {
                self.sent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(s.clone());
            }
            moved
        });
    }

    pub(crate) fn finish_ready(&self) {
        self.tx.send_replace(WarmState::ready());
    }

    pub(crate) fn finish_failed(&self, failure: WarmFailure) {
        self.tx.send_modify(|s| {
            s.status = Status::Failed;
            s.step = Step::Done;
            s.estimated_ms = None;
            s.queue_position = None;
            s.error = Some(failure);
        });
    }
}
