//! `popular`: the top-K runtimes of the last hours, refreshed every hour.

use std::collections::{HashMap, VecDeque};

use super::{Plan, Predictor, Rule, Usage, Want, TICK};
use crate::{RuntimeId, Secs, HOUR};

/// Top-K by uses over a sliding window of whole hours.
#[derive(Debug)]
pub struct Popular {
    k: usize,
    window_hours: usize,
    /// Uses per runtime, one map per hour, newest last.
    hours: VecDeque<(Secs, HashMap<RuntimeId, u32>)>,
    last_refresh: Option<Secs>,
}

impl Popular {
    /// The window: six hours of uses.
    pub const DEFAULT_WINDOW_HOURS: usize = 6;

    pub fn new(k: usize, window_hours: usize) -> Self {
        Self {
            k,
            window_hours: window_hours.max(1),
            hours: VecDeque::new(),
            last_refresh: None,
        }
    }

    /// The current top-K with their expected uses per hour, best first (ties by id).
    pub fn top(&self, now: Secs) -> Vec<Want> {
        let oldest = (now / HOUR).saturating_sub(self.window_hours as Secs);
        let mut counts: HashMap<RuntimeId, u32> = HashMap::new();
        for (h, m) in &self.hours {
            if *h >= oldest {
                for (r, n) in m {
                    *counts.entry(*r).or_default() += n;
                }
            }
        }
        let mut v: Vec<(RuntimeId, u32)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(self.k);
        v.into_iter()
            .map(|(runtime, n)| Want {
                runtime,
                score: n as f64 / self.window_hours as f64,
                rule: Rule::Popular,
                until: now + HOUR + TICK,
            })
            .collect()
    }
}

impl Predictor for Popular {
    fn name(&self) -> &'static str {
        "popular"
    }

    fn observe(&mut self, u: &Usage) {
        let h = u.t / HOUR;
        if self.hours.back().map(|(b, _)| *b) != Some(h) {
            self.hours.push_back((h, HashMap::new()));
        }
        if let Some((_, m)) = self.hours.back_mut() {
            *m.entry(u.runtime).or_default() += 1;
        }
        while self.hours.len() > self.window_hours + 1 {
            self.hours.pop_front();
        }
    }

    fn tick(&mut self, now: Secs) -> Plan {
        let hour = now / HOUR;
        if self.last_refresh == Some(hour) {
            return Plan::default();
        }
        self.last_refresh = Some(hour);
        Plan {
            warm: self.top(now),
            release: Vec::new(),
        }
    }
}
