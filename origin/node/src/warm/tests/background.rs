//! Background (predicted) warms: their own worker, room made only from idle runtimes nobody wants, releases refused under a sandbox.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use prewarm_shared::sandbox::Priority;
use prewarm_shared::RuntimeRef;

use super::{digest, install, warmer};
use crate::warm::background::Background;
use crate::warm::{Ensured, NoRegistry};
use prewarm_shared::Digest;

/// Which of `all` are warm: in the index, with their tree on disk.
fn persisted(w: &crate::warm::Warmer, all: &[Digest]) -> Vec<Digest> {
    all.iter()
        .copied()
        .filter(|d| w.warm_bytes_of(d).is_some() && w.runtime_dir(d).exists())
        .collect()
}

/// Whether `next_job(background)` has a job for its worker right now (polled once).
async fn takes(w: &crate::warm::Warmer, background: bool) -> Option<Arc<crate::warm::Job>> {
    // A zero timeout polls the future once before looking at the clock.
    tokio::time::timeout(Duration::ZERO, w.inner.next_job(background))
        .await
        .ok()
}

#[tokio::test]
async fn a_user_worker_never_takes_a_background_warm_until_a_user_joins_it() {
    let tmp = tempfile::tempdir().unwrap();
    let w = warmer(tmp.path(), u64::MAX, Arc::new(NoRegistry));
    let bg = digest("predicted");
    let Background::Queued(job) = w.warm_background(bg, &RuntimeRef::Digest(bg), 10, 0, None)
    else {
        panic!("room for it")
    };
    assert!(job.is_background());
    let (_, e) = w
        .ensure(&RuntimeRef::Digest(digest("user")), Priority::Normal, false)
        .await
        .unwrap();
    let Ensured::Warming(user) = e else {
        panic!("cold")
    };
    // The user's warm goes to a user worker; the background one is left to its own worker.
    assert!(Arc::ptr_eq(&takes(&w, false).await.unwrap(), &user));
    assert!(takes(&w, false).await.is_none(), "no user worker takes it");
    // A create asking for it joins it: now it is a user's warm like any other.
    let (_, e) = w
        .ensure(&RuntimeRef::Digest(bg), Priority::Normal, true)
        .await
        .unwrap();
    let Ensured::Warming(joined) = e else {
        panic!("still queued")
    };
    assert!(Arc::ptr_eq(&joined, &job) && !job.is_background());
    assert!(Arc::ptr_eq(&takes(&w, false).await.unwrap(), &job));
    // Once queued, a second prediction of it does nothing.
    assert!(matches!(
        w.warm_background(bg, &RuntimeRef::Digest(bg), 10, 0, None),
        Background::Warming
    ));
}

#[tokio::test]
async fn the_background_worker_takes_only_background_warms() {
    let tmp = tempfile::tempdir().unwrap();
    let w = warmer(tmp.path(), u64::MAX, Arc::new(NoRegistry));
    w.ensure(&RuntimeRef::Digest(digest("user")), Priority::High, false)
        .await
        .unwrap();
    assert!(takes(&w, true).await.is_none(), "a user's warm is not its");
    let bg = digest("predicted");
    w.warm_background(bg, &RuntimeRef::Digest(bg), 10, 0, None);
    assert_eq!(takes(&w, true).await.unwrap().digest, bg);
}

#[tokio::test]
async fn room_is_made_only_from_idle_runtimes_no_prediction_wants() {
    let tmp = tempfile::tempdir().unwrap();
    let w = warmer(tmp.path(), 250, Arc::new(NoRegistry));
    let a = install(&w, "a", 100, 1_000);
    let b = install(&w, "b", 100, 2_000);
    let c = digest("c");
    // a is under a sandbox, b is wanted: nothing may go, so nothing is queued or evicted.
    w.ensure(&RuntimeRef::Digest(a), Priority::Normal, true)
        .await
        .unwrap();
    w.set_wanted(HashSet::from([b]));
    assert!(matches!(
        w.warm_background(c, &RuntimeRef::Digest(c), 100, 0, None),
        Background::NoRoom
    ));
    assert_eq!(persisted(&w, &[a, b]), [a, b]);
    assert_eq!(w.stats().queued, 0);
    // Bytes of predicted warms still under way count as taken.
    w.set_wanted(HashSet::new());
    assert!(matches!(
        w.warm_background(c, &RuntimeRef::Digest(c), 100, 200, None),
        Background::NoRoom
    ));
    // b no longer wanted: it makes room (a, older but live, stays).
    assert!(matches!(
        w.warm_background(c, &RuntimeRef::Digest(c), 100, 0, None),
        Background::Queued(_)
    ));
    assert_eq!(persisted(&w, &[a, b]), [a]);
    // A release never takes a live runtime; once its sandbox is gone it does.
    assert!(!w.evict(&a));
    assert_eq!(persisted(&w, &[a]), [a]);
    w.release(&a);
    assert!(w.evict(&a));
    assert!(persisted(&w, &[a]).is_empty());
    // Nor one that is warming.
    assert!(!w.evict(&c));
}

#[tokio::test]
async fn the_lru_evicts_wanted_runtimes_after_every_other_idle_one() {
    let tmp = tempfile::tempdir().unwrap();
    let w = warmer(tmp.path(), 250, Arc::new(NoRegistry));
    let a = install(&w, "a", 100, 1_000);
    let b = install(&w, "b", 100, 2_000);
    let c = install(&w, "c", 100, 3_000);
    w.set_wanted(HashSet::from([a]));
    // a is least recently used, but wanted: b goes.
    assert_eq!(w.inner.evict_over_budget(), [b]);
    assert_eq!(persisted(&w, &[a, b, c]), [a, c]);
}

#[tokio::test]
async fn a_ranking_policy_orders_eviction_and_a_warm_ahead_never_evicts_a_runtime_ranked_higher() {
    let tmp = tempfile::tempdir().unwrap();
    let w = warmer(tmp.path(), 250, Arc::new(NoRegistry));
    let a = install(&w, "a", 100, 1_000);
    let b = install(&w, "b", 100, 2_000);
    let c = install(&w, "c", 100, 3_000);
    // a is least recently used, but the policy ranks it highest: b, the lowest, goes.
    w.set_ranks(std::collections::HashMap::from([
        (a, 5.0),
        (b, 1.0),
        (c, 2.0),
    ]));
    assert_eq!(w.inner.evict_over_budget(), [b]);
    // A warm-ahead ranked 3 may evict c (2), not a (5).
    let d = digest("d");
    assert!(matches!(
        w.warm_background(d, &RuntimeRef::Digest(d), 100, 0, Some(3.0)),
        Background::Queued(_)
    ));
    assert_eq!(persisted(&w, &[a, b, c]), [a]);
    // One ranked 1 would need a gone: no room.
    let e = digest("e");
    assert!(matches!(
        w.warm_background(e, &RuntimeRef::Digest(e), 200, 0, Some(1.0)),
        Background::NoRoom
    ));
    assert_eq!(persisted(&w, &[a]), [a]);
    // A policy that does not rank (no floor, no ranks): recency alone, and a goes.
    w.set_ranks(Default::default());
    assert!(matches!(
        w.warm_background(e, &RuntimeRef::Digest(e), 200, 0, None),
        Background::Queued(_)
    ));
    assert!(persisted(&w, &[a]).is_empty());
}
