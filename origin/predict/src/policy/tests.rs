//! Policy units: names round-trip, popular's ranking, user-history's shares and forgetting.

use super::*;
use crate::{DAY, HOUR};

fn use_(t: Secs, user: u32, rt: u32) -> Usage {
    Usage {
        t,
        user: UserId(user),
        runtime: RuntimeId(rt),
        hot: false,
    }
}

#[test]
fn policy_names_round_trip_and_unknown_ones_are_named() {
    for k in PolicyKind::ALL {
        assert_eq!(k.as_str().parse::<PolicyKind>().unwrap(), k);
    }
    let e = "lru".parse::<PolicyKind>().unwrap_err().to_string();
    assert!(e.contains("\"lru\"") && e.contains("user-history"), "{e}");
}

#[test]
fn popular_ranks_by_uses_in_the_window_and_refreshes_once_an_hour() {
    let mut p = Popular::new(2, 2);
    for (t, r) in [(10, 1), (20, 1), (30, 2), (40, 3), (50, 3), (60, 3)] {
        p.observe(&use_(t, 0, r));
    }
    let plan = p.tick(HOUR);
    let got: Vec<u32> = plan.warm.iter().map(|w| w.runtime.0).collect();
    assert_eq!(got, vec![3, 1]);
    assert!(plan.warm.iter().all(|w| w.rule == Rule::Popular));
    assert!(p.tick(HOUR + TICK).warm.is_empty());
    // Three hours on, the window (2 h) no longer holds hour 0.
    assert!(p.tick(3 * HOUR).warm.is_empty());
}

#[test]
fn user_history_ranks_by_frequency_and_recency() {
    let mut h = UserHistory::default();
    // Runtime 1 used 5 times 3 weeks ago; runtime 2 used twice yesterday.
    for i in 0..5 {
        h.observe(&use_(i, 7, 1));
    }
    h.observe(&use_(20 * DAY, 7, 2));
    h.observe(&use_(20 * DAY + 1, 7, 2));
    let usual = h.usual(21 * DAY, UserId(7));
    assert_eq!(usual[0].0, RuntimeId(2));
    assert_eq!(usual[1].0, RuntimeId(1));
    let wants = h.on_user(21 * DAY, UserId(7));
    assert_eq!(wants.len(), 2);
    assert_eq!(wants[0].rule, Rule::UserShowUp);
    // A burst of calls is one show-up.
    assert!(h.on_user(21 * DAY + 60, UserId(7)).is_empty());
    assert!(h.on_user(0, UserId(99)).is_empty());
}

#[test]
fn user_history_forgets_users_unseen_for_thirty_days() {
    let mut h = UserHistory::default();
    for u in 0..100 {
        h.observe(&use_(u as Secs, u, 1));
    }
    h.observe(&use_(40 * DAY, 500, 1));
    h.tick(40 * DAY);
    assert_eq!(h.users(), 1);
}

#[test]
fn keepalive_releases_each_runtime_once() {
    let mut k = KeepAlive::new(600);
    k.observe(&use_(0, 0, 1));
    k.observe(&use_(500, 0, 2));
    assert_eq!(k.tick(600).release, vec![RuntimeId(1)]);
    assert!(k.tick(660).release.is_empty());
    assert_eq!(k.tick(1100).release, vec![RuntimeId(2)]);
}
