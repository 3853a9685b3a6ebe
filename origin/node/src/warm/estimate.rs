//! `estimated_ms`: learned from measured warms of a runtime, else guessed from its size.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::layout::write_atomic;

/// Guess for a runtime never warmed here whose size is not known yet.
const UNKNOWN_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Learned {
    /// Exponentially weighted mean of measured warm durations.
    ms: f64,
    samples: u64,
}

/// Warm durations per runtime name (so `python-data:v2` benefits from `v1`'s history),
/// persisted in the node dir so a restart keeps them.
#[derive(Debug)]
pub struct Estimator {
    path: PathBuf,
    learned: Mutex<BTreeMap<String, Learned>>,
}

impl Estimator {
    pub fn load(path: PathBuf) -> Self {
        let learned = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path,
            learned: Mutex::new(learned),
        }
    }

    /// The learned duration for `key`, if any warm of it was measured.
    pub fn learned(&self, key: &str) -> Option<u64> {
        self.lock().get(key).map(|l| l.ms as u64)
    }

    /// Learned, else [`UNKNOWN_MS`].
    pub fn before_manifest(&self, key: &str) -> u64 {
        self.learned(key).unwrap_or(UNKNOWN_MS)
    }

    /// Learned, else from size: fixed overhead + bytes at 150 MB/s + 50 µs per file + 1 s per
    /// warm command. The constants are rough figures from this project's benchmarks.
    pub fn from_size(&self, key: &str, bytes: u64, files: u64, warm_commands: usize) -> u64 {
        self.learned(key)
            .unwrap_or_else(|| 300 + bytes / 150_000 + files / 20 + 1_000 * warm_commands as u64)
    }

    /// Records a measured warm and persists (best effort: a write failure is logged).
    pub fn record(&self, key: &str, ms: u64) {
        let snapshot = {
            let mut map = self.lock();
            let e = map.entry(key.to_string()).or_insert(Learned {
                ms: ms as f64,
                samples: 0,
            });
            e.ms = if e.samples == 0 {
                ms as f64
            } else {
                0.7 * e.ms + 0.3 * ms as f64
            };
            e.samples += 1;
            map.clone()
        };
        let res = serde_json::to_vec_pretty(&snapshot)
            .map_err(std::io::Error::other)
            .and_then(|b| write_atomic(&self.path, &b));
        if let Err(e) = res {
            tracing::warn!(path = %self.path.display(), %e, "could not persist warm estimates");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Learned>> {
        self.learned.lock().unwrap_or_else(|p| p.into_inner())
    }
}
