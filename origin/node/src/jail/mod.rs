//! The jail both warming and sandboxes stand on: bubblewrap, prlimit resource limits, a
//! cgroup per sandbox, and running a jailed command to completion with its output capped.
//!
//! [`Jail`] builds the `bwrap` command line, [`limits`] the `prlimit` bounds it runs under,
//! [`cgroup`] the sandbox-wide limits and the cgroup the command joins first, and
//! [`exec::run`] runs it in its own process group, killing the group on timeout.

pub mod bwrap;
pub mod cgroup;
pub mod exec;
pub mod limits;

pub use bwrap::Jail;
pub use limits::ResourceLimits;
