//! Runtimes from container images: an OCI layout, an OCI archive or a `docker save` archive
//! becomes an ordinary prewarm runtime.
//!
//! The image is read where it is (an archive is indexed, never unpacked), its documents are
//! verified against their digests before they are parsed, one manifest is chosen by
//! `--ref` and `--platform`, and the layers go through the client's own pack path
//! (`prewarm_client::pack::pack_layers`): the same hostile-archive rules, whiteouts, limits and
//! chunking as a pushed pack, each layer checked against its manifest digest and its config
//! `diff_id`. The config's `Env` becomes the runtime's env; fields a sandbox has no use for
//! are reported. A sidecar ([`Sidecar`]) supplies what an image lacks: prefix, root, warm
//! commands, interpreters.

mod blobs;
mod error;
mod import;
mod platform;
mod resolve;
mod runtime;
mod spec;

#[cfg(test)]
mod tests;

pub use error::ImportError;
pub use import::{import, prepare, ImageInfo, ImportReport, ImportRequest, Prepared};
pub use platform::Platform;
pub use resolve::Format;
pub use spec::Sidecar;
