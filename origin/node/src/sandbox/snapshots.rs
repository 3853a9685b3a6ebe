//! Snapshots of a sandbox's workspace, and sandboxes made from them (copy-on-write clones of a snapshot base).
//!
//! A snapshot freezes the sandbox's processes (SIGSTOP to every process of its cgroup, so no
//! file is torn), scans the workspace (files unchanged since the sandbox's last snapshot are
//! recognised by their stat, not re-read), uploads only the blocks the store lacks, then the
//! manifest, and thaws. A sandbox made from a snapshot mounts its workspace on the snapshot's
//! base (see `crate::snapshot::overlay`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use prewarm_client::pack::PackError;
use prewarm_client::pull::{fetch_manifest, PullError};
use prewarm_client::transfer::{Sink, TransferError};
use prewarm_shared::sandbox::{CreateSandbox, SandboxInfo};
use prewarm_shared::{Digest, Manifest, RuntimeRef};
use rustix::process::{kill_process, Pid, Signal};
use serde::Serialize;

use super::{Sandbox, SandboxError, SandboxService};
use crate::jail::cgroup::SandboxCgroup;
use crate::snapshot::scan::{scan, Scan, Skipped, StatCache};
use crate::snapshot::{CloneKind, Pinned};

/// Per sandbox: what its next snapshot builds on.
#[derive(Default)]
pub(super) struct SnapState {
    /// The sandbox's last snapshot, or the one it was made from: the next one's `parent`.
    pub(super) parent: Option<Digest>,
    /// Stats of the files in `parent` as this sandbox last saw them.
    pub(super) cache: StatCache,
    /// The hash of `parent`'s entries when this sandbox took it: a snapshot of an unchanged
    /// workspace answers `parent` again instead of a child with the same tree.
    pub(super) entries: Option<Digest>,
}

/// What `POST /v1/sandboxes/{id}/snapshot` answers.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotOutcome {
    pub snapshot: Digest,
    pub parent: Option<Digest>,
    pub runtime: Digest,
    pub files: u64,
    pub bytes_total: u64,
    pub new_blocks: u64,
    pub reused_blocks: u64,
    pub bytes_new: u64,
    /// Files whose bytes were read this time; the rest were recognised by their stat.
    pub files_read: u64,
    pub files_reused: u64,
    pub duration_ms: u64,
    /// Entries left out (fifos, sockets, devices, vanished files…), by name.
    pub skipped: Vec<Skipped>,
}

/// Stops every process of a cgroup until dropped (then continues them). Repeats until no new
/// process appears, so one forked meanwhile is stopped too.
struct Frozen(Vec<Pid>);

impl Frozen {
    fn freeze(cg: &SandboxCgroup) -> Self {
        let mut stopped: Vec<Pid> = Vec::new();
        for _ in 0..8 {
            let mut fresh = false;
            for p in cg.procs() {
                let Some(pid) = Pid::from_raw(p as i32) else {
                    continue;
                };
                if !stopped.contains(&pid) {
                    let _ = kill_process(pid, Signal::Stop);
                    stopped.push(pid);
                    fresh = true;
                }
            }
            if !fresh {
                break;
            }
        }
        Self(stopped)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = kill_process(*p, Signal::Cont);
        }
    }
}

fn transfer(action: &'static str) -> impl FnOnce(TransferError) -> SandboxError {
    move |e| SandboxError::Io {
        action,
        source: std::io::Error::other(e),
    }
}

fn blocking_failed(e: tokio::task::JoinError) -> SandboxError {
    SandboxError::Io {
        action: "snapshotting",
        source: std::io::Error::other(e),
    }
}

impl SandboxService {
    /// Snapshots sandbox `id`'s workspace into `sink` (blocks, then the manifest).
    pub async fn snapshot(
        &self,
        id: &str,
        sink: &dyn Sink,
    ) -> Result<SnapshotOutcome, SandboxError> {
        let started = Instant::now();
        let busy = self.hold(id)?;
        let sb: &Arc<Sandbox> = &busy.0;
        let mut state = sb.snap.lock().await;
        let frozen = Frozen::freeze(&sb.cgroup);
        // The sandbox is frozen, but the host is not: a file changed or removed from outside
        // between the scan and the upload's re-read fails that read (the bytes are verified
        // again). Then the scan is simply taken again, up to `SCAN_ATTEMPTS` times.
        let mut attempt = 1;
        let (scanned, missing, bytes_new) = loop {
            match self.scan_and_upload(sb, &state.cache, sink).await {
                Err(Upload::Changed(e)) if attempt < SCAN_ATTEMPTS => {
                    tracing::info!(sandbox = %id, attempt, error = %e, "workspace changed from outside during a snapshot; scanning again");
                    attempt += 1;
                }
                Err(Upload::Changed(e)) => {
                    return Err(SandboxError::Io {
                        action:
                            "reading the workspace, which kept changing from outside the sandbox",
                        source: std::io::Error::other(e),
                    })
                }
                Err(Upload::Failed(e)) => return Err(e),
                Ok(done) => break done,
            }
        };
        drop(frozen);
        let mut manifest = Manifest::new(scanned.entries);
        let entries = Digest::of(&serde_json::to_vec(&manifest.entries).unwrap_or_default());
        if let (Some(prev), Some(e)) = (state.parent, state.entries) {
            if e == entries && missing.is_empty() {
                state.cache = scanned.cache;
                return Ok(SnapshotOutcome {
                    snapshot: prev,
                    parent: None,
                    runtime: sb.digest,
                    files: manifest.files().count() as u64,
                    bytes_total: manifest.bytes_total(),
                    new_blocks: 0,
                    reused_blocks: manifest.blocks().len() as u64,
                    bytes_new: 0,
                    files_read: scanned.files_read,
                    files_reused: scanned.files_reused,
                    duration_ms: started.elapsed().as_millis() as u64,
                    skipped: scanned.skipped,
                });
            }
        }
        manifest.parent = state.parent;
        manifest.runtime = Some(sb.digest);
        manifest.validate().map_err(|e| SandboxError::Io {
            action: "building the snapshot manifest",
            source: std::io::Error::other(e),
        })?;
        let bytes = manifest.to_canonical_json();
        let digest = Digest::of(&bytes);
        sink.put_manifest(&digest, bytes.into())
            .await
            .map_err(transfer("storing the snapshot manifest"))?;
        let parent = state.parent;
        state.parent = Some(digest);
        state.cache = scanned.cache;
        state.entries = Some(entries);
        let blocks_total = manifest.blocks().len() as u64;
        let new_blocks = missing.len() as u64;
        let out = SnapshotOutcome {
            snapshot: digest,
            parent,
            runtime: sb.digest,
            files: manifest.files().count() as u64,
            bytes_total: manifest.bytes_total(),
            new_blocks,
            reused_blocks: blocks_total.saturating_sub(new_blocks),
            bytes_new,
            files_read: scanned.files_read,
            files_reused: scanned.files_reused,
            duration_ms: started.elapsed().as_millis() as u64,
            skipped: scanned.skipped,
        };
        tracing::info!(sandbox = %id, snapshot = %digest, files_read = out.files_read, bytes_new, duration_ms = out.duration_ms, "snapshot taken");
        Ok(out)
    }

    /// Creates a sandbox from snapshot `snapshot`: the runtime its manifest records, plus its
    /// workspace as a copy-on-write clone. `req.runtime` is replaced by that runtime. With
    /// `id`, the sandbox gets that id (a resumed one keeps its own).
    pub async fn create_from_snapshot(
        &self,
        mut req: CreateSandbox,
        snapshot: Digest,
        id: Option<String>,
    ) -> Result<(SandboxInfo, CloneKind), SandboxError> {
        let bases = self.bases.clone().ok_or_else(|| {
            SandboxError::Invalid("snapshots are not available on this node".into())
        })?;
        req.check()?;
        let started = Instant::now();
        let (runtime, pinned) = match bases.pin_ready(&snapshot) {
            Some(ready) => ready,
            None => {
                let parts = self.warmer.parts();
                let (_, manifest) = fetch_manifest(&*parts.source, &RuntimeRef::Digest(snapshot))
                    .await
                    .map_err(|e| match e {
                        PullError::Fetch { source, .. }
                            if matches!(*source, TransferError::NotFound { .. }) =>
                        {
                            SandboxError::NotFound(format!("snapshot {snapshot}"))
                        }
                        other => SandboxError::Io {
                            action: "reading the snapshot manifest",
                            source: std::io::Error::other(other),
                        },
                    })?;
                let runtime = manifest.runtime.ok_or_else(|| {
                    SandboxError::Invalid(format!(
                        "{snapshot} is a runtime, not a sandbox snapshot"
                    ))
                })?;
                let pinned = bases
                    .ensure(
                        &self.warmer,
                        snapshot,
                        Arc::new(manifest),
                        self.cfg.jail.user,
                    )
                    .await
                    .map_err(|e| SandboxError::Io {
                        action: "making the snapshot's base on this node",
                        source: std::io::Error::other(e),
                    })?;
                (runtime, pinned)
            }
        };
        req.runtime = RuntimeRef::Digest(runtime);
        let kind = pinned.kind;
        let digest = pinned.digest;
        match self.create_from(req, Some(pinned), id).await {
            Ok(info) => {
                tracing::info!(sandbox = %info.sandbox_id, %snapshot, clone = ?kind, clone_ms = started.elapsed().as_millis() as u64, "sandbox cloned from a snapshot");
                Ok((info, kind))
            }
            Err(e) => {
                bases.unpin(&digest);
                Err(e)
            }
        }
    }

    /// What creating a copy of sandbox `id` asks for: its user, runtime (by digest), env,
    /// network and limits. Its context travels in its workspace; `PREWARM_CONTEXT` is not
    /// carried over.
    pub fn template(&self, id: &str) -> Result<CreateSandbox, SandboxError> {
        let sb = self.find(id)?;
        Ok(CreateSandbox {
            runtime: RuntimeRef::Digest(sb.digest),
            user_id: sb.user_id.clone(),
            priority: Default::default(),
            env: sb.env.clone(),
            context: None,
            network: sb.network,
            limits: sb.requested_limits,
        })
    }

    /// Makes a clone's workspace at `dir/workspace` on `base`. Blocking.
    pub(super) fn clone_workspace(
        &self,
        base: &Pinned,
        dir: &std::path::Path,
    ) -> std::io::Result<()> {
        use crate::snapshot::overlay;
        let ws = dir.join("workspace");
        let user = self.cfg.jail.user;
        match base.kind {
            CloneKind::Overlay => overlay::mount_clone(&base.dir, dir, &ws, user),
            CloneKind::Copy => {
                let modes = base.modes.clone();
                overlay::copy_clone(&base.dir, &ws, user, &|p| modes.get(p).copied())
            }
        }
    }

    /// Undoes [`Self::clone_workspace`]'s mount and unpins the base. Blocking.
    pub(super) fn release_clone(&self, sb: &Sandbox) {
        if let Some(base) = &sb.base {
            if base.kind == CloneKind::Overlay {
                crate::snapshot::overlay::unmount_clone(&sb.workspace());
            }
        }
    }

    /// Unpins a discarded sandbox's base, after its tree is gone.
    pub(super) fn unpin_clone(&self, sb: &Sandbox) {
        if let (Some(base), Some(bases)) = (&sb.base, &self.bases) {
            bases.unpin(&base.digest);
        }
    }
}

/// How many times a snapshot scans again when its files change from outside mid-upload.
const SCAN_ATTEMPTS: usize = 3;

/// Why a scan's upload stopped.
enum Upload {
    /// A planned file was changed or removed from outside before it was re-read.
    Changed(PackError),
    Failed(SandboxError),
}

impl From<SandboxError> for Upload {
    fn from(e: SandboxError) -> Self {
        Upload::Failed(e)
    }
}

impl SandboxService {
    /// Scans `sb`'s workspace against `prev` and stores the blocks the sink lacks: the scan,
    /// the missing blocks and the bytes sent.
    async fn scan_and_upload(
        &self,
        sb: &Arc<Sandbox>,
        prev: &StatCache,
        sink: &dyn Sink,
    ) -> Result<(Scan, HashSet<Digest>, u64), Upload> {
        let (ws, prev) = (sb.workspace(), prev.clone());

        let scanned = tokio::task::spawn_blocking(move || scan(&ws, &prev))
            .await
            .map_err(blocking_failed)?
            .map_err(|e| SandboxError::Io {
                action: "scanning the workspace",
                source: std::io::Error::other(e),
            })?;
        let planned: Vec<Digest> = scanned.blocks.iter().map(|b| b.digest).collect();
        let missing: HashSet<Digest> = sink
            .missing_blocks(&planned)
            .await
            .map_err(transfer("asking the store for missing blocks"))?
            .into_iter()
            .collect();
        let mut bytes_new = 0;
        for b in scanned
            .blocks
            .iter()
            .filter(|b| missing.contains(&b.digest))
        {
            let block = b.clone();
            let bytes = match tokio::task::spawn_blocking(move || block.read())
                .await
                .map_err(blocking_failed)?
            {
                Ok(bytes) => bytes,
                Err(e) if changed_from_outside(&e) => return Err(Upload::Changed(e)),
                Err(e) => {
                    return Err(Upload::Failed(SandboxError::Io {
                        action: "reading the workspace",
                        source: std::io::Error::other(e),
                    }))
                }
            };
            bytes_new += bytes.len() as u64;
            sink.put_block(&b.digest, bytes)
                .await
                .map_err(transfer("storing a block"))?;
        }
        Ok((scanned, missing, bytes_new))
    }
}

/// A re-read that found the file gone or other bytes than were planned.
fn changed_from_outside(e: &PackError) -> bool {
    match e {
        PackError::Changed { .. } => true,
        PackError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}
