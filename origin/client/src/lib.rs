//! prewarm's client, which every sandbox host runs: pack a runtime, push it, pull it into a tree
//! of hard links from a file-level cache.
//!
//! Data flows one way: [`pack`] turns a source into a manifest and blocks, [`push`] sends them
//! through a [`transfer::Sink`], and [`pull`] rebuilds a tree from a [`transfer::Source`]. An
//! origin over HTTP ([`remote::Remote`]) is both. Nothing here links a server, a store backend
//! or a terminal UI: progress is reported through [`pull::PullProgress`].

pub mod pack;
pub mod pull;
pub mod push;
pub mod remote;
pub mod transfer;
