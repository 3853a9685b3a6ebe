//! The virtual-clock simulator: a trace through a policy and a model of the node's warm set, and what users waited.
//!
//! Each create is hot when its runtime is ready, waits for the rest of a warm already under
//! way, or is cold and waits for a whole on-demand warm (durations and sizes from the
//! [`Catalog`]). A sandbox stays live for `session_secs` after it is ready; its runtime cannot
//! be evicted meanwhile. The predictor is ticked every [`TICK`] seconds and told of every
//! create and every user's show-up, exactly as the server tells it; its wants are warmed at
//! low priority (in parallel, without delaying on-demand warms: the node's warmer serves
//! high before low, and the model has no queueing) within the budget. When the policy ranks
//! runtimes ([`Predictor::retain_priority`]) the node evicts in that order, and a predictive
//! warm never evicts a runtime the policy ranks at or above the one it warms.

mod node;
mod report;

use std::collections::{HashMap, HashSet};

pub use report::{Report, RuntimeReport, Work};

use crate::policy::{Plan, PolicyKind, Predictor, Usage, Want, TICK};
use crate::{Catalog, RuntimeId, Secs, Trace, UserId};
use node::{Entry, Node};

/// The simulator's knobs.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Warm-disk budget in bytes.
    pub budget: u64,
    /// How long a sandbox lives after it is ready (its runtime is pinned meanwhile).
    pub session_secs: Secs,
    pub catalog: Catalog,
    /// Nodes the trace's users are spread over (user id modulo nodes: sticky routing); each
    /// has the whole budget and its own predictor, as each server does.
    pub nodes: u32,
}

impl SimOptions {
    /// One-minute sandboxes, one node, the standard catalog.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            session_secs: 60,
            catalog: Catalog::standard(),
            nodes: 1,
        }
    }
}

/// How many runtimes of the trace's mean size the budget holds (popular's K).
pub fn budget_runtimes(trace: &Trace, opts: &SimOptions) -> usize {
    let total = opts.catalog.total_bytes(&trace.runtimes);
    let mean = total as f64 / trace.runtimes.len().max(1) as f64;
    (opts.budget as f64 / mean.max(1.0)).floor() as usize
}

/// Runs `policy` over `trace`, and `none` beside it for the cold starts avoided.
pub fn simulate(trace: &Trace, policy: PolicyKind, opts: &SimOptions) -> Report {
    let mut report = run_nodes(trace, policy, opts);
    let baseline = if policy == PolicyKind::None {
        report.clone()
    } else {
        run_nodes(trace, PolicyKind::None, opts)
    };
    report.set_baseline(&baseline);
    report
}

/// One decision the simulator applied, for comparing runs (and the server) decision by decision.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Decision {
    pub t: Secs,
    pub runtime: String,
    /// `warm`, `release`, or `cold` (an on-demand warm).
    pub action: &'static str,
}

/// Runs `policy` on every node (each its users' events and its own predictor), one report.
fn run_nodes(trace: &Trace, policy: PolicyKind, opts: &SimOptions) -> Report {
    let k = budget_runtimes(trace, opts);
    let nodes = opts.nodes.max(1);
    let mut acc = report::Acc::new(trace.runtimes.len());
    let mut sum = node::Summary::default();
    let mut name = "";
    for i in 0..nodes {
        let mut p = policy.build(k);
        let mut sim = Sim::new(trace, p.as_mut(), opts, false);
        sim.acc = acc;
        sim.replay(|u| u.0 % nodes == i);
        sum.add(&sim.node);
        acc = sim.acc;
        name = policy.as_str();
    }
    acc.finish(name, trace, opts.budget, &sum)
}

/// Runs any predictor over the whole `trace` on one node (no baseline).
pub fn run(trace: &Trace, predictor: &mut dyn Predictor, opts: &SimOptions) -> Report {
    decisions(trace, predictor, opts).0
}

/// Runs a predictor over the whole trace on one node and returns its decisions in order, for
/// agreement tests.
pub fn decisions(
    trace: &Trace,
    predictor: &mut dyn Predictor,
    opts: &SimOptions,
) -> (Report, Vec<Decision>) {
    let mut sim = Sim::new(trace, predictor, opts, true);
    sim.replay(|_| true);
    let mut sum = node::Summary::default();
    sum.add(&sim.node);
    let name = sim.p.name();
    let acc = std::mem::replace(&mut sim.acc, report::Acc::new(0));
    (acc.finish(name, trace, opts.budget, &sum), sim.log)
}

struct Sim<'a> {
    trace: &'a Trace,
    p: &'a mut dyn Predictor,
    opts: &'a SimOptions,
    node: Node,
    /// Runtime → protected until (a prediction wants it).
    wanted: HashMap<RuntimeId, Secs>,
    /// Releases refused while live, retried every tick.
    pending_release: HashSet<RuntimeId>,
    specs: Vec<(u64, f64)>,
    acc: report::Acc,
    log_on: bool,
    log: Vec<Decision>,
}

impl<'a> Sim<'a> {
    fn new(trace: &'a Trace, p: &'a mut dyn Predictor, opts: &'a SimOptions, log_on: bool) -> Self {
        let specs = trace
            .runtimes
            .iter()
            .map(|n| {
                let s = opts.catalog.spec(n);
                (s.bytes, s.warm_secs)
            })
            .collect();
        Self {
            trace,
            p,
            opts,
            node: Node::new(opts.budget),
            wanted: HashMap::new(),
            pending_release: HashSet::new(),
            specs,
            acc: report::Acc::new(trace.runtimes.len()),
            log_on,
            log: Vec::new(),
        }
    }

    /// Replays the events of the users `mine` selects.
    fn replay(&mut self, mine: impl Fn(UserId) -> bool) {
        let trace = self.trace;
        let mut events = trace.events.iter().filter(|e| mine(e.user)).peekable();
        let Some(first) = events.peek() else { return };
        let mut next_tick = first.t / TICK * TICK;
        for ev in events {
            while next_tick <= ev.t {
                let plan = self.p.tick(next_tick);
                self.apply(plan, next_tick);
                next_tick += TICK;
            }
            let hot = self.create(ev.t, ev.runtime);
            self.p.observe(&Usage {
                t: ev.t,
                user: ev.user,
                runtime: ev.runtime,
                hot,
            });
            let wants = self.p.on_user(ev.t, ev.user);
            self.want(wants, ev.t);
        }
    }

    fn note(&mut self, t: Secs, r: RuntimeId, action: &'static str) {
        if self.log_on {
            self.log.push(Decision {
                t,
                runtime: self.trace.runtime_name(r).to_owned(),
                action,
            });
        }
    }

    /// A sandbox create: returns whether it was hot.
    fn create(&mut self, t: Secs, r: RuntimeId) -> bool {
        let now = t as f64;
        let (bytes, warm_secs) = self.specs[r.0 as usize];
        let session = self.opts.session_secs as f64;
        let wait;
        if let Some(e) = self.node.entries.get_mut(&r) {
            wait = (e.ready_at - now).max(0.0);
            if e.predicted.is_some() && !e.used {
                self.acc.predicted_used += 1;
            }
            e.used = true;
            e.last_used = now;
            e.live_until = e.live_until.max(now + wait + session);
        } else {
            wait = warm_secs;
            if self.node.live_bytes(now) + bytes > self.opts.budget {
                self.acc.pinned_out += 1;
            }
            self.acc.warm.add(warm_secs, bytes);
            self.note(t, r, "cold");
            self.node.insert(
                r,
                Entry {
                    bytes,
                    warm_secs,
                    ready_at: now + warm_secs,
                    last_used: now,
                    live_until: now + warm_secs + session,
                    predicted: None,
                    used: true,
                },
            );
            self.upkeep(t);
        }
        let hot = wait == 0.0;
        self.acc.record(r, wait, hot);
        hot
    }

    /// The node's eviction down to the budget, in the policy's retain order; tells the policy.
    fn upkeep(&mut self, t: Secs) {
        let wanted = self.wanted_now(t);
        let p = &*self.p;
        let rank = |r: RuntimeId, b: u64| p.retain_priority(t, r, b).unwrap_or(0.0);
        let gone = self.node.evict_over_budget(t as f64, &wanted, &rank);
        for r in gone {
            self.p.evicted(t, r, self.specs[r.0 as usize].0);
        }
    }

    fn wanted_now(&self, t: Secs) -> HashSet<RuntimeId> {
        self.wanted
            .iter()
            .filter(|(_, until)| **until > t)
            .map(|(r, _)| *r)
            .collect()
    }

    fn apply(&mut self, plan: Plan, t: Secs) {
        let now = t as f64;
        self.upkeep(t);
        for r in plan.release {
            self.wanted.remove(&r);
            self.pending_release.insert(r);
        }
        let mut pending: Vec<RuntimeId> = self.pending_release.iter().copied().collect();
        pending.sort();
        for r in pending {
            if !self.node.entries.contains_key(&r) {
                self.pending_release.remove(&r);
            } else if self.node.evict(r, now) {
                self.pending_release.remove(&r);
                self.p.evicted(t, r, self.specs[r.0 as usize].0);
                self.note(t, r, "release");
            }
        }
        self.want(plan.warm, t);
        if t.is_multiple_of(crate::HOUR) {
            self.wanted.retain(|_, until| *until > t);
        }
    }

    fn want(&mut self, mut wants: Vec<Want>, t: Secs) {
        if wants.is_empty() {
            return;
        }
        let now = t as f64;
        wants.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.runtime.cmp(&b.runtime)));
        // First protect every want, so warming one does not evict another.
        for w in &wants {
            self.pending_release.remove(&w.runtime);
            let u = self.wanted.entry(w.runtime).or_insert(w.until);
            *u = (*u).max(w.until);
        }
        let protected = self.wanted_now(t);
        let mut batch_bytes = 0u64;
        for w in wants {
            let (bytes, warm_secs) = self.specs[w.runtime.0 as usize];
            batch_bytes += bytes;
            if self.node.entries.contains_key(&w.runtime) {
                continue;
            }
            if batch_bytes > self.opts.budget {
                continue;
            }
            let p = &*self.p;
            let rank = |r: RuntimeId, b: u64| p.retain_priority(t, r, b).unwrap_or(0.0);
            // A policy that ranks runtimes never evicts one it ranks higher to warm this one.
            let floor = p.retain_priority(t, w.runtime, bytes);
            let Some(gone) = self.node.make_room(bytes, now, &protected, &rank, floor) else {
                continue;
            };
            for r in gone {
                self.p.evicted(t, r, self.specs[r.0 as usize].0);
            }
            self.acc.warm.add(warm_secs, bytes);
            self.acc.predicted_warms += 1;
            self.note(t, w.runtime, "warm");
            self.node.insert(
                w.runtime,
                Entry {
                    bytes,
                    warm_secs,
                    ready_at: now + warm_secs,
                    last_used: now,
                    live_until: 0.0,
                    predicted: Some(w.rule),
                    used: false,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;
