//! The block planner: small files bundled with file-granular content-defined cuts, big files cut by FastCDC.
//!
//! Files arrive in manifest (path) order. The parameters and the measurements behind them are
//! in docs/CHUNKING.md. What the planner guarantees:
//! - a file's chunks, concatenated, are exactly its bytes; an empty file has no chunks;
//! - identical contents and identical blocks are planned once;
//! - no block exceeds [`MAX_BLOCK_SIZE`];
//! - the plan depends only on the tree (paths, contents), never on readdir order or timing.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use prewarm_shared::wire::MAX_BLOCK_SIZE;
use prewarm_shared::{Chunk, Digest, Entry, Hasher, RelPath};

use super::{PackError, Piece, PlannedBlock};

/// How contents are cut into blocks.
#[derive(Debug, Clone)]
pub(crate) struct ChunkParams {
    /// Files up to this size are bundled (0: no bundles, every file is its own block).
    pub(crate) small_max: u64,
    /// Expected bundle size: a file of `s` bytes closes its bundle with probability
    /// `s / bundle_avg`, decided by its content digest, so boundaries resynchronise right
    /// after a changed file instead of shifting every later bundle.
    pub(crate) bundle_avg: u64,
    /// A bundle is closed before it would grow past this.
    pub(crate) bundle_max: u64,
    /// Files above this are cut by FastCDC; up to it (and above `small_max`) they are one
    /// block each. Files above [`MAX_BLOCK_SIZE`] are always cut.
    pub(crate) cdc_above: u64,
    pub(crate) cdc_min: u32,
    pub(crate) cdc_avg: u32,
    pub(crate) cdc_max: u32,
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self {
            small_max: 64 << 10,
            bundle_avg: 128 << 10,
            bundle_max: 512 << 10,
            cdc_above: 1 << 20,
            cdc_min: 256 << 10,
            cdc_avg: 1 << 20,
            cdc_max: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum BlockRef {
    Done(Digest),
    /// A bundle still being filled, by index; its digest is known when it closes.
    Bundle(usize),
}

#[derive(Debug, Clone, Copy)]
struct PendingChunk {
    block: BlockRef,
    offset: u64,
    size: u64,
}

struct PendingFile {
    path: RelPath,
    mode: u32,
    size: u64,
    digest: Digest,
    chunks: Vec<PendingChunk>,
}

struct OpenBundle {
    index: usize,
    pieces: Vec<Piece>,
    hasher: Hasher,
}

/// Plans blocks for files fed in path order.
pub(crate) struct Chunker {
    params: ChunkParams,
    files: Vec<PendingFile>,
    by_content: HashMap<Digest, Vec<PendingChunk>>,
    bundle: Option<OpenBundle>,
    bundle_digests: Vec<Option<Digest>>,
    blocks: Vec<PlannedBlock>,
    seen: HashSet<Digest>,
}

impl Chunker {
    pub(crate) fn new(params: ChunkParams) -> Self {
        Self {
            params,
            files: Vec::new(),
            by_content: HashMap::new(),
            bundle: None,
            bundle_digests: Vec::new(),
            blocks: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Plans `path`, whose `size` bytes are in `file`. `expect` is the content digest when
    /// already known (stashed layer contents); a mismatch means the stash was tampered with.
    pub(crate) fn add_file(
        &mut self,
        path: RelPath,
        mode: u32,
        size: u64,
        file: Arc<Path>,
        expect: Option<Digest>,
    ) -> Result<(), PackError> {
        let (digest, chunks) = if size == 0 {
            (Digest::of(b""), Vec::new())
        } else if size <= self.params.small_max {
            self.small(&path, size, file)?
        } else if size <= self.params.cdc_above && size <= MAX_BLOCK_SIZE {
            self.whole(&path, size, file)?
        } else {
            self.cdc(&path, size, file)?
        };
        if let Some(e) = expect {
            if e != digest {
                return Err(PackError::Invalid(format!(
                    "{path}: stashed content hashes to {digest}, expected {e}"
                )));
            }
        }
        self.by_content
            .entry(digest)
            .or_insert_with(|| chunks.clone());
        self.files.push(PendingFile {
            path,
            mode,
            size,
            digest,
            chunks,
        });
        Ok(())
    }

    /// Closes the last bundle and resolves every file's chunks to block digests.
    pub(crate) fn finish(mut self) -> Result<(Vec<Entry>, Vec<PlannedBlock>), PackError> {
        self.close_bundle();
        let mut entries = Vec::with_capacity(self.files.len());
        for f in self.files {
            let mut chunks = Vec::with_capacity(f.chunks.len());
            for c in f.chunks {
                let block = match c.block {
                    BlockRef::Done(d) => d,
                    BlockRef::Bundle(i) => self
                        .bundle_digests
                        .get(i)
                        .copied()
                        .flatten()
                        .ok_or_else(|| PackError::Invalid(format!("bundle {i} never closed")))?,
                };
                chunks.push(Chunk {
                    block,
                    offset: c.offset,
                    size: c.size,
                });
            }
            entries.push(Entry::File {
                path: f.path,
                mode: f.mode,
                size: f.size,
                digest: f.digest,
                chunks,
            });
        }
        Ok((entries, self.blocks))
    }

    fn small(
        &mut self,
        path: &RelPath,
        size: u64,
        file: Arc<Path>,
    ) -> Result<(Digest, Vec<PendingChunk>), PackError> {
        let mut data = Vec::with_capacity(size as usize);
        open(path, &file)?
            .take(size + 1)
            .read_to_end(&mut data)
            .map_err(PackError::io(format!("reading {}", file.display())))?;
        check_len(path, size, data.len() as u64)?;
        let digest = Digest::of(&data);
        if let Some(chunks) = self.by_content.get(&digest) {
            return Ok((digest, chunks.clone()));
        }
        if self.bundle_len() + size > self.params.bundle_max {
            self.close_bundle();
        }
        let b = match &mut self.bundle {
            Some(b) => b,
            None => {
                self.bundle_digests.push(None);
                self.bundle.insert(OpenBundle {
                    index: self.bundle_digests.len() - 1,
                    pieces: Vec::new(),
                    hasher: Hasher::new(),
                })
            }
        };
        let chunk = PendingChunk {
            block: BlockRef::Bundle(b.index),
            offset: b.hasher.len(),
            size,
        };
        b.hasher.update(&data);
        b.pieces.push(Piece {
            file,
            offset: 0,
            len: size,
        });
        if cuts_after(&digest, size, self.params.bundle_avg) {
            self.close_bundle();
        }
        Ok((digest, vec![chunk]))
    }

    fn bundle_len(&self) -> u64 {
        self.bundle.as_ref().map_or(0, |b| b.hasher.len())
    }

    fn close_bundle(&mut self) {
        if let Some(b) = self.bundle.take() {
            let size = b.hasher.len();
            let d = b.hasher.finish();
            if let Some(slot) = self.bundle_digests.get_mut(b.index) {
                *slot = Some(d);
            }
            self.add_block(d, size, b.pieces);
        }
    }

    fn whole(
        &mut self,
        path: &RelPath,
        size: u64,
        file: Arc<Path>,
    ) -> Result<(Digest, Vec<PendingChunk>), PackError> {
        let mut h = Hasher::new();
        let mut r = open(path, &file)?.take(size + 1);
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = r
                .read(&mut buf)
                .map_err(PackError::io(format!("reading {}", file.display())))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        check_len(path, size, h.len())?;
        let d = h.finish();
        let piece = Piece {
            file,
            offset: 0,
            len: size,
        };
        self.add_block(d, size, vec![piece]);
        Ok((
            d,
            vec![PendingChunk {
                block: BlockRef::Done(d),
                offset: 0,
                size,
            }],
        ))
    }

    fn cdc(
        &mut self,
        path: &RelPath,
        size: u64,
        file: Arc<Path>,
    ) -> Result<(Digest, Vec<PendingChunk>), PackError> {
        let p = &self.params;
        let r = open(path, &file)?.take(size + 1);
        let cdc = fastcdc::v2020::StreamCDC::new(r, p.cdc_min, p.cdc_avg, p.cdc_max);
        let mut whole = Hasher::new();
        let mut chunks = Vec::new();
        for c in cdc {
            let c = c.map_err(|e| PackError::Io {
                context: format!("reading {}", file.display()),
                source: std::io::Error::other(e.to_string()),
            })?;
            whole.update(&c.data);
            let d = Digest::of(&c.data);
            let len = c.length as u64;
            let piece = Piece {
                file: file.clone(),
                offset: c.offset,
                len,
            };
            self.add_block(d, len, vec![piece]);
            chunks.push(PendingChunk {
                block: BlockRef::Done(d),
                offset: 0,
                size: len,
            });
        }
        check_len(path, size, whole.len())?;
        Ok((whole.finish(), chunks))
    }

    fn add_block(&mut self, digest: Digest, size: u64, pieces: Vec<Piece>) {
        if self.seen.insert(digest) {
            self.blocks.push(PlannedBlock {
                digest,
                size,
                pieces,
            });
        }
    }
}

/// The file-granular cut: true with probability `size / avg`, decided by the content digest
/// (uniform), so the same file always cuts the same way, whatever came before it.
fn cuts_after(digest: &Digest, size: u64, avg: u64) -> bool {
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest.as_bytes()[..8]);
    let h = u128::from(u64::from_be_bytes(head));
    h * u128::from(avg.max(1)) < u128::from(size) << 64
}

fn open(path: &RelPath, file: &Path) -> Result<File, PackError> {
    File::open(file).map_err(PackError::io(format!("{path}: opening {}", file.display())))
}

fn check_len(path: &RelPath, expected: u64, actual: u64) -> Result<(), PackError> {
    if expected == actual {
        return Ok(());
    }
    Err(PackError::Entry {
        origin: "source".into(),
        entry: path.to_string(),
        reason: format!("changed while packing: {expected} bytes expected, {actual} read"),
    })
}
