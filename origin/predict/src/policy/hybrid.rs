//! `hybrid`: a per-runtime idle-time histogram sets a pre-warm and a keep-alive window (after "Serverless in the Wild", ATC '20).
//!
//! Idle times (between consecutive starts of a runtime) go into one-minute bins over a
//! four-hour range. When the histogram is representative (at least 10 samples, at most half
//! out of range, bin counts with a coefficient of variation ≥ 2), the pre-warm window is the
//! 5th percentile minus a 10 % margin and the keep-alive window runs to the 99th percentile
//! plus 10 %: after a start the runtime is let go, warmed again when the pre-warm window ends
//! and kept until the keep-alive window ends. Otherwise it falls back to a fixed keep-alive of
//! the whole range, as the paper does. (The paper's ARIMA path for mostly out-of-range idle
//! times is not built: those runtimes take the fallback.)

use std::collections::BTreeMap;

use super::{Plan, Predictor, Rule, Usage, Want, TICK};
use crate::{RuntimeId, Secs};

const BINS: usize = 240;
const BIN: Secs = 60;

#[derive(Debug)]
struct Hist {
    bins: Vec<u32>,
    out_of_range: u32,
    last_start: Option<Secs>,
    /// (pre-warm, keep-alive) windows from the last start, in seconds.
    windows: (Secs, Secs),
    /// Whether the runtime is currently wanted (so each transition is said once).
    held: bool,
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            bins: vec![0; BINS],
            out_of_range: 0,
            last_start: None,
            windows: (0, BINS as Secs * BIN),
            held: false,
        }
    }
}

impl Hist {
    fn samples(&self) -> u32 {
        self.bins.iter().sum::<u32>() + self.out_of_range
    }

    fn representative(&self) -> bool {
        let n = self.samples();
        if n < 10 || self.out_of_range * 2 > n {
            return false;
        }
        let mean = self.bins.iter().map(|&b| b as f64).sum::<f64>() / BINS as f64;
        let var = self
            .bins
            .iter()
            .map(|&b| (b as f64 - mean).powi(2))
            .sum::<f64>()
            / BINS as f64;
        mean > 0.0 && var.sqrt() / mean >= 2.0
    }

    fn percentile(&self, p: f64) -> Secs {
        let n: u32 = self.bins.iter().sum();
        let target = (p * n as f64).ceil().max(1.0) as u32;
        let mut acc = 0;
        for (i, &b) in self.bins.iter().enumerate() {
            acc += b;
            if acc >= target {
                return i as Secs * BIN;
            }
        }
        BINS as Secs * BIN
    }

    fn recompute(&mut self) {
        self.windows = if self.representative() {
            let head = (self.percentile(0.05) as f64 * 0.9) as Secs;
            let tail = ((self.percentile(0.99) + BIN) as f64 * 1.1) as Secs;
            (head, tail.saturating_sub(head).max(BIN))
        } else {
            (0, BINS as Secs * BIN)
        };
    }
}

/// The ATC '20 hybrid histogram policy, per runtime.
#[derive(Debug, Default)]
pub struct Hybrid {
    runtimes: BTreeMap<RuntimeId, Hist>,
}

impl Hybrid {
    /// The (pre-warm, keep-alive) windows of a runtime, in seconds, as of its last start.
    pub fn windows(&self, r: RuntimeId) -> Option<(Secs, Secs)> {
        self.runtimes.get(&r).map(|h| h.windows)
    }
}

impl Predictor for Hybrid {
    fn name(&self) -> &'static str {
        "hybrid"
    }

    fn observe(&mut self, u: &Usage) {
        let h = self.runtimes.entry(u.runtime).or_default();
        if let Some(last) = h.last_start {
            let idle = (u.t.saturating_sub(last) / BIN) as usize;
            if idle < BINS {
                h.bins[idle] += 1;
            } else {
                h.out_of_range += 1;
            }
        }
        h.last_start = Some(u.t);
        h.recompute();
        // In use now: it is warm (or warming on demand); the windows run from here.
        h.held = true;
    }

    fn tick(&mut self, now: Secs) -> Plan {
        let mut plan = Plan::default();
        for (r, h) in &mut self.runtimes {
            let Some(last) = h.last_start else { continue };
            let (pre, keep) = h.windows;
            let since = now.saturating_sub(last);
            let inside = if pre == 0 {
                since < keep
            } else {
                since >= pre && since < pre + keep
            };
            if inside && !h.held {
                h.held = true;
                plan.warm.push(Want {
                    runtime: *r,
                    score: h.samples() as f64,
                    rule: Rule::IdleHistogram,
                    until: last + pre + keep,
                });
            } else if !inside && h.held && since >= TICK {
                h.held = false;
                plan.release.push(*r);
            }
        }
        plan
    }
}
