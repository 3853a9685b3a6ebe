//! `/v1/sandboxes` and `/v1/warm`: the node's sandbox service over HTTP, as a router with its own state.

mod files;
mod live;
pub(crate) mod owner;
pub mod pool_metrics;
mod routes;
mod run;

pub(crate) use routes::parse;
pub use routes::router;

use prewarm_node::sandbox::SandboxService;

/// What the sandbox handlers see: the node's service, or `None` when sandboxes are disabled
/// (every route then answers 404).
#[derive(Clone)]
pub struct SandboxState {
    pub service: Option<SandboxService>,
    /// Snapshot records and stats, for creates from a snapshot and paused sandboxes.
    pub snapshots: Option<crate::snapshots::Snapshots>,
}
