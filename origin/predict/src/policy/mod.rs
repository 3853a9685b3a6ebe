//! The `Predictor` trait and its policies: what to warm before it is asked for, and what to let go.
//!
//! A predictor sees every sandbox create ([`Predictor::observe`]), is told when a user shows up
//! ([`Predictor::on_user`]: any call, or a hint), and is ticked on a clock
//! ([`Predictor::tick`]). It answers with [`Want`]s (warm this runtime, with a score and the rule
//! that fired) and releases. It never warms or evicts itself: the caller (the simulator's
//! node model, or the server's warmer and LRU) applies the plan within the warm-disk budget,
//! at low priority, and never evicts a runtime a live sandbox uses.
//!
//! # Contract
//! Calls come in clock order. A policy is deterministic: the same calls give the same plans,
//! which is what lets the simulator stand for the server.

mod combined;
mod history;
mod hybrid;
mod keepalive;
mod popular;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub use combined::Prewarm;
pub use history::UserHistory;
pub use hybrid::Hybrid;
pub use keepalive::KeepAlive;
pub use popular::Popular;

use crate::{PredictError, RuntimeId, Secs, UserId};

/// One sandbox create, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub t: Secs,
    pub user: UserId,
    pub runtime: RuntimeId,
    /// Whether the runtime was ready when asked for.
    pub hot: bool,
}

/// Why a runtime is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Used within the fixed keep-alive window.
    KeepAlive,
    /// Among the top-K runtimes of the last hours.
    Popular,
    /// A usual runtime of a user who just showed up or hinted.
    UserShowUp,
    /// Users who habitually start at this hour of the day are about to.
    UserSchedule,
    /// Inside the runtime's pre-warm → keep-alive window from its idle-time histogram.
    IdleHistogram,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::KeepAlive => "keep-alive",
            Rule::Popular => "popular",
            Rule::UserShowUp => "user-show-up",
            Rule::UserSchedule => "user-schedule",
            Rule::IdleHistogram => "idle-histogram",
        })
    }
}

/// "Have this runtime warm": higher scores first when the budget cannot hold them all.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Want {
    pub runtime: RuntimeId,
    /// Expected uses soon (policy-specific, comparable within a policy).
    pub score: f64,
    pub rule: Rule,
    /// Until when the want holds (the caller protects the runtime from predictive evictions
    /// until then).
    pub until: Secs,
}

/// What a tick decides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub warm: Vec<Want>,
    /// Runtimes to let go now (the caller skips any a live sandbox uses).
    pub release: Vec<RuntimeId>,
}

/// A warming policy. See the module's contract.
pub trait Predictor: Send {
    /// The policy's name, as in the config and `--policy`.
    fn name(&self) -> &'static str;
    /// Records a sandbox create.
    fn observe(&mut self, u: &Usage);
    /// A user showed up (any call) or hinted: runtimes to warm now for them.
    fn on_user(&mut self, _now: Secs, _user: UserId) -> Vec<Want> {
        Vec::new()
    }
    /// Called every [`TICK`] seconds of the clock.
    fn tick(&mut self, now: Secs) -> Plan;
    /// When the node must evict idle runtimes, how much this policy wants to keep `runtime`
    /// (`bytes` on the warm disk): the lowest goes first, ties (and `None`: no opinion, the
    /// default) least recently used first. Runtimes a [`Want`] protects still go after all
    /// others, and a live sandbox's runtime never goes.
    fn retain_priority(&self, _now: Secs, _runtime: RuntimeId, _bytes: u64) -> Option<f64> {
        None
    }
    /// The node evicted `runtime` (for policies that age their priorities by what they evict).
    fn evicted(&mut self, _now: Secs, _runtime: RuntimeId, _bytes: u64) {}
}

/// How often a predictor is ticked, in seconds of its clock.
pub const TICK: Secs = 60;

/// The policies, by config / `--policy` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    None,
    Keepalive,
    Popular,
    UserHistory,
    Hybrid,
    Prewarm,
}

impl PolicyKind {
    /// Every policy, baseline first.
    pub const ALL: [PolicyKind; 6] = [
        PolicyKind::None,
        PolicyKind::Keepalive,
        PolicyKind::Popular,
        PolicyKind::UserHistory,
        PolicyKind::Hybrid,
        PolicyKind::Prewarm,
    ];

    /// The name in the config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::None => "none",
            PolicyKind::Keepalive => "keepalive",
            PolicyKind::Popular => "popular",
            PolicyKind::UserHistory => "user-history",
            PolicyKind::Hybrid => "hybrid",
            PolicyKind::Prewarm => "prewarm",
        }
    }

    /// A fresh predictor of this kind with its default parameters. `budget_runtimes` is how
    /// many runtimes of typical size the budget holds (popular's K).
    pub fn build(self, budget_runtimes: usize) -> Box<dyn Predictor> {
        match self {
            PolicyKind::None => Box::new(NoPrediction),
            PolicyKind::Keepalive => Box::new(KeepAlive::new(KeepAlive::DEFAULT_TTL)),
            PolicyKind::Popular => Box::new(Popular::new(
                budget_runtimes.max(1),
                Popular::DEFAULT_WINDOW_HOURS,
            )),
            PolicyKind::UserHistory => Box::new(UserHistory::default()),
            PolicyKind::Hybrid => Box::new(Hybrid::default()),
            PolicyKind::Prewarm => Box::new(Prewarm::new(budget_runtimes.max(1))),
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PolicyKind {
    type Err = PredictError;
    fn from_str(s: &str) -> Result<Self, PredictError> {
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| PredictError::UnknownPolicy(s.to_owned()))
    }
}

/// `none`: on demand only (the LRU keeps what was warmed until the budget needs the bytes).
#[derive(Debug, Default)]
pub struct NoPrediction;

impl Predictor for NoPrediction {
    fn name(&self) -> &'static str {
        "none"
    }
    fn observe(&mut self, _u: &Usage) {}
    fn tick(&mut self, _now: Secs) -> Plan {
        Plan::default()
    }
}

#[cfg(test)]
mod tests;
