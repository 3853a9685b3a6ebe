//! The simulator's node: warm runtimes under a byte budget, LRU eviction that never touches a live sandbox's runtime.
//!
//! It stands for the node's warmer and LRU (`origin/node/src/warm/maintain.rs`): an on-demand
//! warm always proceeds, then least-recently-used idle runtimes (ones a prediction still wants
//! last) are evicted until the total fits; when live sandboxes pin more than the budget the
//! node stays over it until they end, as the real node does. A predictive warm evicts only
//! idle runtimes no prediction wants, and is skipped when that cannot free the bytes, so
//! predictions never take the node over its budget.

use std::collections::{HashMap, HashSet};

use crate::policy::Rule;
use crate::RuntimeId;

/// One warm (or warming) runtime.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub bytes: u64,
    pub warm_secs: f64,
    pub ready_at: f64,
    pub last_used: f64,
    /// The last live sandbox on it ends then.
    pub live_until: f64,
    /// Warmed by a prediction (and which rule) rather than on demand.
    pub predicted: Option<Rule>,
    pub used: bool,
}

impl Entry {
    fn idle(&self, now: f64) -> bool {
        self.live_until <= now && self.ready_at <= now
    }
}

/// What an eviction threw away.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Evicted {
    pub wasted_warms: u64,
    pub wasted_secs: f64,
    pub wasted_bytes: u64,
}

impl Evicted {
    fn add(&mut self, e: &Entry) {
        if e.predicted.is_some() && !e.used {
            self.wasted_warms += 1;
            self.wasted_secs += e.warm_secs;
            self.wasted_bytes += e.bytes;
        }
    }
}

/// The warm set.
#[derive(Debug)]
pub(crate) struct Node {
    pub budget: u64,
    pub used_bytes: u64,
    pub peak_bytes: u64,
    pub entries: HashMap<RuntimeId, Entry>,
    pub evicted: Evicted,
    /// Most bytes warm right after a predictive warm (never above the budget).
    pub peak_after_prediction: u64,
    /// Times the node stayed over budget with an idle runtime it could have evicted (never).
    pub idle_over_budget: u64,
}

impl Node {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            budget,
            used_bytes: 0,
            peak_bytes: 0,
            entries: HashMap::new(),
            evicted: Evicted::default(),
            peak_after_prediction: 0,
            idle_over_budget: 0,
        }
    }

    /// Frees `bytes` for a predictive warm by evicting idle runtimes no prediction wants,
    /// least recently used first, or evicts nothing and returns false when that cannot be done.
    pub(crate) fn make_room(&mut self, bytes: u64, now: f64, wanted: &HashSet<RuntimeId>) -> bool {
        if bytes > self.budget || self.used_bytes > self.budget {
            return false;
        }
        let free = self.budget - self.used_bytes;
        if free >= bytes {
            return true;
        }
        let mut victims: Vec<(bool, f64, RuntimeId, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.idle(now))
            .map(|(r, e)| (wanted.contains(r), e.last_used, *r, e.bytes))
            .filter(|v| !v.0)
            .collect();
        victims.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut need = bytes - free;
        let mut take = 0;
        for v in &victims {
            if need == 0 {
                break;
            }
            need = need.saturating_sub(v.3);
            take += 1;
        }
        if need > 0 {
            return false;
        }
        for v in &victims[..take] {
            self.evict(v.2, now);
        }
        true
    }

    /// Drops a runtime; refuses (returns false) while a sandbox uses it or it is warming.
    pub(crate) fn evict(&mut self, r: RuntimeId, now: f64) -> bool {
        match self.entries.get(&r) {
            Some(e) if e.idle(now) => {}
            Some(_) => {
                return false;
            }
            None => return true,
        }
        if let Some(e) = self.entries.remove(&r) {
            self.used_bytes -= e.bytes;
            self.evicted.add(&e);
        }
        true
    }

    pub(crate) fn insert(&mut self, r: RuntimeId, e: Entry) {
        self.used_bytes += e.bytes;
        self.peak_bytes = self.peak_bytes.max(self.used_bytes);
        if e.predicted.is_some() {
            self.peak_after_prediction = self.peak_after_prediction.max(self.used_bytes);
        }
        self.entries.insert(r, e);
    }

    /// The node's upkeep: evicts idle runtimes, unwanted before wanted, least recently used
    /// first, until the total fits the budget (or only live ones are left).
    pub(crate) fn evict_over_budget(&mut self, now: f64, wanted: &HashSet<RuntimeId>) {
        if self.used_bytes <= self.budget {
            return;
        }
        let mut victims: Vec<(bool, f64, RuntimeId)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.idle(now))
            .map(|(r, e)| (wanted.contains(r), e.last_used, *r))
            .collect();
        victims.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        for v in victims {
            if self.used_bytes <= self.budget {
                break;
            }
            self.evict(v.2, now);
        }
        if self.used_bytes > self.budget && self.entries.values().any(|e| e.idle(now)) {
            self.idle_over_budget += 1;
        }
    }
}

/// Several nodes' counters together.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub evicted: Evicted,
    pub peak_bytes: u64,
    pub peak_after_prediction: u64,
    pub idle_over_budget: u64,
}

impl Summary {
    /// Adds a node's counters; predicted warms still unused at the end count as wasted.
    pub(crate) fn add(&mut self, n: &Node) {
        let mut ev = n.evicted;
        for e in n.entries.values() {
            ev.add(e);
        }
        self.evicted.wasted_warms += ev.wasted_warms;
        self.evicted.wasted_secs += ev.wasted_secs;
        self.evicted.wasted_bytes += ev.wasted_bytes;
        self.peak_bytes = self.peak_bytes.max(n.peak_bytes);
        self.peak_after_prediction = self.peak_after_prediction.max(n.peak_after_prediction);
        self.idle_over_budget += n.idle_over_budget;
    }
}
