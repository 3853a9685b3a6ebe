//! In-process tests of the warmer: LRU eviction under the budget, queue priority, the registry, progress, learned estimates.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prewarm_shared::sandbox::{Priority, Status, Step, WarmState};
use prewarm_shared::{Chunk, Digest, Entry, Manifest, RuntimeName, RuntimeRef, Tag};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::estimate::Estimator;
use super::index::{now_ms, RegistryError, RuntimeIndex};
use super::{
    Ensured, JailTools, Job, NoRegistry, Registry, RegistryEntry, RuntimeRecord, WarmConfig, Warmer,
};
use prewarm_client::transfer::{Fetched, Source, TransferError};

mod background;

/// Serves the manifests, blocks and tags put in it, and nothing else: most of these tests
/// never get as far as fetching.
#[derive(Default)]
struct Served {
    manifests: HashMap<Digest, Bytes>,
    blocks: HashMap<Digest, Bytes>,
    /// `name:tag` → manifest digest.
    tags: HashMap<String, Digest>,
}

impl Served {
    fn not_found(&self, what: String) -> TransferError {
        TransferError::NotFound {
            what,
            at: self.location(),
        }
    }

    /// Makes `reference` (`name:tag`) resolve to this source's only manifest.
    fn tagged(mut self, reference: &str) -> Self {
        let [d] = self.manifests.keys().copied().collect::<Vec<_>>()[..] else {
            panic!("tag a source of one manifest")
        };
        self.tags.insert(reference.into(), d);
        self
    }

    /// Serves `other`'s manifests, blocks and tags as well.
    fn and(mut self, other: Served) -> Self {
        self.manifests.extend(other.manifests);
        self.blocks.extend(other.blocks);
        self.tags.extend(other.tags);
        self
    }

    fn manifest(&self, reference: &str) -> (Digest, Manifest) {
        let d = self.tags[reference];
        (d, Manifest::parse(&self.manifests[&d]).unwrap())
    }
}

#[async_trait::async_trait]
impl Source for Served {
    fn location(&self) -> String {
        "served".into()
    }
    async fn resolve_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Digest, TransferError> {
        let reference = format!("{name}:{tag}");
        let found = self.tags.get(&reference).copied();
        found.ok_or_else(|| self.not_found(format!("tag {reference}")))
    }
    async fn fetch_manifest(&self, d: &Digest) -> Result<Bytes, TransferError> {
        let found = self.manifests.get(d).cloned();
        found.ok_or_else(|| self.not_found(format!("manifest {d}")))
    }
    async fn fetch_block(&self, d: &Digest) -> Result<Fetched, TransferError> {
        let found = self.blocks.get(d).cloned();
        found
            .map(Fetched::identity)
            .ok_or_else(|| self.not_found(format!("block {d}")))
    }
}

fn warmer(dir: &std::path::Path, budget: u64, registry: Arc<dyn Registry>) -> Warmer {
    warmer_serving(dir, budget, registry, Served::default())
}

fn warmer_serving(
    dir: &std::path::Path,
    budget: u64,
    registry: Arc<dyn Registry>,
    source: Served,
) -> Warmer {
    let cfg = WarmConfig {
        node_dir: dir.join("node-v1"),
        node_name: "unit".into(),
        workers: 1,
        fetch_concurrency: 1,
        disk_budget: budget,
        warm_command_timeout: Duration::from_secs(1),
        jail: JailTools {
            bwrap: "bwrap".into(),
            prlimit: "prlimit".into(),
            setpriv: "setpriv".into(),
            user: Default::default(),
            cgroups: Default::default(),
            net: None,
        },
        limits: Default::default(),
    };
    Warmer::open(cfg, Arc::new(source), registry).expect("open node")
}

/// A runtime of `n` small files in `lib/` (one bundle block), without meta: nothing to run.
fn many_files(n: usize) -> Served {
    let mut bundle = Vec::new();
    let mut files = Vec::new();
    for i in 0..n {
        let bytes = format!("x = {i}\n").into_bytes();
        files.push((
            format!("lib/m{i:04}.py"),
            bundle.len() as u64,
            bytes.clone(),
        ));
        bundle.extend_from_slice(&bytes);
    }
    let block = Digest::of(&bundle);
    let mut entries = vec![Entry::Dir {
        path: "lib".parse().unwrap(),
        mode: 0o755,
    }];
    entries.extend(files.into_iter().map(|(path, offset, bytes)| Entry::File {
        path: path.parse().unwrap(),
        mode: 0o644,
        size: bytes.len() as u64,
        digest: Digest::of(&bytes),
        chunks: vec![Chunk {
            block,
            offset,
            size: bytes.len() as u64,
        }],
    }));
    let manifest = Manifest::new(entries);
    manifest.validate().unwrap();
    Served {
        manifests: HashMap::from([(manifest.digest(), manifest.to_canonical_json().into())]),
        blocks: HashMap::from([(block, bundle.into())]),
        tags: HashMap::new(),
    }
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
        interpreters: BTreeMap::new(),
        size_bytes: size,
        files: 1,
        warm_ms: 1,
        last_used_ms,
        warmed: Default::default(),
        warmed_manifest: None,
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
        let job = w.inner.next_job(false).await;
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

#[tokio::test]
async fn materialise_progress_moves_through_the_step_as_entries_are_linked() {
    let tmp = tempfile::tempdir().unwrap();
    let source = many_files(400);
    let digest = *source.manifests.keys().next().unwrap();
    let w = warmer_serving(tmp.path(), u64::MAX, Arc::new(NoRegistry), source);
    let job = cold(&w, &digest.to_string()).await;
    run_to_end(&w, &job).await;
    assert_eq!(w.touch(&digest).unwrap().files, 400);

    // What subscribers were sent while the tree was linked: its start, its end, and steps
    // in between, each further on than the last.
    let sent = job.sent.lock().unwrap().clone();
    let progress: Vec<f64> = sent
        .iter()
        .filter(|s| s.step == Step::Materialise)
        .map(|s| s.progress)
        .collect();
    let (first, last) = (progress[0], *progress.last().unwrap());
    let share = super::job::weight(Step::Materialise);
    assert!((last - first - share).abs() < 1e-9, "{progress:?}");
    let between = progress.iter().filter(|&&p| p > first && p < last).count();
    assert!(
        between >= 10,
        "{between} intermediate reports: {progress:?}"
    );
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
}

#[test]
fn a_finished_job_ignores_late_progress() {
    // At shutdown a warm is abandoned while its blocking step may still be reporting.
    let job = super::Job::new(
        digest("a"),
        RuntimeRef::Digest(digest("a")),
        Priority::Normal,
        0,
        1,
        false,
    );
    job.progress(Step::Materialise, 0.5);
    job.finish_failed(prewarm_shared::sandbox::WarmFailure {
        step: Step::Materialise,
        reason: "the origin is shutting down".into(),
    });
    let failed = job.state();
    job.progress(Step::Materialise, 0.75);
    assert_eq!(job.state(), failed);
    assert_eq!(failed.step, Step::Done);
}

/// Records what was published and withdrawn.
#[derive(Default)]
struct Recording {
    published: Mutex<Vec<Digest>>,
    withdrawn: Mutex<Vec<Digest>>,
}

impl Recording {
    /// Digests published and withdrawn since the last call.
    fn take(&self) -> (Vec<Digest>, Vec<Digest>) {
        let take = |m: &Mutex<Vec<Digest>>| std::mem::take(&mut *m.lock().unwrap());
        (take(&self.published), take(&self.withdrawn))
    }
}

#[async_trait::async_trait]
impl Registry for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }
    async fn publish(&self, e: &RegistryEntry) -> Result<(), RegistryError> {
        self.published.lock().unwrap().push(e.digest);
        Ok(())
    }
    async fn withdraw(&self, _: &str, d: &Digest) -> Result<(), RegistryError> {
        self.withdrawn.lock().unwrap().push(*d);
        Ok(())
    }
}

#[tokio::test]
async fn a_reopened_node_republishes_what_it_holds_and_withdraws_what_went_while_down() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = {
        let w = warmer(tmp.path(), u64::MAX, Arc::new(NoRegistry));
        let a = install(&w, "a", 100, 1_000);
        let b = install(&w, "b", 100, 2_000);
        w.inner.lock_index().save(&w.layout().index).unwrap();
        // While the origin is down, b's tree goes (a disk clean-up, an operator).
        std::fs::remove_dir_all(w.runtime_dir(&b)).unwrap();
        (a, b)
    };
    let reg = Arc::new(Recording::default());
    let w = warmer(tmp.path(), 150, reg.clone());
    w.inner.flush_registry().await;
    assert_eq!(reg.take(), (vec![a], vec![b]));
    w.inner.flush_registry().await;
    assert_eq!(reg.take(), (vec![], vec![]), "nothing changed since");

    // A runtime evicted later is withdrawn by the next flush too.
    install(&w, "c", 100, 3_000);
    assert_eq!(w.inner.evict_over_budget(), [a]);
    w.inner.flush_registry().await;
    assert_eq!(reg.take(), (vec![], vec![a]));
}

/// `tag`s of the runtime `lib`, each a different tree.
fn lib_versions() -> Served {
    many_files(40)
        .tagged("lib:v1")
        .and(many_files(60).tagged("lib:v2"))
}

/// A cold request for `reference`: the queued job (no worker runs yet, so nothing moves it).
async fn cold(w: &Warmer, reference: &str) -> Arc<Job> {
    let (_, e) = w
        .ensure(&reference.parse().unwrap(), Priority::Normal, false)
        .await
        .unwrap();
    let Ensured::Warming(job) = e else {
        panic!("{reference} is cold")
    };
    job
}

/// Runs the queue on one worker until `job` ends, without the upkeep loop (so nothing is
/// evicted behind the test's back); `job`'s final state.
async fn run_to_end(w: &Warmer, job: &Job) -> WarmState {
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(w.clone().worker(cancel.clone(), false));
    let end = job
        .subscribe()
        .wait_for(|s| s.status != Status::Warming)
        .await
        .unwrap()
        .clone();
    cancel.cancel();
    tasks.join_all().await;
    assert_eq!(end.status, Status::Ready, "{:?}", end.error);
    end
}

/// The measured duration the node recorded for the warm runtime `d`.
fn warm_ms(w: &Warmer, d: &Digest) -> u64 {
    w.inner.lock_index().get(d).expect("warm").warm_ms
}

/// The estimator's weighting of measured warms, oldest first.
fn ewma(samples: &[u64]) -> u64 {
    let (first, rest) = samples.split_first().unwrap();
    rest.iter()
        .fold(*first as f64, |m, &s| 0.7 * m + 0.3 * s as f64) as u64
}

#[tokio::test]
async fn a_new_runtime_is_estimated_from_its_size_once_its_manifest_is_known() {
    let tmp = tempfile::tempdir().unwrap();
    let source = lib_versions();
    let (d, manifest) = source.manifest("lib:v1");
    let w = warmer_serving(tmp.path(), u64::MAX, Arc::new(NoRegistry), source);
    let nothing_learned = Estimator::load(tmp.path().join("nothing-learned.json"));
    let by_size = nothing_learned.from_size(
        "lib",
        manifest.bytes_total(),
        manifest.files().count() as u64,
        0,
    );

    let job = cold(&w, "lib:v1").await;
    assert_eq!(
        job.state().estimated_ms,
        Some(nothing_learned.before_manifest("lib")),
        "size not known yet"
    );
    run_to_end(&w, &job).await;
    assert_eq!(job.estimate(), by_size);
    // What subscribers heard as the manifest step completed: the rest of that figure.
    let manifest_done = super::job::weight(Step::Manifest);
    let heard = job.sent.lock().unwrap().clone();
    let heard = heard
        .iter()
        .find(|s| s.step == Step::Manifest && s.progress == manifest_done)
        .unwrap_or_else(|| panic!("{heard:?}"));
    assert_eq!(
        heard.estimated_ms,
        Some((by_size as f64 * (1.0 - manifest_done)) as u64)
    );
    // And the node learned what the warm really took.
    assert_eq!(w.inner.estimator.learned("lib"), Some(warm_ms(&w, &d)));
}

#[tokio::test]
async fn a_cold_warm_of_a_known_runtime_name_starts_from_its_measured_warms() {
    let tmp = tempfile::tempdir().unwrap();
    let source = lib_versions();
    let (v1, _) = source.manifest("lib:v1");
    let (v2, _) = source.manifest("lib:v2");
    // A budget of one byte: whatever no sandbox holds can be evicted.
    let w = warmer_serving(tmp.path(), 1, Arc::new(NoRegistry), source);
    let mut measured = Vec::new();

    let job = cold(&w, "lib:v1").await;
    run_to_end(&w, &job).await;
    measured.push(warm_ms(&w, &v1));
    assert_eq!(w.inner.estimator.learned("lib"), Some(measured[0]));

    // Evicted, then wanted again: cold, and estimated from the warm measured before, from
    // the queue on (the size, known after the manifest, does not replace it).
    assert_eq!(w.inner.evict_over_budget(), [v1]);
    let job = cold(&w, "lib:v1").await;
    assert_eq!(job.state().estimated_ms, Some(measured[0]));
    run_to_end(&w, &job).await;
    assert_eq!(job.estimate(), measured[0]);
    measured.push(warm_ms(&w, &v1));
    assert_eq!(w.inner.estimator.learned("lib"), Some(ewma(&measured)));

    // A new tag of the same name: a tree never warmed here, estimated from its name's history.
    assert_eq!(w.inner.evict_over_budget(), [v1]);
    let learned = ewma(&measured);
    let job = cold(&w, "lib:v2").await;
    assert_eq!(job.state().estimated_ms, Some(learned));
    run_to_end(&w, &job).await;
    assert_eq!(job.estimate(), learned);
    measured.push(warm_ms(&w, &v2));
    assert_eq!(w.inner.estimator.learned("lib"), Some(ewma(&measured)));

    // Persisted as it was learned.
    let reloaded = Estimator::load(w.layout().estimates.clone());
    assert_eq!(reloaded.learned("lib"), Some(ewma(&measured)));
}

#[tokio::test]
async fn learned_estimates_survive_a_restart_of_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let measured = {
        let w = warmer_serving(tmp.path(), 1, Arc::new(NoRegistry), lib_versions());
        let job = cold(&w, "lib:v1").await;
        run_to_end(&w, &job).await;
        let (v1, _) = lib_versions().manifest("lib:v1");
        let ms = warm_ms(&w, &v1);
        assert_eq!(w.inner.evict_over_budget(), [v1]);
        ms
    };
    // A new process on the same node dir.
    let w = warmer_serving(tmp.path(), 1, Arc::new(NoRegistry), lib_versions());
    let job = cold(&w, "lib:v1").await;
    assert_eq!(job.state().estimated_ms, Some(measured));
    run_to_end(&w, &job).await;
    assert_eq!(job.estimate(), measured);
}
