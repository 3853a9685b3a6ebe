//! End-to-end: warming and sandboxes on a real `prewarm serve` with real bubblewrap — lifecycle, isolation, ceilings (cgroups), failures, node policies, the Redis registry, the shared cache, warmed runtimes across nodes, code run in pooled interpreters.

mod ceilings;
mod cli;
mod failures;
mod files;
mod isolation;
mod lifecycle;
mod limits;
mod metrics;
mod network;
mod policy;
mod prediction;
mod registry;
mod run_code;
mod shared_cache;
mod snapshots;
mod support;
mod telemetry;
mod users;
mod warmed;
