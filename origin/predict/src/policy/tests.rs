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

#[test]
fn prewarm_counts_a_session_until_it_has_been_quiet_then_only_the_rate() {
    let mut p = Prewarm::new(4);
    // Eve: runtime 1 four times, runtime 2 once (shares 0.8 / 0.2), all at t = 0..5.
    for (t, r) in [(0, 1), (1, 1), (2, 2), (3, 1), (4, 1)] {
        p.observe(&use_(t, 7, r));
    }
    let in_session = p.demand(10, RuntimeId(2));
    assert_eq!(p.sessions(), 1);
    // Her session counts her share of runtime 2 (0.2 × 11/12) on top of its rate.
    assert!(in_session > 0.18, "{in_session}");
    p.tick(4 + Prewarm::SESSION);
    assert_eq!(p.sessions(), 0);
    let after = p.demand(4 + Prewarm::SESSION, RuntimeId(2));
    assert!(after < in_session - 0.15 && after > 0.0, "{after}");
    // A show-up wants both of her usual runtimes for the session, the main one first.
    let wants = p.on_user(1000, UserId(7));
    let got: Vec<u32> = wants.iter().map(|w| w.runtime.0).collect();
    assert_eq!(got, vec![1, 2]);
    assert!(wants.iter().all(|w| w.until == 1000 + Prewarm::SESSION));
    // A stranger has no usual runtimes.
    assert!(p.on_user(1000, UserId(8)).is_empty());
}

#[test]
fn prewarm_ranks_by_expected_starts_per_byte() {
    let mut p = Prewarm::new(4);
    // Runtimes 1 and 2 used equally, long ago (no session left).
    for i in 0..4 {
        p.observe(&use_(i, i as u32, 1));
        p.observe(&use_(i, 10 + i as u32, 2));
    }
    let now = 2 * HOUR;
    p.tick(now);
    let small = p.retain_priority(now, RuntimeId(1), 100).unwrap();
    let big = p.retain_priority(now, RuntimeId(2), 200).unwrap();
    assert!(big < small, "{big} {small}");
    // Never used: nothing expected.
    assert_eq!(p.retain_priority(now, RuntimeId(3), 100), Some(0.0));
    // The other policies have no opinion: the node's LRU decides.
    for k in [
        PolicyKind::None,
        PolicyKind::Keepalive,
        PolicyKind::UserHistory,
    ] {
        assert_eq!(k.build(4).retain_priority(now, RuntimeId(1), 100), None);
    }
}
