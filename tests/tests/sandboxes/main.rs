//! End-to-end: warming and sandboxes on a real `prewarm serve` with real bubblewrap — lifecycle, isolation, failures, node policies, the Redis registry.

mod failures;
mod isolation;
mod lifecycle;
mod limits;
mod policy;
mod registry;
mod support;
