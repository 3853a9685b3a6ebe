//! The recent past `/ui` draws: hot/cold start counts per runtime label and the last hour's times to ready.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::Outcome;
use crate::warm::index::now_ms;

/// Points kept for the chart, at most (older ones and those over an hour old are dropped).
const MAX_POINTS: usize = 2000;
const WINDOW_MS: u64 = 3600 * 1000;

/// Creates of one runtime label since the origin started.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RuntimeStarts {
    pub runtime: String,
    pub hot: u64,
    pub cold: u64,
    pub joined: u64,
    pub failed: u64,
}

/// One sandbox that became ready.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadyPoint {
    /// When it became ready, ms since the Unix epoch.
    pub at_ms: u64,
    pub runtime: String,
    pub hot: bool,
    pub seconds: f64,
}

#[derive(Default)]
pub(super) struct History {
    /// Keyed by bounded runtime label, so this stays small.
    starts: Mutex<BTreeMap<String, RuntimeStarts>>,
    points: Mutex<VecDeque<ReadyPoint>>,
}

impl History {
    pub(super) fn created(&self, label: &str, outcome: Outcome) {
        let mut s = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        let e = s.entry(label.to_owned()).or_insert_with(|| RuntimeStarts {
            runtime: label.to_owned(),
            ..Default::default()
        });
        match outcome {
            Outcome::Hot => e.hot += 1,
            Outcome::Cold => e.cold += 1,
            Outcome::Joined => e.joined += 1,
            Outcome::Failed => e.failed += 1,
        }
    }

    pub(super) fn ready(&self, label: &str, hot: bool, took: Duration) {
        let now = now_ms();
        let mut p = self.points.lock().unwrap_or_else(|p| p.into_inner());
        p.push_back(ReadyPoint {
            at_ms: now,
            runtime: label.to_owned(),
            hot,
            seconds: took.as_secs_f64(),
        });
        while p.len() > MAX_POINTS || p.front().is_some_and(|f| f.at_ms + WINDOW_MS < now) {
            p.pop_front();
        }
    }

    pub(super) fn starts(&self) -> Vec<RuntimeStarts> {
        let s = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        s.values().cloned().collect()
    }

    pub(super) fn recent(&self) -> Vec<ReadyPoint> {
        let now = now_ms();
        let p = self.points.lock().unwrap_or_else(|p| p.into_inner());
        p.iter()
            .filter(|x| x.at_ms + WINDOW_MS >= now)
            .cloned()
            .collect()
    }
}
