//! The simulator's node: warm runtimes under a byte budget, LRU eviction that never touches a live sandbox's runtime.
//!
//! It stands for the node's warmer and LRU (`origin/node/src/warm/maintain.rs`): an on-demand
//! warm always proceeds, then idle runtimes are evicted (ones a prediction still wants last; by
//! the policy's retain priority when it has one, else least recently used first) until the total fits; when live sandboxes pin more than the budget the
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
    pub(crate) fn make_room(
        &mut self,
        bytes: u64,
        now: f64,
        wanted: &HashSet<RuntimeId>,
        rank: &dyn Fn(RuntimeId, u64) -> f64,
        floor: Option<f64>,
    ) -> Option<Vec<RuntimeId>> {
        if bytes > self.budget || self.used_bytes > self.budget {
            return None;
        }
        let free = self.budget - self.used_bytes;
        if free >= bytes {
            return Some(Vec::new());
        }
        let victims: Vec<(RuntimeId, u64)> = self
            .victims(now, wanted, rank)
            .into_iter()
            .filter(|v| !v.0 && floor.is_none_or(|f| rank(v.1, v.2) < f))
            .map(|v| (v.1, v.2))
            .collect();
        let mut need = bytes - free;
        let mut take = 0;
        for v in &victims {
            if need == 0 {
                break;
            }
            need = need.saturating_sub(v.1);
            take += 1;
        }
        if need > 0 {
            return None;
        }
        let gone: Vec<RuntimeId> = victims[..take].iter().map(|v| v.0).collect();
        for r in &gone {
            self.evict(*r, now);
        }
        Some(gone)
    }

    /// Idle runtimes in eviction order: unwanted before wanted, then the policy's retain
    /// priority (lowest first), then least recently used; each with whether it is wanted.
    fn victims(
        &self,
        now: f64,
        wanted: &HashSet<RuntimeId>,
        rank: &dyn Fn(RuntimeId, u64) -> f64,
    ) -> Vec<(bool, RuntimeId, u64)> {
        let mut v: Vec<(bool, f64, f64, RuntimeId, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.idle(now))
            .map(|(r, e)| {
                (
                    wanted.contains(r),
                    rank(*r, e.bytes),
                    e.last_used,
                    *r,
                    e.bytes,
                )
            })
            .collect();
        v.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        v.into_iter().map(|x| (x.0, x.3, x.4)).collect()
    }

    /// Bytes of runtimes a live sandbox uses or a warm is under way for: what no eviction can free now.
    pub(crate) fn live_bytes(&self, now: f64) -> u64 {
        self.entries
            .values()
            .filter(|e| !e.idle(now))
            .map(|e| e.bytes)
            .sum()
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

    /// The node's upkeep: evicts idle runtimes, unwanted before wanted, in the policy's retain
    /// order, least recently used first among equals, until the total fits the budget (or only live ones are left).
    /// Returns what it evicted.
    pub(crate) fn evict_over_budget(
        &mut self,
        now: f64,
        wanted: &HashSet<RuntimeId>,
        rank: &dyn Fn(RuntimeId, u64) -> f64,
    ) -> Vec<RuntimeId> {
        let mut gone = Vec::new();
        if self.used_bytes <= self.budget {
            return gone;
        }
        for v in self.victims(now, wanted, rank) {
            if self.used_bytes <= self.budget {
                break;
            }
            if self.evict(v.1, now) {
                gone.push(v.1);
            }
        }
        if self.used_bytes > self.budget && self.entries.values().any(|e| e.idle(now)) {
            self.idle_over_budget += 1;
        }
        gone
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
