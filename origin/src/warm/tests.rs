//! In-process tests of the warmer's policies: LRU eviction under the budget, queue priority, registry retries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prewarm_shared::sandbox::{Priority, Status};
use prewarm_shared::{Digest, RuntimeName, RuntimeRef, Tag};

use super::index::{now_ms, RegistryError, RuntimeIndex};
use super::{Ensured, NoRegistry, Registry, RegistryEntry, RuntimeRecord, WarmConfig, Warmer};
use crate::transfer::{Source, TransferError};

/// Has nothing: these tests never get as far as fetching.
struct Empty;

#[async_trait::async_trait]
impl Source for Empty {
    fn location(&self) -> String {
        "nowhere".into()
    }
    async fn resolve_tag(&self, _: &RuntimeName, _: &Tag) -> Result<Digest, TransferError> {
        Err(TransferError::NotFound {
            what: "tag".into(),
            at: self.location(),
        })
    }
    async fn fetch_manifest(&self, _: &Digest) -> Result<Bytes, TransferError> {
        self.resolve_tag(&"x".parse().unwrap(), &"v".parse().unwrap())
            .await
            .map(|_| Bytes::new())
    }
    async fn fetch_block(&self, d: &Digest) -> Result<Bytes, TransferError> {
        self.fetch_manifest(d).await
    }
}

fn warmer(dir: &std::path::Path, budget: u64, registry: Arc<dyn Registry>) -> Warmer {
    let cfg = WarmConfig {
        node_dir: dir.join("node-v1"),
        node_name: "unit".into(),
        workers: 1,
        fetch_concurrency: 1,
        disk_budget: budget,
        warm_command_timeout: Duration::from_secs(1),
        bwrap: "bwrap".into(),
    };
    Warmer::open(cfg, Arc::new(Empty), registry).expect("open node")
}

fn digest(name: &str) -> Digest {
    Digest::of(name.as_bytes())
}

/// Registers a warm runtime of `size` bytes last used at `last_used_ms`, with a tree on disk.
fn install(w: &Warmer, name: &str, size: u64, last_used_ms: u64) -> Digest {
    let d = digest(name);
    let dir = w.runtime_dir(&d);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file"), name).unwrap();
    w.inner.lock_index().insert(RuntimeRecord {
        digest: d,
        runtime: format!("{name}:v1"),
        prefix: format!("/opt/{name}"),
        env: BTreeMap::from([("RT".into(), name.into())]),
        size_bytes: size,
        files: 1,
        warm_ms: 1,
        last_used_ms,
    });
    d
}

/// What is still warm, by the index on disk (what a restarted origin would find).
fn persisted(w: &Warmer, all: &[Digest]) -> Vec<Digest> {
    let index = RuntimeIndex::load(&w.layout().index);
    all.iter()
        .copied()
        .filter(|d| index.get(d).is_some() && w.runtime_dir(d).exists())
        .collect()
}

#[test]
fn eviction_removes_least_recently_used_first_until_within_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let w = warmer(tmp.path(), 250, Arc::new(NoRegistry));
    // Warmed in this order, but b was used longest ago, then c.
    let a = install(&w, "a", 100, 3_000);
    let b = install(&w, "b", 100, 1_000);
    let c = install(&w, "c", 100, 2_000);
    assert_eq!(w.inner.evict_over_budget(), [b]);
    assert_eq!(persisted(&w, &[a, b, c]), [a, c]);
    assert_eq!(w.stats().evictions, 1);
    // Within budget: nothing more goes.
    assert!(w.inner.evict_over_budget().is_empty());
}

#[tokio::test]
async fn eviction_never_takes_a_runtime_a_sandbox_holds_until_released() {
    let tmp = tempfile::tempdir().unwrap();
    let w = warmer(tmp.path(), 50, Arc::new(NoRegistry));
    let a = install(&w, "a", 100, 1_000);
    let b = install(&w, "b", 100, 2_000);
    let (_, hot) = w
        .ensure(&RuntimeRef::Digest(a), Priority::Normal, true)
        .await
        .unwrap();
    assert!(matches!(hot, Ensured::Hot(_)));
    // Over budget even after b goes; a stays, held.
    assert_eq!(w.inner.evict_over_budget(), [b]);
    assert_eq!(persisted(&w, &[a, b]), [a]);
    assert!(w.touch(&a).is_some(), "still usable");
    w.release(&a);
    assert_eq!(w.inner.evict_over_budget(), [a]);
    assert!(persisted(&w, &[a, b]).is_empty());
    assert_eq!(w.stats().warm_runtimes, 0);
}

#[tokio::test]
async fn queue_serves_high_then_normal_then_low_fifo_within_a_priority() {
    let tmp = tempfile::tempdir().unwrap();
    let w = warmer(tmp.path(), u64::MAX, Arc::new(NoRegistry));
    let mut jobs = BTreeMap::new();
    for (name, p) in [
        ("low", Priority::Low),
        ("normal1", Priority::Normal),
        ("high", Priority::High),
        ("normal2", Priority::Normal),
    ] {
        let (_, e) = w
            .ensure(&RuntimeRef::Digest(digest(name)), p, false)
            .await
            .unwrap();
        let Ensured::Warming(job) = e else {
            panic!("{name} is cold")
        };
        jobs.insert(name, job);
    }
    let pos = |n: &str| jobs[n].state().queue_position;
    assert_eq!(
        ["high", "normal1", "normal2", "low"].map(pos),
        [Some(0), Some(1), Some(2), Some(3)]
    );
    // A high request joining the low warm raises it (ahead of the later high: FIFO).
    let (_, joined) = w
        .ensure(&RuntimeRef::Digest(digest("low")), Priority::High, false)
        .await
        .unwrap();
    let Ensured::Warming(joined) = joined else {
        panic!("still warming")
    };
    assert!(Arc::ptr_eq(&joined, &jobs["low"]), "single-flight");
    assert_eq!(pos("low"), Some(0));
    assert_eq!(pos("high"), Some(1));
    assert_eq!(w.stats().queued, 4);
    let mut order = Vec::new();
    for _ in 0..4 {
        let job = w.inner.next_job().await;
        order.push(
            jobs.iter()
                .find(|(_, j)| Arc::ptr_eq(j, &job))
                .unwrap()
                .0
                .to_string(),
        );
    }
    assert_eq!(order, ["low", "high", "normal1", "normal2"]);
    assert_eq!(jobs["normal2"].state().status, Status::Warming);
}

/// Fails its first `fail` publishes, then records.
struct Flaky {
    fail: Mutex<usize>,
    published: Mutex<Vec<RegistryEntry>>,
}

#[async_trait::async_trait]
impl Registry for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    async fn publish(&self, e: &RegistryEntry) -> Result<(), RegistryError> {
        let mut fail = self.fail.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Err(RegistryError {
                backend: "flaky",
                message: "down".into(),
            });
        }
        self.published.lock().unwrap().push(e.clone());
        Ok(())
    }
    async fn withdraw(&self, _: &str, _: &Digest) -> Result<(), RegistryError> {
        Ok(())
    }
}

#[tokio::test]
async fn registry_entries_are_published_on_use_and_retried_after_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Arc::new(Flaky {
        fail: Mutex::new(1),
        published: Mutex::default(),
    });
    let w = warmer(tmp.path(), u64::MAX, reg.clone());
    let a = install(&w, "a", 10, 1_000);
    let before = now_ms();
    w.touch(&a).unwrap();
    w.inner.flush_registry().await;
    assert!(
        reg.published.lock().unwrap().is_empty(),
        "first publish failed"
    );
    w.inner.flush_registry().await;
    let published = reg.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1, "retried once, not lost");
    let e = &published[0];
    assert_eq!(
        (e.runtime.as_str(), e.node.as_str(), e.digest),
        ("a:v1", "unit", a)
    );
    assert!(e.last_used >= before);
    assert_eq!(e.env["RT"], "a");
    assert_eq!(e.mounts[0].target, "/opt/a");
    assert!(e.mounts[0].readonly);
    assert_eq!(e.mounts[0].source, w.runtime_dir(&a).display().to_string());
    // Nothing used since: nothing republished.
    w.inner.flush_registry().await;
    assert_eq!(reg.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn cache_pruning_waits_for_warms_between_fetch_and_link() {
    let tmp = tempfile::tempdir().unwrap();
    let w = warmer(tmp.path(), 50, Arc::new(NoRegistry));
    // One cached file a warm runtime links to, one nothing links to (its runtime was evicted,
    // or a warm just fetched it and has not linked it yet).
    let cache = w.inner.cache.dir().join("files-v1/aa");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("linked.444"), b"kept").unwrap();
    std::fs::write(cache.join("unlinked.444"), b"freed").unwrap();
    let rt = tmp.path().join("rt");
    std::fs::create_dir_all(&rt).unwrap();
    std::fs::hard_link(cache.join("linked.444"), rt.join("f")).unwrap();
    install(&w, "a", 100, 1_000);
    assert_eq!(w.inner.evict_over_budget().len(), 1);

    // A warm holds the gate (fetched, not linked yet): pruning waits for a later round.
    let warm = w.inner.cache_gate.read().await;
    w.inner.prune_cache_if_pending().await;
    assert!(
        cache.join("unlinked.444").exists(),
        "a warm's unlinked file survives"
    );
    drop(warm);
    w.inner.prune_cache_if_pending().await;
    assert!(
        !cache.join("unlinked.444").exists(),
        "pruned once no warm is mid-way"
    );
    assert!(cache.join("linked.444").exists(), "linked files stay");
}
