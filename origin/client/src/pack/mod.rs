//! Packing: a plain directory or a runtime pack (meta.json + layers + lock.json) → manifest + planned blocks.
//!
//! The flow is one way: the source is read into a virtual [`tree`] (layers are never unpacked
//! onto the real filesystem: file contents go to a [`stash`] named by digest), then the
//! [`chunk`] planner cuts the final tree's contents into blocks. No block's bytes are kept in
//! memory: a [`PlannedBlock`] records which pieces of which files rebuild it, so pushing a
//! runtime costs memory in its file count, never in its size. See docs/CHUNKING.md for why the
//! blocks are cut the way they are.

mod chunk;
mod layered;
mod layers;
mod source_dir;
mod stash;
mod tar_reader;

pub use tar_reader::{clean_name as clean_tar_name, trim_nul as trim_tar_nul};
mod tree;
mod workspace;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use prewarm_shared::{Digest, Manifest};

pub(crate) use chunk::ChunkParams;
pub use layered::{pack_layers, LayerInput, LayeredPack, LayeredSource};
pub use layers::Compression;
pub use tree::Outside;
pub use workspace::WorkspacePlanner;

/// Limits against decompression bombs and runaway trees.
#[derive(Debug, Clone, Copy)]
pub struct PackLimits {
    /// Most bytes all layers may unpack to, in total.
    pub max_total_bytes: u64,
    /// Most entries all layers may hold, in total (every tar record counts, extension headers
    /// and whiteouts included, so a layer cannot make pack loop over millions of them).
    pub max_entries: u64,
}

impl Default for PackLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: 16 << 30,
            max_entries: 2_000_000,
        }
    }
}

/// Why a source could not be packed. Messages name the offending entry (layer and path).
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// `meta.json` or `lock.json` refused (unknown key, bad layer name…).
    #[error(transparent)]
    Meta(#[from] prewarm_shared::PackError),
    /// One entry of a layer (or of a plain directory) is refused: it would escape the tree,
    /// is a device or fifo, or is otherwise not something a runtime may carry.
    #[error("{origin}: entry {entry:?}: {reason}")]
    Entry {
        /// `layer NAME` or `directory PATH`.
        origin: String,
        entry: String,
        reason: String,
    },
    /// A [`PackLimits`] limit was exceeded; packing stopped at this entry.
    #[error("{origin}: entry {entry:?}: unpacking exceeds {limit} ({max})")]
    Limit {
        origin: String,
        entry: String,
        /// `max_total_bytes` or `max_entries`.
        limit: &'static str,
        max: u64,
    },
    /// A layer's bytes are not the ones its source declared (an image's manifest or config).
    #[error("{origin}: {what} has digest {actual}, not the {expected} declared for it")]
    DigestMismatch {
        origin: String,
        /// `archive` or `uncompressed tar (diff_id)`.
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    /// Bytes re-read for a block no longer hash to it: the source changed after packing.
    #[error("block {digest} no longer matches its source ({reason}); was the source modified during push?")]
    Changed { digest: Digest, reason: String },
}

impl PackError {
    /// Stable machine code, for `--json` output and logs.
    pub fn code(&self) -> &'static str {
        match self {
            PackError::Invalid(_) => "bad_source",
            PackError::Io { .. } => "io",
            PackError::Meta(_) => "bad_pack",
            PackError::Entry { .. } => "bad_entry",
            PackError::Limit { .. } => "limit_exceeded",
            PackError::Changed { .. } => "source_changed",
            PackError::DigestMismatch { .. } => "digest_mismatch",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PackError {
        let context = context.into();
        move |source| PackError::Io { context, source }
    }
}

/// A run of bytes inside one file (a source file or a stash file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) file: Arc<Path>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// One block to upload, and how to rebuild its bytes without keeping them in memory.
#[derive(Debug, Clone)]
pub struct PlannedBlock {
    pub digest: Digest,
    pub size: u64,
    /// Concatenated in order, these pieces are the block's bytes.
    pub(crate) pieces: Vec<Piece>,
}

/// The result of packing: the manifest and every distinct block it references.
#[derive(Debug)]
pub struct Packed {
    pub manifest: Manifest,
    /// Distinct, in the order the planner first cut them (path order).
    pub blocks: Vec<PlannedBlock>,
    /// Where layer contents were unpacked; removed when `Packed` is dropped.
    _stash: Option<stash::Stash>,
}

impl Packed {
    /// Re-reads one block's bytes from the source (or the unpack stash) and verifies them.
    ///
    /// # Errors
    /// [`PackError::Io`] if a piece cannot be read, [`PackError::Changed`] if the bytes no
    /// longer hash to the block's digest (a plain-directory source edited during push).
    pub fn read_block(&self, block: &PlannedBlock) -> Result<Bytes, PackError> {
        block.read()
    }
}

impl PlannedBlock {
    /// Re-reads this block's bytes from the files it was planned from and verifies them
    /// (see [`Packed::read_block`]; a workspace snapshot's blocks have no `Packed`).
    ///
    /// # Errors
    /// As [`Packed::read_block`].
    pub fn read(&self) -> Result<Bytes, PackError> {
        let block = self;
        let size = usize::try_from(block.size)
            .map_err(|_| PackError::Invalid(format!("block {} is too large", block.digest)))?;
        let mut buf = BytesMut::zeroed(size);
        let mut at = 0usize;
        for piece in &block.pieces {
            let len = piece.len as usize;
            let dst = buf
                .get_mut(at..at + len)
                .ok_or_else(|| PackError::Changed {
                    digest: block.digest,
                    reason: "pieces exceed the block size".into(),
                })?;
            read_piece(piece, dst).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => PackError::Changed {
                    digest: block.digest,
                    reason: format!("{} is shorter than when packed", piece.file.display()),
                },
                _ => PackError::Io {
                    context: format!("reading {}", piece.file.display()),
                    source: e,
                },
            })?;
            at += len;
        }
        let actual = Digest::of(&buf);
        if at != size || actual != block.digest {
            return Err(PackError::Changed {
                digest: block.digest,
                reason: format!("re-read {at} bytes hashing to {actual}"),
            });
        }
        Ok(buf.freeze())
    }
}

fn read_piece(piece: &Piece, dst: &mut [u8]) -> std::io::Result<()> {
    let mut f = File::open(&piece.file)?;
    f.seek(SeekFrom::Start(piece.offset))?;
    f.read_exact(dst)
}

/// Packs `src`. Blocking (file I/O, hashing): call from `spawn_blocking`.
///
/// A directory holding `meta.json` is a runtime pack; any other directory is packed as is.
pub fn pack(src: &Path, limits: &PackLimits) -> Result<Packed, PackError> {
    pack_with(src, limits, &ChunkParams::default())
}

pub(crate) fn pack_with(
    src: &Path,
    limits: &PackLimits,
    params: &ChunkParams,
) -> Result<Packed, PackError> {
    let md = std::fs::metadata(src).map_err(PackError::io(format!("{}", src.display())))?;
    if !md.is_dir() {
        return Err(PackError::Invalid(format!(
            "{} is not a directory",
            src.display()
        )));
    }
    let mut budget = Budget::new(*limits);
    let (tree, meta, lock, pack_key, stash) = if src.join("meta.json").exists() {
        let rp = layers::read_runtime_pack(src, &mut budget)?;
        (
            rp.tree,
            Some(rp.meta),
            rp.lock,
            Some(rp.pack_key),
            Some(rp.stash),
        )
    } else {
        (
            source_dir::read_dir(src, &mut budget)?,
            None,
            None,
            None,
            None,
        )
    };
    finish(tree, meta, lock, pack_key, stash, params)
}

/// Chunks a finished tree into blocks and a validated manifest.
pub(crate) fn finish(
    tree: tree::Tree,
    meta: Option<prewarm_shared::Meta>,
    lock: Option<prewarm_shared::LockFile>,
    pack_key: Option<String>,
    stash: Option<stash::Stash>,
    params: &ChunkParams,
) -> Result<Packed, PackError> {
    let (mut entries, files) = tree.into_parts();
    let mut chunker = chunk::Chunker::new(params.clone());
    for f in files {
        let file: Arc<Path> = match &f.content {
            tree::Content::Source(p) => p.clone(),
            tree::Content::Stash(d) => match &stash {
                Some(s) => Arc::from(s.path(d)),
                None => return Err(PackError::Invalid("stash missing".into())),
            },
        };
        let expect = match f.content {
            tree::Content::Stash(d) => Some(d),
            tree::Content::Source(_) => None,
        };
        chunker.add_file(f.path, f.mode, f.size, file, expect)?;
    }
    let (files, blocks) = chunker.finish()?;
    entries.extend(files);
    let mut manifest = Manifest::new(entries);
    manifest.meta = meta;
    manifest.lock = lock;
    manifest.pack_key = pack_key;
    manifest
        .validate()
        .map_err(|e| PackError::Invalid(format!("packed tree is not a valid manifest: {e}")))?;
    Ok(Packed {
        manifest,
        blocks,
        _stash: stash,
    })
}

/// What the source has consumed of its [`PackLimits`] so far, across all layers.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: PackLimits,
    bytes: u64,
    entries: u64,
}

impl Budget {
    pub(crate) fn new(limits: PackLimits) -> Self {
        Self {
            limits,
            bytes: 0,
            entries: 0,
        }
    }

    /// Counts one more entry; `Err(limit name, max)` once over.
    pub(crate) fn entry(&mut self) -> Result<(), (&'static str, u64)> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(("max_entries", self.limits.max_entries));
        }
        Ok(())
    }

    /// Counts `n` more unpacked bytes; `Err(limit name, max)` once over.
    pub(crate) fn bytes(&mut self, n: u64) -> Result<(), (&'static str, u64)> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.max_total_bytes {
            return Err(("max_total_bytes", self.limits.max_total_bytes));
        }
        Ok(())
    }
}
