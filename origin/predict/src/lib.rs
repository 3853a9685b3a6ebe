//! Predictive warming: which runtimes to warm before they are asked for, and a simulator that measures it.
//!
//! The crate is pure (no I/O beyond reading and writing trace files, no clock, no async): the
//! server feeds a [`Predictor`] its usage and applies the plans through its warmer, and
//! `prewarm simulate` feeds the same policies a trace on a virtual clock ([`sim`]).

pub mod catalog;
pub mod error;
pub mod generate;
pub mod plot;
pub mod policy;
pub mod sim;
pub mod sweep;
pub mod trace;

pub use catalog::{Catalog, RuntimeSpec};
pub use error::PredictError;
pub use policy::{Plan, PolicyKind, Predictor, Rule, Usage, Want};
pub use sim::{simulate, SimOptions};
pub use trace::{Event, Trace};

/// A runtime as the policies see it: an index into the trace's (or the server's) name table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct RuntimeId(pub u32);

/// A user as the policies see it: an index into the name table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct UserId(pub u32);

/// Seconds on the policy's clock: virtual in the simulator, Unix time in the server.
pub type Secs = u64;

/// Seconds in an hour and a day, for the hourly and daily rules.
pub const HOUR: Secs = 3600;
/// Seconds in a day.
pub const DAY: Secs = 86_400;
