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
pub mod net;

use std::path::PathBuf;

pub use bwrap::Jail;
pub use cgroup::Cgroups;
pub use limits::ResourceLimits;

/// What every jailed command runs with, handed to warming and sandboxes alike.
#[derive(Debug, Clone)]
pub struct JailConfig {
    /// The bubblewrap binary.
    pub bwrap: PathBuf,
    /// util-linux `prlimit`, which applies the limits before it execs bubblewrap.
    pub prlimit: PathBuf,
    /// The server's resource limits: warm commands run under them, and they are the defaults
    /// and the ceiling of every sandbox's.
    pub limits: ResourceLimits,
    /// Where sandboxes' and warm jobs' cgroups go ([`Cgroups::none`]: nowhere).
    pub cgroups: Cgroups,
    /// slirp4netns, which connects a sandbox that asks for network ([`net`]); `None`: no
    /// sandbox gets network (`sandbox.network = "off"`, or slirp4netns is missing).
    pub slirp4netns: Option<PathBuf>,
}
