//! Sandboxes: a warm runtime mounted read-only at its prefix plus a private workspace, commands run under bubblewrap.
//!
//! [`SandboxService`] owns the sandboxes of this node and the [`Warmer`] behind them, and the
//! background tasks of both (one [`CancellationToken`], one [`JoinSet`]). Creating a sandbox
//! on a warm runtime is a map insert and a directory: no copy, whatever the runtime's size.

pub mod files;
pub mod node;
pub mod pool;
mod run;
mod snapshots;
pub mod usage;

pub use snapshots::SnapshotOutcome;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prewarm_shared::limits::LimitError;
use prewarm_shared::sandbox::{
    CreateSandbox, ExecRequest, ExecResult, InputError, SandboxInfo, Status, WarmState,
    CONTEXT_ENV, CONTEXT_FILE,
};
use prewarm_shared::{Digest, RuntimeRef};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::jail::cgroup::SandboxCgroup;
use crate::jail::identity::SandboxUser;
use crate::jail::{exec, Jail, JailTools, ResourceLimits};
use crate::metrics::Outcome;
use crate::warm::layout::remove_tree;
use crate::warm::{Ensured, WarmError, Warmer};

/// What the sandbox service runs with, from `[sandbox]` and `[node]` (see [`node::SandboxSettings`]).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Sandboxes unused this long are removed.
    pub idle_timeout: Duration,
    /// Exec timeout when the request gives none.
    pub default_exec_timeout: Duration,
    /// Longest timeout a request may ask for.
    pub max_exec_timeout: Duration,
    /// Bytes kept of each of stdout and stderr per exec.
    pub output_cap: usize,
    /// The jail's tools and the sandbox identity; the same the warmer uses.
    pub jail: JailTools,
    /// The server's resource limits: the defaults and the ceiling of every sandbox's.
    pub limits: ResourceLimits,
    /// Sandboxes kept ready with their interpreter started (see [`pool`]).
    pub pool: pool::PoolConfig,
}

/// What went wrong with a sandbox request; mapped to HTTP by `prewarm-server`.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no sandbox {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A field no command could be started with (size over the kernel's limits, NUL, `=`).
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("sandbox {id} is {status:?}, not ready")]
    NotReady { id: String, status: Status },
    #[error(transparent)]
    Warm(Box<WarmError>),
    #[error("{action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl From<WarmError> for SandboxError {
    fn from(e: WarmError) -> Self {
        SandboxError::Warm(Box::new(e))
    }
}

struct Sandbox {
    id: String,
    user_id: String,
    runtime: RuntimeRef,
    digest: Digest,
    hot: bool,
    env: BTreeMap<String, String>,
    /// `PREWARM_CONTEXT`'s value, if a context was given.
    context: Option<String>,
    network: bool,
    /// The server's limits lowered by the create request; an exec may only lower them more.
    limits: ResourceLimits,
    dir: PathBuf,
    /// Every process the sandbox runs is in it: the sandbox-wide limits, and what DELETE kills.
    cgroup: SandboxCgroup,
    state: watch::Receiver<WarmState>,
    last_used: Mutex<Instant>,
    /// Commands running now. Changed only under the service's map lock, so the idle reaper
    /// never removes a sandbox between an exec finding it and starting its command.
    busy: AtomicUsize,
    /// Fired when the sandbox is deleted: its running commands are killed.
    stop: CancellationToken,
    /// Notified whenever a command of this sandbox ends (`busy` went down).
    ended: tokio::sync::Notify,
    /// The sandbox's long-lived interpreter (see [`run`]); held for the length of a call, so
    /// calls run one at a time.
    interp: tokio::sync::Mutex<Option<crate::interp::Interp>>,
    /// The limits the create request asked for (a copy of the sandbox asks for the same).
    requested_limits: prewarm_shared::limits::Limits,
    /// What the next snapshot builds on; also serialises snapshots of this sandbox.
    snap: tokio::sync::Mutex<snapshots::SnapState>,
    /// The snapshot base its workspace is a clone of, if it was made from a snapshot.
    base: Option<crate::snapshot::Pinned>,
}

impl Sandbox {
    fn info(&self) -> SandboxInfo {
        SandboxInfo {
            sandbox_id: self.id.clone(),
            runtime: self.runtime.clone(),
            digest: self.digest,
            user_id: self.user_id.clone(),
            hot: self.hot,
            state: self.state.borrow().clone(),
        }
    }

    fn workspace(&self) -> PathBuf {
        self.dir.join("workspace")
    }

    /// Unused for longer than `timeout`. The idle clock stands still while the sandbox runs a
    /// command or waits for its warm: neither is idleness the client could act on.
    fn is_idle(&self, timeout: Duration) -> bool {
        let mut last = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
        if self.busy.load(Ordering::Relaxed) > 0 || self.state.borrow().status == Status::Warming {
            *last = Instant::now();
            return false;
        }
        last.elapsed() > timeout
    }
}

/// One running exec: the sandbox counts as busy (and is not reaped) until it drops.
struct Busy(Arc<Sandbox>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify_waiters();
    }
}

/// The node's sandboxes and warmer. Cheap to clone.
#[derive(Clone)]
pub struct SandboxService {
    warmer: Warmer,
    cfg: SandboxConfig,
    sandboxes: Arc<Mutex<HashMap<String, Arc<Sandbox>>>>,
    /// Snapshot bases on this node; `None` if their directory could not be opened.
    bases: Option<crate::snapshot::Bases>,
    cancel: CancellationToken,
    tasks: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    pool: Arc<pool::Pool>,
    /// Every successful create, for usage recording and prediction ([`SandboxService::creates`]).
    creates: tokio::sync::broadcast::Sender<usage::Created>,
}

impl SandboxService {
    /// Starts the warm workers and the background loops (eviction, registry, idle sandboxes).
    pub fn start(warmer: Warmer, cfg: SandboxConfig) -> Self {
        let cancel = CancellationToken::new();
        let bases = crate::snapshot::Bases::open(&warmer.layout().root)
            .inspect_err(|e| tracing::warn!(error = %e, "snapshot bases unavailable"))
            .ok();
        let svc = Self {
            pool: Arc::new(pool::Pool::new(cfg.pool)),
            warmer,
            cfg,
            sandboxes: Arc::default(),
            bases,
            cancel: cancel.clone(),
            tasks: Arc::default(),
            creates: usage::channel(),
        };
        {
            let mut tasks = svc
                .tasks
                .try_lock()
                .expect("a mutex nobody else has seen is unlocked");
            svc.warmer.spawn(&mut tasks, &cancel);
            let s = svc.clone();
            tasks.spawn(async move { s.reap_idle().await });
            let s = svc.clone();
            tasks.spawn(async move { s.fill_pool().await });
        }
        svc
    }

    /// Stops every background task and waits for them; removes all sandboxes.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
        self.drain_pool().await;
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        for id in ids {
            let _ = self.delete(&id).await;
        }
        self.cfg.jail.cgroups.release();
    }

    pub fn warmer(&self) -> &Warmer {
        &self.warmer
    }

    /// Every successful create from now on (user, runtime, hot or not). A listener that falls
    /// [`usage::CREATES_BUFFER`] behind loses the oldest and is told how many.
    pub fn creates(&self) -> tokio::sync::broadcast::Receiver<usage::Created> {
        self.creates.subscribe()
    }

    fn announce(&self, info: &SandboxInfo, outcome: Outcome) {
        let _ = self.creates.send(usage::Created {
            user_id: info.user_id.clone(),
            runtime: info.runtime.clone(),
            digest: info.digest,
            outcome,
        });
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Sandbox>>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a sandbox: hot if the runtime is warm, else joined to (or starting) its warm.
    pub async fn create(&self, req: CreateSandbox) -> Result<SandboxInfo, SandboxError> {
        self.create_from(req, None, None).await
    }

    /// [`Self::create`], with the workspace a clone of `base` and the id `id` when given
    /// (snapshots, resume); counted and traced like every create.
    async fn create_from(
        &self,
        req: CreateSandbox,
        base: Option<crate::snapshot::Pinned>,
        id: Option<String>,
    ) -> Result<SandboxInfo, SandboxError> {
        let (started, runtime) = (Instant::now(), req.runtime.clone());
        let created = (self.create_inner(req, started, base, id))
            .instrument(crate::metrics::create_span(&runtime))
            .await;
        if created.is_err() {
            self.warmer
                .metrics()
                .created(&runtime, Outcome::Failed, started, None);
        }
        created
    }

    async fn create_inner(
        &self,
        req: CreateSandbox,
        started: Instant,
        base: Option<crate::snapshot::Pinned>,
        id: Option<String>,
    ) -> Result<SandboxInfo, SandboxError> {
        req.check()?;
        if let Some(id) = &id {
            if self.lock().contains_key(id) {
                return Err(SandboxError::Invalid(format!("sandbox {id} is running")));
            }
        }
        if req.user_id.is_empty() || req.user_id.len() > 256 {
            return Err(SandboxError::Invalid("user_id must be 1-256 bytes".into()));
        }
        let context = req.context_text();
        if req.network && self.cfg.jail.net.is_none() {
            return Err(SandboxError::Invalid(
                "network: this origin gives sandboxes no network (sandbox.network = \"off\", or slirp4netns is not installed)".into(),
            ));
        }
        let limits = self.cfg.limits.narrow(&req.limits)?;
        let (digest, ensured) = self.warmer.ensure(&req.runtime, req.priority, true).await?;
        // A pooled sandbox has a fresh workspace and its own id: not for clones or resumes.
        if let (Ensured::Hot(rec), false, true, None, None) =
            (&ensured, req.network, req.limits.is_empty(), &base, &id)
        {
            if let Some(spec) = rec.interpreters.get(pool::POOLED_LANGUAGE) {
                if let Some(p) = self.pool.take(digest, spec) {
                    // The pooled sandbox holds the runtime already.
                    self.warmer.release(&digest);
                    let info = self.hand_out(req, digest, context, limits, p).await?;
                    (self.warmer.metrics()).created(&info.runtime, Outcome::Hot, started, None);
                    self.announce(&info, Outcome::Hot);
                    return Ok(info);
                }
            }
        }
        let (hot, state, outcome) = match ensured {
            Ensured::Hot(_) => (true, watch::channel(WarmState::ready()).1, Outcome::Hot),
            Ensured::Warming(job) if job.claim() => (false, job.subscribe(), Outcome::Cold),
            Ensured::Warming(job) => (false, job.subscribe(), Outcome::Joined),
        };
        let id = id.unwrap_or_else(|| format!("sb-{:016x}", rand::random::<u64>()));
        tracing::Span::current()
            .record("sandbox", &id)
            .record("digest", tracing::field::display(&digest));
        let dir = self.warmer.layout().sandboxes.join(&id);
        let user = self.cfg.jail.user;
        let clone = |ws: &std::path::Path| match &base {
            Some(b) => self.clone_workspace(b, ws),
            None => Ok(()),
        };
        if let Err(e) = make_workspace(
            &dir,
            req.context.as_ref(),
            user,
            req.network,
            base.is_some(),
            clone,
        ) {
            if base.is_some() {
                crate::snapshot::overlay::unmount_clone(&dir.join("workspace"));
            }
            self.warmer.release(&digest);
            remove_tree(&dir);
            return Err(SandboxError::Io {
                action: "creating the workspace",
                source: e,
            });
        }
        let cgroup = match self.cfg.jail.cgroups.create(&id, &limits) {
            Ok(c) => c,
            Err(e) => {
                self.warmer.release(&digest);
                if base.is_some() {
                    crate::snapshot::overlay::unmount_clone(&dir.join("workspace"));
                }
                remove_tree(&dir);
                return Err(SandboxError::Io {
                    action: "creating the sandbox's cgroup",
                    source: e,
                });
            }
        };
        let sb = Arc::new(Sandbox {
            id: id.clone(),
            user_id: req.user_id,
            runtime: req.runtime,
            digest,
            hot,
            env: req.env,
            context,
            network: req.network,
            limits,
            requested_limits: req.limits,
            snap: tokio::sync::Mutex::new(snapshots::SnapState {
                parent: base.as_ref().map(|b| b.digest),
                cache: Default::default(),
                entries: None,
            }),
            base,
            dir,
            cgroup,
            state,
            last_used: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
            stop: CancellationToken::new(),
            ended: tokio::sync::Notify::new(),
            interp: Default::default(),
        });
        let info = sb.info();
        let watch = (!hot).then(|| sb.state.clone());
        self.lock().insert(id, sb);
        (self.warmer.metrics()).created(&info.runtime, outcome, started, watch);
        self.announce(&info, outcome);
        tracing::info!(outcome = outcome.as_str(), "sandbox created");
        Ok(info)
    }

    pub fn get(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        Ok(self.find(id)?.info())
    }

    /// A receiver of the sandbox's warm state (current value first).
    pub fn subscribe(&self, id: &str) -> Result<watch::Receiver<WarmState>, SandboxError> {
        Ok(self.find(id)?.state.clone())
    }

    /// Removes the sandbox: kills the commands it is running and waits for them to end, then
    /// removes its workspace; its runtime may be evicted again.
    pub async fn delete(&self, id: &str) -> Result<(), SandboxError> {
        let sb = self
            .lock()
            .remove(id)
            .ok_or_else(|| SandboxError::NotFound(id.to_string()))?;
        // Out of the map: no exec can start in it now, and any that has started sees `stop`.
        sb.stop.cancel();
        loop {
            let ended = sb.ended.notified();
            if sb.busy.load(Ordering::SeqCst) == 0 {
                break;
            }
            ended.await;
        }
        let s = self.clone();
        tokio::task::spawn_blocking(move || s.discard(&sb))
            .await
            .map_err(|e| SandboxError::Io {
                action: "removing the sandbox",
                source: std::io::Error::other(e),
            })
    }

    /// Releases a sandbox already taken out of the map: kills every process in its cgroup
    /// (whatever process group or session it moved to) and removes the cgroup, then releases
    /// its runtime hold and removes its directory. Blocking.
    fn discard(&self, sb: &Sandbox) {
        sb.cgroup.remove();
        self.warmer.release(&sb.digest);
        self.release_clone(sb);
        remove_tree(&sb.dir);
        self.unpin_clone(sb);
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Every live sandbox (for `/ui` and the live-sandbox gauge).
    pub fn list(&self) -> Vec<SandboxInfo> {
        self.lock().values().map(|s| s.info()).collect()
    }

    /// Sandbox `id`, marked busy (not reaped idle, waited for on delete) until the guard drops.
    fn hold(&self, id: &str) -> Result<Busy, SandboxError> {
        let map = self.lock();
        let sb = map
            .get(id)
            .ok_or_else(|| SandboxError::NotFound(id.to_string()))?;
        sb.busy.fetch_add(1, Ordering::SeqCst);
        Ok(Busy(Arc::clone(sb)))
    }

    /// Runs a command in the sandbox: runtime read-only at its prefix, workspace writable and
    /// the working directory, env = runtime, sandbox, request, then context; resource limits
    /// = the sandbox's, lowered by the request's.
    pub async fn exec(&self, id: &str, req: ExecRequest) -> Result<ExecResult, SandboxError> {
        self.exec_live(id, req, None).await
    }

    /// [`SandboxService::exec`], also sending output to `live` as the command produces it.
    pub async fn exec_live(
        &self,
        id: &str,
        req: ExecRequest,
        live: Option<exec::LiveOutput>,
    ) -> Result<ExecResult, SandboxError> {
        let busy = self.hold(id)?;
        let sb = &busy.0;
        req.check()?;
        let limits = sb.limits.narrow_exec(&req.limits)?;
        let status = sb.state.borrow().status;
        let rec = match status {
            Status::Ready => self.warmer.touch(&sb.digest),
            _ => None,
        }
        .ok_or_else(|| SandboxError::NotReady {
            id: id.to_string(),
            status,
        })?;
        let mut env = rec.env.clone();
        env.extend(sb.env.clone());
        env.extend(req.env);
        if let Some(c) = &sb.context {
            env.insert(CONTEXT_ENV.into(), c.clone());
        }
        let jail = Jail {
            tools: self.cfg.jail.clone(),
            limits,
            runtime: self.warmer.runtime_dir(&sb.digest),
            prefix: rec.prefix.clone(),
            runtime_writable: false,
            workspace: Some(sb.workspace()),
            network: sb.network,
            resolv_conf: sb.network.then(|| sb.dir.join(RESOLV_CONF)),
            env,
            cgroup: sb.cgroup.clone(),
        };
        let timeout = req
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.cfg.default_exec_timeout)
            .min(self.cfg.max_exec_timeout);
        let start_failed = |e| SandboxError::Io {
            action: "starting bubblewrap",
            source: e,
        };
        let net = self.cfg.jail.net_for(sb.network).map(|n| (n, &sb.cgroup));
        let cmd = jail.command(&req.cmd).map_err(start_failed)?;
        let (ooms, exec_started) = (sb.cgroup.oom_kills(), Instant::now());
        let mut res = exec::run(cmd, timeout, self.cfg.output_cap, live, Some(&sb.stop), net)
            .await
            .map_err(start_failed)?;
        (self.warmer.metrics()).exec_done(&sb.runtime, exec_started.elapsed());
        if !res.timed_out {
            res.limit = res.signal.as_deref().and_then(|s| limits.hit(s));
            // SIGKILL is anyone's, but with the OOM killer busy in this sandbox meanwhile, it
            // was the sandbox's memory cap (or another command of it at once: the same cap).
            let oom = sb.cgroup.oom_kills() > ooms;
            if oom && res.signal.as_deref() == Some("SIGKILL") {
                res.limit = Some(limits.oom_hit());
            }
        }
        Ok(res)
    }

    fn find(&self, id: &str) -> Result<Arc<Sandbox>, SandboxError> {
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| SandboxError::NotFound(id.to_string()))
    }

    /// Removes sandboxes idle longer than the timeout.
    async fn reap_idle(self) {
        let every =
            (self.cfg.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            // Taken out of the map under its lock, so no exec can start in them after the check.
            let idle: Vec<Arc<Sandbox>> = {
                let mut map = self.lock();
                let ids: Vec<String> = map
                    .values()
                    .filter(|s| s.is_idle(self.cfg.idle_timeout))
                    .map(|s| s.id.clone())
                    .collect();
                ids.iter().filter_map(|id| map.remove(id)).collect()
            };
            for sb in idle {
                tracing::info!(sandbox = %sb.id, "removing idle sandbox");
                let s = self.clone();
                let _ = tokio::task::spawn_blocking(move || s.discard(&sb)).await;
            }
        }
    }
}

/// A networked sandbox's `/etc/resolv.conf`, in its directory: slirp's DNS forwarder.
const RESOLV_CONF: &str = "resolv.conf";

/// `DIR/workspace/` (0700 parent, root's), with the context written to [`CONTEXT_FILE`] as
/// JSON; with `network`, `DIR/resolv.conf` too. The workspace and everything in it belong to
/// the sandbox user, whose commands work there; nothing else the sandbox can reach does.
fn make_workspace(
    dir: &std::path::Path,
    context: Option<&serde_json::Value>,
    user: SandboxUser,
    network: bool,
    cloned: bool,
    clone: impl FnOnce(&std::path::Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::lchown;
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    if network {
        let dns = crate::jail::net::DNS;
        std::fs::write(dir.join(RESOLV_CONF), format!("nameserver {dns}\n"))?;
    }
    let ws = dir.join("workspace");
    if cloned {
        // A clone of a snapshot base (`snapshots::clone_workspace`): made, owned, mounted.
        clone(dir)?;
    } else {
        std::fs::DirBuilder::new().mode(0o755).create(&ws)?;
        lchown(&ws, Some(user.uid), Some(user.gid))?;
    }
    write_context(&ws, context, user)
}

/// Writes the context to [`CONTEXT_FILE`] in the workspace `ws`, as JSON, owned by `user`.
fn write_context(
    ws: &std::path::Path,
    context: Option<&serde_json::Value>,
    user: SandboxUser,
) -> std::io::Result<()> {
    use std::os::unix::fs::lchown;
    if let Some(c) = context {
        let file = ws.join(CONTEXT_FILE);
        let bytes = serde_json::to_vec(c).map_err(std::io::Error::other)?;
        std::fs::create_dir_all(file.parent().unwrap_or(ws))?;
        std::fs::write(&file, bytes)?;
        // The context file and the directories made for it, up to the workspace.
        let mut at = file.as_path();
        while at != ws {
            lchown(at, Some(user.uid), Some(user.gid))?;
            at = at.parent().unwrap_or(ws);
        }
    }
    Ok(())
}
