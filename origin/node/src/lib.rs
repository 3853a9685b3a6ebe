//! prewarm's node: the [`jail`] commands run in, [`warm`]ing runtimes onto this host, and the
//! [`sandbox`] service built on both.
//!
//! Floors, lowest first: `jail` (bubblewrap, prlimit, exec) ← `warm` (pull a runtime into the
//! node's cache, run its warm commands in the jail, seal it) ← `sandbox` (a warm runtime plus a
//! private workspace, commands run in the jail). Nothing here speaks HTTP; `prewarm-server`
//! routes requests to [`sandbox::SandboxService`].

pub mod interp;
pub mod jail;
pub mod metrics;
pub mod sandbox;
pub mod warm;
