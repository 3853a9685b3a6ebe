//! End-to-end: the distribution spine through the real binary — push, the origin's HTTP API, pull.

mod api;
mod cache_verify;
mod compression;
mod hostile;
mod import;
mod push_pull;
mod store_damage;
