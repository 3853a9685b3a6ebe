//! Workspace snapshots on this node: [`scan`]ning a workspace into a manifest, the materialised [`base`]s clones stand on, and the [`overlay`] clones themselves.
//!
//! Nothing here stores records or speaks HTTP: `prewarm-server` keeps who owns a snapshot and
//! which sandbox is paused at which, and uploads through its repository. The flows that tie
//! them to sandboxes are in `crate::sandbox::snapshots`.

pub mod base;
pub mod overlay;
pub mod scan;

pub use base::{Bases, Pinned};
pub use overlay::CloneKind;
pub use scan::{Skipped, StatCache};
