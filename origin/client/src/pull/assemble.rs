//! Assembling files from downloaded blocks: each piece written in place, each file verified, then cached.

use std::fs;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};

use prewarm_shared::{Chunk, Digest, RelPath};

use super::cache::{hash_file, FileCache, Scratch};
use super::error::{io_err, PullError};

/// One file content to build: assembled once, then cached under every mode the tree needs.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) digest: Digest,
    /// A path with this content, for messages.
    pub(crate) path: RelPath,
    /// Manifest modes to cache it under, one per distinct cache mode; never empty.
    pub(crate) modes: Vec<u32>,
    pub(crate) chunks: Vec<Chunk>,
    /// Pieces not yet written; whoever writes the last one verifies and caches the file.
    remaining: AtomicUsize,
}

impl Target {
    pub(crate) fn new(digest: Digest, path: RelPath, modes: Vec<u32>, chunks: Vec<Chunk>) -> Self {
        let remaining = AtomicUsize::new(chunks.len());
        Self {
            digest,
            path,
            modes,
            chunks,
            remaining,
        }
    }
}

/// `size` bytes at `block_offset` in a block go to `file_offset` of target `target`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    pub(crate) target: usize,
    pub(crate) block_offset: u64,
    pub(crate) size: u64,
    pub(crate) file_offset: u64,
}

/// The shared state of one fetch: blocking tasks write into `scratch` and move finished files
/// into `cache`. Memory holds only the blocks in flight; file bytes go straight to disk.
#[derive(Debug)]
pub(crate) struct Assembly {
    pub(crate) cache: FileCache,
    pub(crate) scratch: Scratch,
    pub(crate) targets: Vec<Target>,
}

impl Assembly {
    /// Writes every piece `bytes` (block `block`) carries, at its offset in its file (no second
    /// copy of the file is ever made). Returns how many cache files this completed. Blocking.
    pub(crate) fn apply_block(
        &self,
        block: &Digest,
        bytes: &[u8],
        pieces: &[Piece],
    ) -> Result<u64, PullError> {
        let mut cached = 0;
        for p in pieces {
            let t = &self.targets[p.target];
            let needed = p.block_offset.saturating_add(p.size);
            if needed > bytes.len() as u64 {
                return Err(PullError::BlockTooShort {
                    block: *block,
                    len: bytes.len() as u64,
                    needed,
                    path: t.path.clone(),
                });
            }
            let data = &bytes[p.block_offset as usize..needed as usize];
            // A one-chunk file (most files: bundled or whole) is verified from memory, before
            // anything is written; bigger files are re-read once complete.
            let single = t.chunks.len() == 1;
            if single {
                let actual = Digest::of(data);
                if actual != t.digest {
                    return Err(integrity(t, actual));
                }
            }
            let part = self.scratch.part(&t.digest);
            let file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                // Other pieces may be in it already: pieces are written where they belong.
                .truncate(false)
                .mode(0o600)
                .open(&part)
                .map_err(io_err("creating", &part))?;
            file.write_all_at(data, p.file_offset)
                .map_err(io_err("writing", &part))?;
            drop(file);
            if t.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                cached += self.complete(t, single)?;
            }
        }
        Ok(cached)
    }

    /// Caches the targets that have no chunks (empty files). Blocking.
    pub(crate) fn finish_empty(&self) -> Result<u64, PullError> {
        let mut cached = 0;
        for t in self.targets.iter().filter(|t| t.chunks.is_empty()) {
            let part = self.scratch.part(&t.digest);
            fs::File::create(&part).map_err(io_err("creating", &part))?;
            cached += self.complete(t, false)?;
        }
        Ok(cached)
    }

    /// Verifies (unless already done from memory) and caches a fully written file.
    fn complete(&self, t: &Target, verified: bool) -> Result<u64, PullError> {
        let part = self.scratch.part(&t.digest);
        if !verified {
            let actual = hash_file(&part).map_err(io_err("reading back", &part))?;
            if actual != t.digest {
                // Best effort: the scratch directory goes away with the fetch anyway.
                let _ = fs::remove_file(&part);
                return Err(integrity(t, actual));
            }
        }
        let first = t.modes[0];
        self.cache.insert(&part, &t.digest, first)?;
        for &mode in &t.modes[1..] {
            self.cache.derive(&self.scratch, &t.digest, first, mode)?;
        }
        Ok(t.modes.len() as u64)
    }
}

fn integrity(t: &Target, actual: Digest) -> PullError {
    PullError::FileIntegrity {
        path: t.path.clone(),
        expected: t.digest,
        actual,
    }
}
