//! `user-history`: warm a user's usual runtimes when they show up, and ahead of the hours they habitually start at.
//!
//! Per user and runtime it keeps a use count that decays with a half-life (frequency and
//! recency in one number) and, per hour of the day, on how many distinct days the user
//! started that runtime then. When the user shows up (any call, or a hint) their top runtimes
//! are wanted; ten minutes before each hour, the runtimes of users who started them at that
//! hour on at least 2 days and on at least 30 % of their active days are wanted. Users unseen
//! for 30 days are forgotten, so memory follows active users, not all users ever.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Plan, Predictor, Rule, Usage, Want, TICK};
use crate::{RuntimeId, Secs, UserId, DAY, HOUR};

#[derive(Debug, Default)]
struct RuntimeRec {
    /// Uses, decayed to `at`.
    score: f64,
    at: Secs,
    /// Distinct days with a start in each hour of the day.
    days_at_hour: [u16; 24],
    last_day_at_hour: [u32; 24],
}

#[derive(Debug, Default)]
struct UserRec {
    last_seen: Secs,
    last_day: u32,
    active_days: u32,
    last_showup_want: Option<Secs>,
    runtimes: HashMap<RuntimeId, RuntimeRec>,
}

/// Per-user frequency + recency, and hour-of-day habits.
#[derive(Debug)]
pub struct UserHistory {
    pub half_life: Secs,
    /// Runtimes wanted per show-up.
    pub top_n: usize,
    /// How long before a habitual hour its runtimes are warmed.
    pub lead: Secs,
    pub min_days: u16,
    pub min_share: f64,
    pub forget_after: Secs,
    users: HashMap<UserId, UserRec>,
    /// Hour of day → (user, runtime) pairs with a habit at that hour.
    by_hour: Vec<HashSet<(UserId, RuntimeId)>>,
    last_forget: Secs,
}

impl Default for UserHistory {
    fn default() -> Self {
        Self {
            half_life: 7 * DAY,
            top_n: 2,
            lead: 10 * 60,
            min_days: 2,
            min_share: 0.3,
            forget_after: 30 * DAY,
            users: HashMap::new(),
            by_hour: vec![HashSet::new(); 24],
            last_forget: 0,
        }
    }
}

impl UserHistory {
    fn decayed(&self, r: &RuntimeRec, now: Secs) -> f64 {
        r.score * 0.5f64.powf(now.saturating_sub(r.at) as f64 / self.half_life as f64)
    }

    /// Number of users remembered (bounded by activity, see the module doc).
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// The user's usual runtimes, best first: (runtime, share of the user's decayed uses).
    pub fn usual(&self, now: Secs, user: UserId) -> Vec<(RuntimeId, f64)> {
        let Some(rec) = self.users.get(&user) else {
            return Vec::new();
        };
        let mut v: Vec<(RuntimeId, f64)> = rec
            .runtimes
            .iter()
            .map(|(r, rr)| (*r, self.decayed(rr, now)))
            .collect();
        let total: f64 = v.iter().map(|x| x.1).sum();
        if total <= 0.0 {
            return Vec::new();
        }
        for x in &mut v {
            x.1 /= total;
        }
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(self.top_n);
        v
    }

    /// Runtimes expected at the hour starting `lead` after `now`, with the expected starts.
    pub fn scheduled(&self, now: Secs) -> Vec<Want> {
        let hour = (((now + self.lead) / HOUR) % 24) as usize;
        let mut expected: BTreeMap<RuntimeId, f64> = BTreeMap::new();
        for (u, r) in &self.by_hour[hour] {
            let Some(rec) = self.users.get(u) else {
                continue;
            };
            let Some(rr) = rec.runtimes.get(r) else {
                continue;
            };
            let share = rr.days_at_hour[hour] as f64 / rec.active_days.max(1) as f64;
            if share >= self.min_share {
                *expected.entry(*r).or_default() += share;
            }
        }
        expected
            .into_iter()
            .map(|(runtime, score)| Want {
                runtime,
                score,
                rule: Rule::UserSchedule,
                until: now + self.lead + HOUR,
            })
            .collect()
    }

    fn forget(&mut self, now: Secs) {
        let cutoff = now.saturating_sub(self.forget_after);
        let gone: Vec<UserId> = self
            .users
            .iter()
            .filter(|(_, r)| r.last_seen < cutoff)
            .map(|(u, _)| *u)
            .collect();
        for u in gone {
            self.users.remove(&u);
        }
        let users = &self.users;
        for set in &mut self.by_hour {
            set.retain(|(u, _)| users.contains_key(u));
        }
    }
}

impl Predictor for UserHistory {
    fn name(&self) -> &'static str {
        "user-history"
    }

    fn observe(&mut self, u: &Usage) {
        let day = (u.t / DAY) as u32;
        let hour = ((u.t / HOUR) % 24) as usize;
        let half_life = self.half_life;
        let rec = self.users.entry(u.user).or_default();
        if rec.active_days == 0 || rec.last_day != day {
            rec.active_days += 1;
            rec.last_day = day;
        }
        rec.last_seen = u.t;
        let rr = rec.runtimes.entry(u.runtime).or_default();
        rr.score =
            rr.score * 0.5f64.powf(u.t.saturating_sub(rr.at) as f64 / half_life as f64) + 1.0;
        rr.at = u.t;
        if rr.days_at_hour[hour] == 0 || rr.last_day_at_hour[hour] != day {
            rr.days_at_hour[hour] += 1;
            rr.last_day_at_hour[hour] = day;
            if rr.days_at_hour[hour] >= self.min_days {
                self.by_hour[hour].insert((u.user, u.runtime));
            }
        }
    }

    fn on_user(&mut self, now: Secs, user: UserId) -> Vec<Want> {
        // One answer per user per 10 minutes: a burst of calls is one show-up.
        match self.users.get(&user).and_then(|r| r.last_showup_want) {
            Some(t) if now < t + 10 * 60 => return Vec::new(),
            _ => {}
        }
        let wants: Vec<Want> = self
            .usual(now, user)
            .into_iter()
            .map(|(runtime, share)| Want {
                runtime,
                score: share,
                rule: Rule::UserShowUp,
                until: now + HOUR,
            })
            .collect();
        if let Some(r) = self.users.get_mut(&user) {
            r.last_showup_want = Some(now);
        }
        wants
    }

    fn tick(&mut self, now: Secs) -> Plan {
        if now >= self.last_forget + DAY {
            self.forget(now);
            self.last_forget = now;
        }
        // Once per hour, `lead` before it.
        if (now + self.lead) % HOUR >= TICK {
            return Plan::default();
        }
        Plan {
            warm: self.scheduled(now),
            release: Vec::new(),
        }
    }
}
