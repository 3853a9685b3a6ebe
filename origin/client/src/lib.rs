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

/// Entry points for the fuzz targets in `tests/fuzz`, which reach code that is otherwise
/// private. Not an API: nothing outside the fuzzers may call these.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes a zstd `body` fed to the pull path's bounded decoder in pieces of `piece` bytes,
    /// refusing more than `limit` decoded bytes, exactly as a block or manifest GET does.
    ///
    /// # Errors
    /// The decoder's message: not zstd, past `limit`, or ends mid-frame.
    pub fn zstd_bounded(body: &[u8], limit: u64, piece: usize) -> Result<Vec<u8>, String> {
        let mut d = crate::remote::decode::Bounded::new(limit)?;
        for p in body.chunks(piece.max(1)) {
            d.write(p)?;
        }
        d.finish().map(Vec::from)
    }
}
