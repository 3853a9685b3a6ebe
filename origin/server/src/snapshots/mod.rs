//! Snapshots over HTTP: snapshot, fork, pause and resume a sandbox; create a sandbox from a snapshot; read, list, share and delete snapshots.
//!
//! The node does the filesystem work (`prewarm_node::sandbox::SandboxService::snapshot`,
//! `create_from_snapshot`); this layer keeps the [`records`] (owners, sharing, paused
//! sandboxes) and enforces ownership: another user's snapshot is 404, as if absent, unless
//! it was shared with them.

pub mod records;
mod routes;
pub mod stats;

pub use routes::{create_hook, paused_status, router};

use prewarm_node::sandbox::SandboxService;

use crate::repo::Repo;
use records::SnapshotRecords;

/// What the snapshot handlers need.
#[derive(Clone)]
pub struct Snapshots {
    pub service: SandboxService,
    pub repo: Repo,
    pub records: SnapshotRecords,
    pub stats: stats::SnapshotStats,
}
