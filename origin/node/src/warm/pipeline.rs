//! The warm steps themselves: manifest → (warmed runtime or lease) → fetch → materialise → warm commands → verify, seal, install → publish.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use prewarm_shared::sandbox::{Step, WarmFailure};
use prewarm_shared::warmed::{WarmInputs, WarmedBy};
use prewarm_shared::{Digest, Manifest, Meta, RuntimeRef};

use super::guard::{seal, CacheSnapshot};
use super::index::{now_ms, RuntimeRecord};
use super::job::Job;
use super::layout::remove_tree;
use super::lease::{Lease, Taken};
use super::lend::{lend_dirs, reclaim};
use super::warmed::{self, WarmedHow, WarmedMode};
use super::Inner;
use crate::jail::cgroup::SandboxCgroup;
use crate::jail::{exec, Jail};
use prewarm_client::pull::{
    fetch_manifest, fetch_missing, materialise, FetchProgress, LinkMode, MaterialiseProgress,
    PullError,
};

/// Bytes of a failing warm command's stderr kept for the failure reason.
const STDERR_TAIL: usize = 2000;

/// Runs every step for `job`, reporting progress as each really advances. On success the
/// sealed runtime is at `runtimes/<hex>` and its record is returned for registration; on
/// failure nothing is left on disk (the build dir is removed) and the step and reason say why.
pub(super) async fn run(inner: &Inner, job: &Arc<Job>) -> Result<RuntimeRecord, WarmFailure> {
    let started = Instant::now();
    job.progress(Step::Manifest, 0.0);
    let what = RuntimeRef::Digest(job.digest);
    let (_, manifest) = fetch_manifest(&*inner.source, &what)
        .await
        .map_err(|e| pull_failure(Step::Manifest, &e))?;
    let meta = manifest
        .meta
        .clone()
        .unwrap_or_else(|| plain_meta(&job.runtime));
    let files = manifest.files().count() as u64;
    job.set_estimate(inner.estimator.from_size(
        &estimate_key(&job.runtime),
        manifest.bytes_total(),
        files,
        meta.warm.len(),
    ));
    // What shapes this warm's result, when it may be shared with the fleet at all.
    let inputs = (!meta.warm.is_empty() && inner.fleet.mode != WarmedMode::Ignore)
        .then(|| WarmInputs::here(job.digest, meta.warm.clone(), meta.env.clone()));
    let (plan, lease) = match &inputs {
        Some(inputs) => match obtain(inner, inputs).await {
            Obtained::Warmed(digest, warmed) => {
                tracing::info!(runtime = %job.runtime, warmed = %digest, by = ?warmed.warmed.as_ref().map(|w| &w.node), "fetching a warmed runtime instead of warming");
                (Plan::Fetched(warmed), None)
            }
            Obtained::Here(lease) => (Plan::Warm(inputs.clone()), lease),
        },
        None => (Plan::Plain, None),
    };
    job.progress(Step::Manifest, 1.0);
    let built = build(inner, job, started, manifest, meta, plan).await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    built
}

/// How [`build`] makes the runtime warm.
enum Plan {
    /// No warm commands, or `--warmed=ignore`: as always, nothing shared.
    Plain,
    /// Run the warm commands here, then publish the result for these inputs.
    Warm(WarmInputs),
    /// Materialise another node's warmed manifest; no warm command runs.
    Fetched(Box<Manifest>),
}

/// What [`obtain`] settled on.
enum Obtained {
    Warmed(Digest, Box<Manifest>),
    /// Warm here, holding the fleet lease if there is one.
    Here(Option<Lease>),
}

/// Finds a published warmed runtime for `inputs`, or the right to warm it here: while another
/// node holds the key's lease, waits for its publication or for the lease to expire.
async fn obtain(inner: &Inner, inputs: &WarmInputs) -> Obtained {
    let fleet = &inner.fleet;
    if !fleet.mode.fetches() {
        return Obtained::Here(None);
    }
    let key = inputs.key();
    loop {
        if let Some((d, m)) = warmed::lookup(&*inner.source, inputs).await {
            return Obtained::Warmed(d, Box::new(m));
        }
        match fleet.leases.try_take(&key, &inner.cfg.node_name).await {
            Taken::Held(lease) => {
                // Published between the look and the take (its warmer released the lease)?
                if let Some((d, m)) = warmed::lookup(&*inner.source, inputs).await {
                    lease.release().await;
                    return Obtained::Warmed(d, Box::new(m));
                }
                return Obtained::Here(Some(lease));
            }
            Taken::Busy => tokio::time::sleep(fleet.leases.poll_interval()).await,
        }
    }
}

/// Fetch, materialise, warm (per `plan`), seal, install, and publish what was warmed here.
async fn build(
    inner: &Inner,
    job: &Arc<Job>,
    started: Instant,
    manifest: Manifest,
    meta: Meta,
    plan: Plan,
) -> Result<RuntimeRecord, WarmFailure> {
    let (manifest, warm_cmds, fetch_step, publish_as) = match plan {
        Plan::Plain => (manifest, meta.warm.clone(), Step::Fetch, None),
        Plan::Warm(inputs) => {
            let publish = inner.fleet.mode.publishes() && inner.fleet.sink.is_some();
            (
                manifest,
                meta.warm.clone(),
                Step::Fetch,
                publish.then_some(inputs),
            )
        }
        Plan::Fetched(warmed) => (*warmed, Vec::new(), Step::FetchWarmed, None),
    };
    let fetched_warmed = fetch_step == Step::FetchWarmed;
    let mut warmed_manifest = fetched_warmed.then(|| manifest.digest());
    job.progress(fetch_step, 0.0);
    // Cache pruning waits until the guard has checked the cache after the warm commands: before
    // linking, the files fetched now are linked by nothing; during the commands, a file they
    // replace (bytecode written beside and renamed over) leaves its cache inode unlinked, and
    // pruning it would read as damage to the guard.
    let gate = inner.cache_gate.read().await;
    let on_progress = |p: FetchProgress| {
        let frac = if p.bytes_expected == 0 {
            1.0
        } else {
            p.bytes_done as f64 / p.bytes_expected as f64
        };
        job.progress(fetch_step, frac);
    };
    let fetched = fetch_missing(
        &*inner.source,
        &manifest,
        &inner.cache,
        inner.cfg.fetch_concurrency,
        &on_progress,
    )
    .await
    .map_err(|e| pull_failure(fetch_step, &e))?;
    job.progress(fetch_step, 1.0);

    job.progress(Step::Materialise, 0.0);
    let manifest = Arc::new(manifest);
    let build = BuildDir::new(inner.layout.build_dir(&job.digest));
    let (m, cache, dir) = (manifest.clone(), inner.cache.clone(), build.0.clone());
    let reporter = job.clone();
    let links = blocking(Step::Materialise, move || {
        // By entries of the merged tree: they record no layer, so there is no layer to name.
        let on_progress =
            |p: MaterialiseProgress| reporter.progress(Step::Materialise, p.fraction());
        let never = tokio_util::sync::CancellationToken::new();
        materialise(
            &m,
            &cache,
            &dir,
            LinkMode::Auto,
            false,
            &never,
            &on_progress,
        )
        .map_err(|e| pull_failure(Step::Materialise, &e))
    })
    .await?;
    job.progress(Step::Materialise, 1.0);

    job.progress(Step::Warm, 0.0);
    let (m, cache, dir) = (manifest.clone(), inner.cache.clone(), build.0.clone());
    // The warm commands run as the sandbox user; lent this tree's directories, they can add,
    // replace and remove its entries, never write a file they did not create (see `lend`).
    let lend = (!warm_cmds.is_empty()).then_some(inner.cfg.jail.user);
    let snapshot = blocking(Step::Warm, move || {
        let snapshot = CacheSnapshot::take(&m, &cache, &dir)
            .map_err(|e| io_failure(Step::Warm, "snapshotting the cache", &e))?;
        if let Some(user) = lend {
            lend_dirs(&dir, user).map_err(|e| {
                io_failure(Step::Warm, "lending the runtime to the sandbox user", &e)
            })?;
        }
        Ok(snapshot)
    })
    .await?;
    let cache_links_guarded = snapshot.len();
    let n = warm_cmds.len();
    if n > 0 {
        // One cgroup for the job's warm commands, under the server's sandbox-wide limits;
        // whatever they leave running is killed with it.
        let (cgroups, limits, name) = (
            inner.cfg.jail.cgroups.clone(),
            inner.cfg.limits,
            format!("warm-{}", &job.digest.hex()[..16]),
        );
        let cgroup = blocking(Step::Warm, move || {
            cgroups
                .create(&name, &limits)
                .map_err(|e| io_failure(Step::Warm, "creating the warm job's cgroup", &e))
        })
        .await?;
        let mut ran = Ok(());
        for (i, argv) in warm_cmds.iter().enumerate() {
            inner
                .commands_run
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ran = run_warm_command(inner, &meta, &build.0, &cgroup, i, argv).await;
            if ran.is_err() {
                break;
            }
            job.progress(Step::Warm, (i + 1) as f64 / n as f64);
        }
        let _ = tokio::task::spawn_blocking(move || cgroup.remove()).await;
        ran?;
    }
    job.progress(Step::Warm, 1.0);

    job.progress(Step::Seal, 0.0);
    let dir = build.0.clone();
    let (m, cache) = (manifest.clone(), inner.cache.clone());
    // Beside the build dir, so hard links reach; swept at start-up like any non-runtime there.
    let scratch = build.0.with_file_name(
        build
            .0
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .replacen(".warming-", ".publish-", 1),
    );
    let warmed_by = publish_as.as_ref().map(|inputs| WarmedBy {
        node: inner.cfg.node_name.clone(),
        prewarm: env!("CARGO_PKG_VERSION").to_string(),
        inputs: inputs.clone(),
    });
    let (sealed, delta) = blocking(Step::Seal, move || {
        // Every sandboxed process of the warm is gone: each command's pid namespace died with it.
        if lend.is_some() {
            reclaim(&dir).map_err(|e| {
                io_failure(Step::Seal, "taking the runtime back from the sandbox user", &e)
            })?;
        }
        let damaged = snapshot.verify_and_evict();
        if let Some(first) = damaged.first() {
            return Err(WarmFailure {
                step: Step::Seal,
                reason: format!(
                    "a warm command modified {} cached file(s) in place (first: {}); they were evicted from the node cache",
                    damaged.len(),
                    first.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()
                ),
            });
        }
        // What warm-up added or changed, read before sealing (the modes it left are the ones
        // other nodes materialise; sealing only clears write bits, there as here).
        let delta = warmed_by.and_then(|by| match warmed::delta(&m, &cache, &dir, &scratch, by) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(%e, "could not build the warmed manifest; not publishing");
                let _ = std::fs::remove_dir_all(&scratch);
                None
            }
        });
        let sealed = seal(&dir).map_err(|e| io_failure(Step::Seal, "sealing the runtime", &e))?;
        Ok((sealed, delta))
    })
    .await?;
    drop(gate);
    let dest = inner.layout.runtime_dir(&job.digest);
    let src = build.0.clone();
    blocking(Step::Seal, move || {
        // Not in the index (single-flight, index checked), so a tree here is a leftover.
        if dest.exists() {
            remove_tree(&dest);
        }
        std::fs::rename(&src, &dest)
            .map_err(|e| io_failure(Step::Seal, "installing the runtime", &e))
    })
    .await?;
    build.disarm();
    let mut how = if fetched_warmed {
        WarmedHow::FetchedWarmed
    } else {
        WarmedHow::WarmedHere
    };
    if let (Some(delta), Some(inputs), Some(sink)) = (delta, &publish_as, &inner.fleet.sink) {
        let delta = Arc::new(delta);
        match warmed::publish(&**sink, delta.clone(), &inputs.key()).await {
            Ok(d) => {
                tracing::info!(runtime = %job.runtime, warmed = %d, changed_files = delta.changed_files, "published the warmed runtime");
                how = WarmedHow::WarmedAndPublished;
                warmed_manifest = Some(d);
            }
            Err(e) => {
                tracing::warn!(runtime = %job.runtime, %e, "could not publish the warmed runtime")
            }
        }
    }
    let warm_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        digest = %job.digest,
        runtime = %job.runtime,
        warm_ms,
        bytes_downloaded = fetched.bytes_downloaded,
        link_mode = links.mode_used(LinkMode::Auto),
        cache_links_guarded,
        "runtime warm"
    );
    Ok(RuntimeRecord {
        digest: job.digest,
        runtime: job.runtime.to_string(),
        prefix: meta.prefix,
        env: meta.env,
        interpreters: meta.interpreters,
        size_bytes: sealed.bytes,
        files: sealed.files,
        warm_ms,
        last_used_ms: now_ms(),
        warmed: how,
        warmed_manifest,
    })
}

/// One `meta.warm` command, in a jail like a sandbox's but with the runtime's directories
/// writable (lent to the sandbox user), under the server's resource limits.
async fn run_warm_command(
    inner: &Inner,
    meta: &Meta,
    runtime: &Path,
    cgroup: &SandboxCgroup,
    i: usize,
    argv: &[String],
) -> Result<(), WarmFailure> {
    let jail = Jail {
        tools: inner.cfg.jail.clone(),
        limits: inner.cfg.limits,
        runtime: runtime.to_path_buf(),
        prefix: meta.prefix.clone(),
        runtime_writable: true,
        workspace: None,
        network: false,
        resolv_conf: None,
        env: meta.env.clone(),
        cgroup: cgroup.clone(),
    };
    let fail = |reason: String| WarmFailure {
        step: Step::Warm,
        reason,
    };
    let cmd = jail
        .command(argv)
        .map_err(|e| fail(format!("could not start bubblewrap: {e}")))?;
    let res = exec::run(
        cmd,
        inner.cfg.warm_command_timeout,
        STDERR_TAIL * 4,
        None,
        None,
        None,
    )
    .await
    .map_err(|e| fail(format!("could not start bubblewrap: {e}")))?;
    if res.timed_out {
        return Err(fail(format!(
            "warm command #{i} {argv:?} did not finish within {} s",
            inner.cfg.warm_command_timeout.as_secs()
        )));
    }
    if res.exit_code != Some(0) {
        let limit = res.signal.as_deref().and_then(|s| inner.cfg.limits.hit(s));
        let how = match (limit, res.exit_code) {
            (Some(hit), _) => format!("was {}", hit.message),
            (None, Some(c)) => format!("exited with status {c}"),
            (None, None) => "was killed by a signal".to_string(),
        };
        // Tools differ in where they complain (compileall: stdout); keep the end of both.
        let tail = [tail(&res.stderr), tail(&res.stdout)]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n--- stdout ---\n");
        return Err(fail(format!("warm command #{i} {argv:?} {how}: {tail}")));
    }
    Ok(())
}

/// The last [`STDERR_TAIL`] characters of a command's output, trimmed.
fn tail(s: &str) -> String {
    let s = s.trim_end();
    let skip = s.chars().count().saturating_sub(STDERR_TAIL);
    s.chars().skip(skip).collect()
}

/// The key estimates are learned under: the runtime's name, or the digest for digest refs.
pub(super) fn estimate_key(r: &RuntimeRef) -> String {
    match r {
        RuntimeRef::Tagged(name, _) => name.to_string(),
        RuntimeRef::Digest(d) => d.to_string(),
    }
}

/// A manifest without meta (a plain directory was pushed): mounted at `/runtime`, nothing to run.
fn plain_meta(r: &RuntimeRef) -> Meta {
    Meta {
        name: estimate_key(r),
        version: String::new(),
        layers: Vec::new(),
        prefix: "/runtime".into(),
        env: Default::default(),
        warm: Vec::new(),
        interpreters: Default::default(),
    }
}

fn pull_failure(step: Step, e: &PullError) -> WarmFailure {
    let reason = match e {
        // Paths on the node are not a client's business; the log has them.
        PullError::Io { action, source, .. } => {
            format!("node I/O failed {action}: {}", source.kind())
        }
        other => chain(other),
    };
    tracing::warn!(?step, error = %chain(e), "warm step failed");
    WarmFailure { step, reason }
}

fn io_failure(step: Step, action: &str, e: &std::io::Error) -> WarmFailure {
    tracing::warn!(?step, action, error = %e, "warm step failed");
    WarmFailure {
        step,
        reason: format!("node I/O failed {action}: {}", e.kind()),
    }
}

/// `e: cause: cause…`
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Runs blocking filesystem work off the async workers; a panic becomes a failure of `step`.
async fn blocking<T: Send + 'static>(
    step: Step,
    f: impl FnOnce() -> Result<T, WarmFailure> + Send + 'static,
) -> Result<T, WarmFailure> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(?step, error = %e, "warm step panicked");
        Err(WarmFailure {
            step,
            reason: "internal error".into(),
        })
    })
}

/// A runtime being built; removed (read-only parts included) unless installed.
struct BuildDir(PathBuf, bool);

impl BuildDir {
    fn new(path: PathBuf) -> Self {
        Self(path, true)
    }

    fn disarm(mut self) {
        self.1 = false;
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if self.1 {
            remove_tree(&self.0);
        }
    }
}
