//! Garbage collection of the origin's store (`prewarm gc`): mark from tags and snapshot records, sweep what is unreferenced and older than a grace period.
//!
//! # Roots
//! - every tag of the durable tier: runtime tags and the warmed ones (`prewarm-warmed:w-…`);
//! - every snapshot record (`snapshots/<hex>`: the snapshot, its runtime, its parent) and
//!   every paused sandbox (`paused/<id>`: its snapshot). These records are the store's pins: a
//!   node's pins of snapshot bases are local to it and hold files, not store objects;
//! - every manifest younger than the grace period: pushed, not yet tagged.
//!
//! # Mark
//! From each root manifest: its blocks, its `parent` and its `runtime` (a snapshot's runtime,
//! a warmed runtime's source), and theirs, so an ancestor survives while a descendant is
//! reachable. A reference to a manifest no tier holds is reported as dangling.
//!
//! # Sweep
//! Manifests, then blocks, that are unmarked *and* were written before `now − grace`. An
//! object uploaded during the run, or a block uploaded for a manifest not pushed yet, is
//! younger than that and survives: the race of a push against a collector (Attic's) is
//! closed by the grace period, which must exceed the longest push. Before deleting, the roots
//! and manifests are listed again and anything that became reachable is spared (twice: before
//! the manifests go, and before the blocks go). Every tier is swept (local disk, Redis, S3).
//!
//! # What the re-check cannot see
//! A manifest pushed in the moments between the last re-check and the delete of an old block
//! it reuses (one unreferenced for longer than the grace period) loses that block. Run gc at
//! a quiet time, or with a grace period long enough that reuse of such a block is unlikely.

mod mark;
mod sweep;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use prewarm_shared::Digest;
use prewarm_store::{Records, Store, TagStore};
use serde::Serialize;

/// How a collection runs.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Objects written more recently than this are never deleted.
    pub grace: Duration,
    /// Report what would go; delete nothing.
    pub dry_run: bool,
}

/// What a collection found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub grace_secs: u64,
    pub roots: Roots,
    pub manifests: KindReport,
    pub blocks: KindReport,
    /// Unreferenced objects the re-check found reachable after all (pushed or tagged during the run).
    pub rescued: u64,
    /// References to manifests no tier holds: `(from, missing)`.
    pub dangling: Vec<Dangling>,
    /// Deletions that failed (the object stays; the next run tries again).
    pub failed: Vec<String>,
}

/// Where marking started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Roots {
    pub tags: u64,
    /// Of `tags`, the warmed runtimes' (`prewarm-warmed:*`).
    pub warmed_tags: u64,
    pub snapshot_records: u64,
    pub paused_records: u64,
    /// Manifests younger than the grace period.
    pub young_manifests: u64,
}

/// Counts and bytes for one kind of object.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindReport {
    /// Listed in any tier.
    pub listed: u64,
    pub listed_bytes: u64,
    /// Reachable from a root.
    pub reachable: u64,
    /// Unreachable but younger than the grace period.
    pub young_unreferenced: u64,
    /// Deleted (or, on a dry run, that would be).
    pub deleted: u64,
    pub deleted_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dangling {
    /// The tag (`name:tag`), record key or manifest that refers to it.
    pub from: String,
    pub missing: Digest,
}

/// Why a collection stopped before deleting anything it had not already deleted.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] prewarm_store::StoreError),
    /// A root or a manifest that cannot be read: what it references is unknown, so nothing
    /// may be swept.
    #[error("{what} cannot be read ({why}); nothing was deleted")]
    Unreadable { what: String, why: String },
}

/// The stores a collection works on: usually one tier stack as all three.
pub struct GcStores<'a> {
    pub objects: &'a dyn Store,
    pub tags: &'a dyn TagStore,
    pub records: &'a dyn Records,
}

/// Marks from the roots and sweeps (see the module docs).
///
/// # Errors
/// A store failure or an unreadable root stops the run. Deletions already made stay made
/// (they were garbage); a failed deletion is reported in [`GcReport::failed`], not an error.
pub async fn collect(s: &GcStores<'_>, o: GcOptions) -> Result<GcReport, GcError> {
    let cutoff = SystemTime::now()
        .checked_sub(o.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport {
        dry_run: o.dry_run,
        grace_secs: o.grace.as_secs(),
        ..GcReport::default()
    };
    let mut marks = mark::Marks::default();
    let manifests = s.objects.list(prewarm_store::Kind::Manifest).await?;
    marks.roots(s, &manifests, cutoff, &mut report).await?;
    let blocks = s.objects.list(prewarm_store::Kind::Block).await?;
    sweep::sweep(
        s,
        &mut marks,
        manifests,
        blocks,
        cutoff,
        &mut report,
        o.dry_run,
    )
    .await?;
    tracing::info!(
        dry_run = o.dry_run,
        manifests_deleted = report.manifests.deleted,
        blocks_deleted = report.blocks.deleted,
        bytes_deleted = report.manifests.deleted_bytes + report.blocks.deleted_bytes,
        rescued = report.rescued,
        dangling = report.dangling.len(),
        "gc finished"
    );
    Ok(report)
}
