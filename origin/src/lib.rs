//! prewarm origin: content-addressed stores, the HTTP API, packing (push) and pulling with instant links.
//!
//! Data flows one way: [`pack`] turns a source into a manifest and blocks, [`transfer`] moves
//! them to a [`store`] (locally or through [`server`] over HTTP), and [`pull`] rebuilds a tree
//! on a host from a file-level cache.

pub mod cli_output;
pub mod config;
pub mod error;
pub mod pack;
pub mod pull;
pub mod push;
pub mod remote;
pub mod repo;
pub mod sandbox;
pub mod server;
pub mod store;
pub mod transfer;
pub mod warm;
