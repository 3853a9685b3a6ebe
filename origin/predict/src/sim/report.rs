//! What a simulation measured: hot-start rate overall and per runtime, warm work done and wasted, waits.

use std::collections::BTreeMap;

use serde::Serialize;

use super::node::Summary;
use crate::{RuntimeId, Trace};

/// Warms counted as a number, seconds of warm work and bytes warmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Work {
    pub warms: u64,
    pub seconds: f64,
    pub bytes: u64,
}

impl Work {
    pub(crate) fn add(&mut self, secs: f64, bytes: u64) {
        self.warms += 1;
        self.seconds += secs;
        self.bytes += bytes;
    }
}

/// One runtime's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuntimeReport {
    pub events: u64,
    pub hot: u64,
    /// Hot creates / creates, a fraction.
    pub hot_rate: f64,
    pub cold_starts: u64,
    pub cold_starts_avoided_vs_none: i64,
    pub wait_p50_secs: f64,
    pub wait_p99_secs: f64,
}

/// A policy's figures on a trace at a budget (`prewarm simulate --json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub policy: String,
    pub budget_bytes: u64,
    pub events: u64,
    pub hot: u64,
    /// Hot creates / creates, a fraction.
    pub hot_rate: f64,
    /// Creates that were not hot (a whole on-demand warm, or the rest of one under way).
    pub cold_starts: u64,
    /// `none`'s cold starts minus this policy's, on the same trace and budget.
    pub cold_starts_avoided_vs_none: i64,
    /// Every warm done: on demand and predicted.
    pub warm_work: Work,
    pub predicted_warms: u64,
    pub predicted_warms_used: u64,
    /// Cold starts of a runtime that could not have been warm within the budget: live
    /// sandboxes (and warms under way) of other runtimes pinned more than the budget left for
    /// it, so any node honouring the budget had evicted it. No policy can avoid these.
    pub cold_starts_pinned_out: u64,
    /// Predicted warms evicted, released or left at the end without a single use.
    pub wasted_warm_work: Work,
    pub wait_p50_secs: f64,
    pub wait_p99_secs: f64,
    pub wait_mean_secs: f64,
    /// Most bytes ever warm at once: above the budget only while live sandboxes pin more
    /// than it holds (the node cannot evict under them; neither can the real one).
    pub peak_warm_bytes: u64,
    /// Most bytes warm right after a predictive warm: never above the budget.
    pub peak_bytes_after_prediction: u64,
    /// Times the node stayed over budget while holding an idle runtime (must be 0).
    pub idle_over_budget: u64,
    pub runtimes: BTreeMap<String, RuntimeReport>,
}

impl Report {
    /// Fills the cold starts avoided against `none`'s report on the same trace and budget.
    pub fn set_baseline(&mut self, none: &Report) {
        self.cold_starts_avoided_vs_none = none.cold_starts as i64 - self.cold_starts as i64;
        for (name, r) in &mut self.runtimes {
            if let Some(b) = none.runtimes.get(name) {
                r.cold_starts_avoided_vs_none = b.cold_starts as i64 - r.cold_starts as i64;
            }
        }
    }
}

/// Running totals.
pub(crate) struct Acc {
    pub warm: Work,
    pub predicted_warms: u64,
    pub predicted_used: u64,
    pub pinned_out: u64,
    waits: Vec<f32>,
    per: Vec<(u64, Vec<f32>)>,
}

fn percentile(sorted: &[f32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    (sorted[i] as f64 * 1000.0).round() / 1000.0
}

impl Acc {
    pub(crate) fn new(runtimes: usize) -> Self {
        Self {
            warm: Work::default(),
            predicted_warms: 0,
            predicted_used: 0,
            pinned_out: 0,
            waits: Vec::new(),
            per: vec![(0, Vec::new()); runtimes],
        }
    }

    pub(crate) fn record(&mut self, r: RuntimeId, wait: f64, hot: bool) {
        self.waits.push(wait as f32);
        let p = &mut self.per[r.0 as usize];
        p.0 += hot as u64;
        p.1.push(wait as f32);
    }

    pub(crate) fn finish(
        mut self,
        policy: &str,
        trace: &Trace,
        budget: u64,
        node: &Summary,
    ) -> Report {
        let evicted = node.evicted;
        self.waits.sort_by(f32::total_cmp);
        let events = self.waits.len() as u64;
        let hot: u64 = self.per.iter().map(|p| p.0).sum();
        let mean = self.waits.iter().map(|&w| w as f64).sum::<f64>() / events.max(1) as f64;
        let mut runtimes = BTreeMap::new();
        for (i, (h, mut w)) in self.per.into_iter().enumerate() {
            if w.is_empty() {
                continue;
            }
            w.sort_by(f32::total_cmp);
            let n = w.len() as u64;
            runtimes.insert(
                trace.runtimes[i].clone(),
                RuntimeReport {
                    events: n,
                    hot: h,
                    hot_rate: h as f64 / n as f64,
                    cold_starts: n - h,
                    cold_starts_avoided_vs_none: 0,
                    wait_p50_secs: percentile(&w, 0.5),
                    wait_p99_secs: percentile(&w, 0.99),
                },
            );
        }
        Report {
            policy: policy.to_owned(),
            budget_bytes: budget,
            events,
            hot,
            hot_rate: hot as f64 / events.max(1) as f64,
            cold_starts: events - hot,
            cold_starts_avoided_vs_none: 0,
            warm_work: self.warm,
            predicted_warms: self.predicted_warms,
            predicted_warms_used: self.predicted_used,
            cold_starts_pinned_out: self.pinned_out,
            wasted_warm_work: Work {
                warms: evicted.wasted_warms,
                seconds: evicted.wasted_secs,
                bytes: evicted.wasted_bytes,
            },
            wait_p50_secs: percentile(&self.waits, 0.5),
            wait_p99_secs: percentile(&self.waits, 0.99),
            wait_mean_secs: (mean * 1000.0).round() / 1000.0,
            peak_warm_bytes: node.peak_bytes,
            peak_bytes_after_prediction: node.peak_after_prediction,
            idle_over_budget: node.idle_over_budget,
            runtimes,
        }
    }
}
