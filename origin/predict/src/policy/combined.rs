//! `prewarm`: the default policy: expected demand per byte decides what the node keeps, users' sessions and habits what it warms ahead.
//!
//! On a disk budget a warm runtime costs nothing until its bytes are needed, so nothing is
//! let go on a timer; what matters is *which* idle runtime goes when bytes are needed, and
//! which runtime to warm before it is asked for. Both follow one estimate, the starts of a
//! runtime expected in the next few minutes:
//! - **sessions**: a user who just started a sandbox is in a session and likely to start
//!   more ([`Prewarm::CONTINUE`]), each time one of their usual runtimes, in proportion to
//!   their history (user-history's decayed shares). Their usual runtimes are wanted until the
//!   session has been quiet for [`Prewarm::SESSION`]: the one they are not using yet is
//!   warmed ahead (when its share is at least [`Prewarm::MIN_SHARE`]);
//! - **background rate**: every runtime's starts per second, decayed with a one-hour
//!   half-life, over the same horizon;
//! - **habits**: user-history's schedule rule warms, ten minutes before an hour, the runtimes
//!   of users who habitually start them at that hour; its expected starts count until the
//!   want ends.
//!
//! The node evicts the idle runtime with the lowest expected starts per byte first (after
//! Greedy-Dual-Size-Frequency, FaasCache ASPLOS '21: a cold start is one miss whatever its
//! size, and a big runtime's bytes hold several small ones), least recently used among equals,
//! and a warm ahead never evicts a runtime with more expected starts per byte (cost-aware
//! admission). Only the users in a session and two numbers per runtime are kept beyond
//! user-history's bounded memory.

use std::collections::HashMap;

use super::{Plan, Predictor, Usage, UserHistory, Want};
use crate::{RuntimeId, Secs, UserId, HOUR};

/// Expected starts soon, per runtime, from sessions, the background rate and habits.
#[derive(Debug)]
pub struct Prewarm {
    history: UserHistory,
    /// Users in a session: last start, and the shares they add to each runtime's demand.
    active: HashMap<UserId, (Secs, Vec<(RuntimeId, f64)>)>,
    /// Per runtime: the sum of active users' shares.
    session_demand: HashMap<RuntimeId, f64>,
    /// Per runtime: decayed starts and when last decayed.
    rate: HashMap<RuntimeId, (f64, Secs)>,
    /// Per runtime: starts the habit schedule expects, until when.
    scheduled: HashMap<RuntimeId, (f64, Secs)>,
}

impl Prewarm {
    /// A session ends after this long without a start.
    pub const SESSION: Secs = 300;
    /// Chance that a user in a session starts another sandbox.
    pub const CONTINUE: f64 = 11.0 / 12.0;
    /// Smallest share of a user's starts for which their runtime is warmed ahead.
    pub const MIN_SHARE: f64 = 0.1;
    /// Half-life of the background rate.
    pub const RATE_HALF_LIFE: Secs = HOUR;

    /// `budget_runtimes` is kept for the signature all policies share; demand needs no K.
    pub fn new(_budget_runtimes: usize) -> Self {
        Self {
            history: UserHistory::default(),
            active: HashMap::new(),
            session_demand: HashMap::new(),
            rate: HashMap::new(),
            scheduled: HashMap::new(),
        }
    }

    fn rate_at(&self, r: RuntimeId, now: Secs) -> f64 {
        self.rate.get(&r).map_or(0.0, |(v, at)| {
            v * 0.5f64.powf(now.saturating_sub(*at) as f64 / Self::RATE_HALF_LIFE as f64)
        })
    }

    /// Starts of `r` expected in the next [`Prewarm::SESSION`] seconds.
    pub fn demand(&self, now: Secs, r: RuntimeId) -> f64 {
        // A decayed count with half-life h is ≈ rate × h / ln 2.
        let per_sec = self.rate_at(r, now) * std::f64::consts::LN_2 / Self::RATE_HALF_LIFE as f64;
        let session = self.session_demand.get(&r).copied().unwrap_or(0.0).max(0.0);
        let habit = match self.scheduled.get(&r) {
            Some((score, until)) if now < *until => *score,
            _ => 0.0,
        };
        per_sec * Self::SESSION as f64 + session * Self::CONTINUE + habit
    }

    /// Users in a session now (bounded by active users, not all users ever).
    pub fn sessions(&self) -> usize {
        self.active.len()
    }

    fn end_session(&mut self, user: UserId) {
        if let Some((_, shares)) = self.active.remove(&user) {
            for (r, s) in shares {
                if let Some(d) = self.session_demand.get_mut(&r) {
                    *d -= s;
                    if *d <= 1e-9 {
                        self.session_demand.remove(&r);
                    }
                }
            }
        }
    }
}

impl Predictor for Prewarm {
    fn name(&self) -> &'static str {
        "prewarm"
    }

    fn observe(&mut self, u: &Usage) {
        self.history.observe(u);
        let half = Self::RATE_HALF_LIFE as f64;
        let e = self.rate.entry(u.runtime).or_insert((0.0, u.t));
        e.0 = e.0 * 0.5f64.powf(u.t.saturating_sub(e.1) as f64 / half) + 1.0;
        e.1 = u.t;
        // The user's session: their shares count once, refreshed from their history.
        self.end_session(u.user);
        let shares = self.history.usual(u.t, u.user);
        for (r, s) in &shares {
            *self.session_demand.entry(*r).or_default() += s;
        }
        self.active.insert(u.user, (u.t, shares));
    }

    fn on_user(&mut self, now: Secs, user: UserId) -> Vec<Want> {
        // Whether by a start (observed just before) or a hint: the session's usual runtimes.
        let shares = match self.active.get(&user) {
            Some((_, s)) => s.clone(),
            None => self.history.usual(now, user),
        };
        shares
            .into_iter()
            .filter(|(_, s)| *s >= Self::MIN_SHARE)
            .map(|(runtime, share)| Want {
                runtime,
                score: share * Self::CONTINUE,
                rule: super::Rule::UserShowUp,
                until: now + Self::SESSION,
            })
            .collect()
    }

    fn tick(&mut self, now: Secs) -> Plan {
        let quiet: Vec<UserId> = self
            .active
            .iter()
            .filter(|(_, (t, _))| now >= t + Self::SESSION)
            .map(|(u, _)| *u)
            .collect();
        for u in quiet {
            self.end_session(u);
        }
        self.scheduled.retain(|_, (_, until)| now < *until);
        let plan = self.history.tick(now);
        for w in &plan.warm {
            self.scheduled.insert(w.runtime, (w.score, w.until));
        }
        plan
    }

    fn retain_priority(&self, now: Secs, runtime: RuntimeId, bytes: u64) -> Option<f64> {
        Some(self.demand(now, runtime) / bytes.max(1) as f64)
    }
}
