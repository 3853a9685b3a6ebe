//! prewarm's ground floor: validated types shared by origin, edge and CLI. Pure, no I/O, builds for wasm32.
//!
//! Nothing raw crosses a boundary: a digest, a relative path, a runtime name or a tag is parsed
//! once into its type here, and from then on a `String` never carries it.

pub mod conditional;
pub mod digest;
pub mod encoding;
pub mod limits;
pub mod manifest;
pub mod name;
#[cfg(feature = "openapi")]
mod openapi;
pub mod pack;
pub mod path;
pub mod range;
pub mod run;
pub mod sandbox;
pub mod warmed;
pub mod wire;

pub use digest::{Digest, DigestError, Hasher};
pub use manifest::{Chunk, Entry, Manifest, ManifestError, SCHEMA};
pub use name::{NameError, RuntimeName, RuntimeRef, Tag};
pub use pack::{pack_key, LockFile, LockedPackage, Meta, PackError};
pub use path::{PathError, RelPath};
pub use range::{content_range, decide_range, RangeDecision};
