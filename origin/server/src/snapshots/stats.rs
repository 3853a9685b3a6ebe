//! Snapshot and clone timings of this origin (p50/p99 over the last 1024 of each), for `GET /v1/stats` and `/metrics`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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

/// Timings and byte counts since the origin started. Cheap to clone.
#[derive(Clone, Default)]
pub struct SnapshotStats(Arc<Mutex<Inner>>);

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
        let mut i = self.lock();
        i.snapshots += 1;
        i.bytes_total += bytes_total;
        i.bytes_new += bytes_new;
        push(&mut i.snapshot_ms, ms);
    }

    pub fn clone_made(&self, ms: u64) {
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

    /// Prometheus text lines for `/metrics`.
    pub fn prometheus(&self) -> String {
        let v = self.view();
        let mut s = String::new();
        let mut line = |name: &str, help: &str, val: Option<f64>| {
            if let Some(x) = val {
                s.push_str(&format!(
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {x}\n"
                ));
            }
        };
        line(
            "prewarm_snapshots_taken",
            "Snapshots taken by this origin.",
            Some(v.snapshots_taken as f64),
        );
        line(
            "prewarm_snapshot_clones",
            "Sandboxes cloned from snapshots by this origin.",
            Some(v.clones_made as f64),
        );
        line(
            "prewarm_snapshot_ms_p50",
            "Snapshot time p50 (ms), last 1024.",
            v.snapshot_ms_p50.map(|x| x as f64),
        );
        line(
            "prewarm_snapshot_ms_p99",
            "Snapshot time p99 (ms), last 1024.",
            v.snapshot_ms_p99.map(|x| x as f64),
        );
        line(
            "prewarm_clone_ms_p50",
            "Clone time p50 (ms), last 1024.",
            v.clone_ms_p50.map(|x| x as f64),
        );
        line(
            "prewarm_clone_ms_p99",
            "Clone time p99 (ms), last 1024.",
            v.clone_ms_p99.map(|x| x as f64),
        );
        line(
            "prewarm_snapshot_reuse_percent",
            "Share of snapshotted bytes already stored.",
            v.snapshot_reuse_percent,
        );
        s
    }
}
