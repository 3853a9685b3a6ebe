//! `prewarm`: the default policy: the LRU keeps what it has, plus popular runtimes hourly and users' usual runtimes.
//!
//! Nothing is let go on a timer: on a disk budget a warm runtime costs nothing until its
//! bytes are needed, so the LRU retains it (keep-alive's releases only lose hits). On top,
//! it wants the popular top-K of the last hours (K = half of what the budget holds, leaving
//! room for the tail) and user-history's show-up and schedule wants. Scores are expected
//! starts in the next hour for all three, so they rank against each other.

use super::{Plan, Popular, Predictor, Usage, UserHistory, Want};
use crate::{Secs, UserId};

/// Popular + user-history over LRU retention.
#[derive(Debug)]
pub struct Prewarm {
    popular: Popular,
    history: UserHistory,
}

impl Prewarm {
    pub fn new(budget_runtimes: usize) -> Self {
        Self {
            popular: Popular::new((budget_runtimes / 2).max(1), Popular::DEFAULT_WINDOW_HOURS),
            history: UserHistory::default(),
        }
    }
}

impl Predictor for Prewarm {
    fn name(&self) -> &'static str {
        "prewarm"
    }

    fn observe(&mut self, u: &Usage) {
        self.popular.observe(u);
        self.history.observe(u);
    }

    fn on_user(&mut self, now: Secs, user: UserId) -> Vec<Want> {
        self.history.on_user(now, user)
    }

    fn tick(&mut self, now: Secs) -> Plan {
        let mut plan = self.popular.tick(now);
        let h = self.history.tick(now);
        plan.warm.extend(h.warm);
        plan.release.extend(h.release);
        plan
    }
}
