//! End-to-end: warming and sandboxes on a real `prewarm serve` with real bubblewrap — lifecycle, isolation, ceilings (cgroups), failures, node policies, the Redis registry, the shared cache.

mod ceilings;
mod cli;
mod failures;
mod files;
mod isolation;
mod lifecycle;
mod limits;
mod policy;
mod registry;
mod shared_cache;
mod support;
