//! The jail both warming and sandboxes stand on: bubblewrap, prlimit resource limits, the
//! unprivileged sandbox identity (setpriv), and running a jailed command to completion.
//!
//! [`Jail`] builds the `bwrap` command line, [`limits`] the `prlimit` bounds it runs under, and
//! [`exec::run`] runs it in its own process group, killing the group on timeout.

pub mod bwrap;
pub mod exec;
pub mod identity;
pub mod limits;

pub use bwrap::{Jail, JailTools};
pub use limits::ResourceLimits;
