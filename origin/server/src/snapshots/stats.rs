//! Snapshot and clone timings of this origin: p50/p99 over the last 1024 of each for `GET /v1/snapshots/stats`, histograms and byte counters for `/metrics`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

const KEEP: usize = 1024;

#[derive(Default)]
struct Inner {
    snapshot_ms: VecDeque<u64>,
    clone_ms: VecDeque<u64>,
    snapshots: u64,
    clones: u64,
    bytes_new: u64,
    bytes_total: u64,
}

/// Timings and byte counts since the origin started, and their Prometheus series. Cheap to
/// clone.
#[derive(Clone, Default)]
pub struct SnapshotStats(Arc<Mutex<Inner>>, Families);

/// `GET /v1/stats` → `snapshots`.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub snapshots_taken: u64,
    pub clones_made: u64,
    pub snapshot_ms_p50: Option<u64>,
    pub snapshot_ms_p99: Option<u64>,
    pub clone_ms_p50: Option<u64>,
    pub clone_ms_p99: Option<u64>,
    /// Logical workspace bytes snapshotted against new bytes stored for them: the share of a
    /// snapshot's bytes that were already stored (unchanged files and blocks).
    pub snapshot_bytes_logical: u64,
    pub snapshot_bytes_new: u64,
    pub snapshot_reuse_percent: Option<f64>,
}

fn push(q: &mut VecDeque<u64>, v: u64) {
    if q.len() == KEEP {
        q.pop_front();
    }
    q.push_back(v);
}

fn pct(q: &VecDeque<u64>, p: f64) -> Option<u64> {
    if q.is_empty() {
        return None;
    }
    let mut v: Vec<u64> = q.iter().copied().collect();
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied()
}

impl SnapshotStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self, ms: u64, bytes_total: u64, bytes_new: u64) {
        self.1.snapshot_seconds.observe(ms as f64 / 1000.0);
        self.1.logical_bytes.inc_by(bytes_total);
        self.1.new_bytes.inc_by(bytes_new);
        let mut i = self.lock();
        i.snapshots += 1;
        i.bytes_total += bytes_total;
        i.bytes_new += bytes_new;
        push(&mut i.snapshot_ms, ms);
    }

    pub fn clone_made(&self, ms: u64) {
        self.1.clone_seconds.observe(ms as f64 / 1000.0);
        let mut i = self.lock();
        i.clones += 1;
        push(&mut i.clone_ms, ms);
    }

    pub fn view(&self) -> StatsView {
        let i = self.lock();
        StatsView {
            snapshots_taken: i.snapshots,
            clones_made: i.clones,
            snapshot_ms_p50: pct(&i.snapshot_ms, 0.5),
            snapshot_ms_p99: pct(&i.snapshot_ms, 0.99),
            clone_ms_p50: pct(&i.clone_ms, 0.5),
            clone_ms_p99: pct(&i.clone_ms, 0.99),
            snapshot_bytes_logical: i.bytes_total,
            snapshot_bytes_new: i.bytes_new,
            snapshot_reuse_percent: (i.bytes_total > 0).then(|| {
                100.0 * (i.bytes_total.saturating_sub(i.bytes_new)) as f64 / i.bytes_total as f64
            }),
        }
    }

    /// Registers the series `/metrics` serves (docs/METRICS.md).
    pub fn register(&self, r: &mut Registry) {
        let f = &self.1;
        r.register(
            "snapshot_seconds",
            "Time to take a workspace snapshot (processes stopped, changed files read and stored)",
            f.snapshot_seconds.clone(),
        );
        r.register("snapshot_clone_seconds", "Time to make a sandbox from a snapshot (fork, resume, create from a snapshot) until its create answers", f.clone_seconds.clone());
        r.register(
            "snapshot_logical_bytes",
            "Workspace bytes snapshotted",
            f.logical_bytes.clone(),
        );
        r.register(
            "snapshot_new_bytes",
            "Bytes snapshots stored that were not stored before",
            f.new_bytes.clone(),
        );
    }
}

/// The Prometheus families, moved beside the in-memory figures.
#[derive(Clone)]
struct Families {
    snapshot_seconds: Histogram,
    clone_seconds: Histogram,
    logical_bytes: Counter,
    new_bytes: Counter,
}

impl Default for Families {
    fn default() -> Self {
        let buckets = || {
            [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ]
            .into_iter()
        };
        Self {
            snapshot_seconds: Histogram::new(buckets()),
            clone_seconds: Histogram::new(buckets()),
            logical_bytes: Counter::default(),
            new_bytes: Counter::default(),
        }
    }
}
