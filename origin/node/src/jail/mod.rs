//! The jail both warming and sandboxes stand on: bubblewrap, prlimit resource limits, the
//! unprivileged sandbox identity (setpriv), a cgroup per sandbox, outbound network through
//! slirp4netns, and running a jailed command to completion.
//!
//! [`Jail`] builds the `bwrap` command line, [`limits`] the `prlimit` bounds it runs under,
//! [`cgroup`] the sandbox-wide limits and the cgroup the command joins first, and
//! [`exec::run`] runs it in its own process group, killing the group on timeout.

pub mod bwrap;
pub mod cgroup;
pub mod exec;
pub mod identity;
pub mod limits;
pub mod net;

pub use bwrap::{Jail, JailTools};
pub use cgroup::Cgroups;
pub use limits::ResourceLimits;
