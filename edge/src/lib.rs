//! prewarm's edge tier: a Rust/Wasm worker that serves the origin's read API from the CDN cache.
//!
//! Everything that decides anything — routing, cache keys, header policy, ranges, conditional
//! requests, verification of origin bytes against the URL digest, error mapping — is plain
//! Rust in [`flow`] and its helpers, tested natively. The Workers entry point (`glue`, wasm32
//! only) is a thin adapter from `Request`/`Env`/`Cache`/`Fetch` to [`flow::Platform`].

pub mod config;
pub mod deadline;
pub mod decode;
pub mod error;
pub mod flow;
pub mod origins;
pub mod policy;
pub mod route;

#[cfg(test)]
mod flow_tests;
#[cfg(target_arch = "wasm32")]
mod glue;

pub use config::Config;
pub use error::EdgeError;
pub use flow::{handle, Body, Incoming, Platform, Relay, RelayMode, Reply};
