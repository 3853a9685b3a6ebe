//! Fetching: resolve and verify the manifest, then download only the blocks of files the cache lacks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use prewarm_shared::{Chunk, Digest, Manifest, RelPath, RuntimeRef};
use serde::Serialize;
use tokio::task::{JoinError, JoinSet};

use super::assemble::{Assembly, Piece, Target};
use super::cache::FileCache;
use super::error::PullError;
use crate::transfer::Source;

/// Where a fetch stands, reported after each downloaded block (and once before the first, so a
/// progress bar knows its length).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchProgress {
    pub blocks_done: u64,
    pub blocks_needed: u64,
    pub bytes_done: u64,
    /// Known lower bound of the bytes to download: the blocks' extents used by the manifest.
    /// Bundles may carry a little more; `bytes_done` can then exceed it.
    pub bytes_expected: u64,
}

/// What [`fetch_missing`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FetchStats {
    /// Files added to the cache (assembled from blocks or copied from another mode).
    pub files_cached: u64,
    pub blocks_downloaded: u64,
    /// Blocks the manifest references that did not need downloading.
    pub blocks_reused: u64,
    /// Block bytes actually received (their decoded size when they travelled compressed).
    pub bytes_downloaded: u64,
    /// Block body bytes as they came over the network: below `bytes_downloaded` when blocks
    /// travelled zstd-compressed, equal otherwise.
    pub bytes_on_wire: u64,
}

/// Resolves `what` (tag or digest), fetches its manifest, and checks the bytes hash to the
/// digest and parse as a valid canonical manifest. A source is never trusted to have done so.
pub async fn fetch_manifest(
    source: &dyn Source,
    what: &RuntimeRef,
) -> Result<(Digest, Manifest), PullError> {
    let digest = match what {
        RuntimeRef::Digest(d) => *d,
        RuntimeRef::Tagged(name, tag) => source
            .resolve_tag(name, tag)
            .await
            .map_err(|e| PullError::fetch(format!("tag {name}:{tag}"), e))?,
    };
    let bytes = source
        .fetch_manifest(&digest)
        .await
        .map_err(|e| PullError::fetch(format!("manifest {digest}"), e))?;
    let actual = Digest::of(&bytes);
    if actual != digest {
        return Err(PullError::ManifestDigest {
            at: source.location(),
            expected: digest,
            actual,
        });
    }
    let manifest =
        Manifest::parse(&bytes).map_err(|source| PullError::Manifest { digest, source })?;
    Ok((digest, manifest))
}

/// Brings every file of `manifest` into `cache`, downloading only the blocks of files it lacks,
/// at most `concurrency` at a time (0 counts as 1).
///
/// Memory stays near `2 × concurrency × block size`: a block's pieces are written straight to
/// their files in the cache's scratch directory and the block is dropped. Each file is verified
/// against its content digest before it is renamed into the cache; a failure caches nothing
/// for that file, and files already verified stay cached (they are correct). The first error
/// stops new downloads, waits for writes in flight, and is returned.
///
/// # Cancel safety
/// Dropping the future stops downloads; writes already running finish in the background and
/// the scratch directory is removed (or swept by a later `FileCache::open`). The cache never
/// holds a partial or unverified file.
pub async fn fetch_missing(
    source: &dyn Source,
    manifest: &Manifest,
    cache: &FileCache,
    concurrency: usize,
    progress: &(dyn Fn(FetchProgress) + Send + Sync),
) -> Result<FetchStats, PullError> {
    let concurrency = concurrency.max(1);
    let wanted = wanted_files(manifest);
    let scratch = cache.scratch()?;
    let cache2 = cache.clone();
    let (scratch, targets, derived) = tokio::task::spawn_blocking(move || {
        classify(&cache2, &scratch, wanted).map(|(t, d)| (scratch, t, d))
    })
    .await
    .map_err(join_failed)??;

    let blocks = block_plan(&targets);
    let bytes_expected = expected_bytes(manifest, &blocks);
    let asm = Arc::new(Assembly {
        cache: cache.clone(),
        scratch,
        targets,
    });
    let mut stats = FetchStats {
        files_cached: derived,
        ..FetchStats::default()
    };
    let mut at = FetchProgress {
        blocks_needed: blocks.len() as u64,
        bytes_expected,
        ..FetchProgress::default()
    };
    progress(at);

    let mut work: JoinSet<Result<u64, PullError>> = JoinSet::new();
    let empties = asm.clone();
    work.spawn_blocking(move || empties.finish_empty());
    let mut downloads = futures::stream::iter(blocks)
        .map(|(digest, pieces)| async move {
            let got = source.fetch_block(&digest).await;
            (digest, pieces, got)
        })
        .buffer_unordered(concurrency);
    let mut downloads_done = false;
    let mut bytes_on_wire = 0;
    let outcome = loop {
        tokio::select! {
            next = downloads.next(), if !downloads_done && work.len() < concurrency => match next {
                Some((digest, pieces, Ok(fetched))) => {
                    let bytes = fetched.bytes;
                    at.blocks_done += 1;
                    at.bytes_done += bytes.len() as u64;
                    bytes_on_wire += fetched.wire_bytes;
                    progress(at);
                    let asm = asm.clone();
                    work.spawn_blocking(move || asm.apply_block(&digest, &bytes, &pieces));
                }
                Some((digest, pieces, Err(source))) => {
                    let path = &asm.targets[pieces[0].target].path;
                    break Err(PullError::fetch(format!("block {digest} (part of {path:?})"), source));
                }
                None => downloads_done = true,
            },
            Some(joined) = work.join_next() => match joined.map_err(join_failed) {
                Ok(Ok(n)) => stats.files_cached += n,
                Ok(Err(e)) | Err(e) => break Err(e),
            },
            else => break Ok(()),
        }
    };
    drop(downloads);
    // Writes in flight finish before the scratch directory goes away with `asm`.
    work.shutdown().await;
    outcome?;
    stats.blocks_downloaded = at.blocks_done;
    stats.bytes_downloaded = at.bytes_done;
    stats.bytes_on_wire = bytes_on_wire;
    stats.blocks_reused = (manifest.blocks().len() as u64).saturating_sub(at.blocks_done);
    Ok(stats)
}

/// One file content of the manifest: a path for messages, its chunks, and the manifest modes
/// it is needed under, keyed by cache mode (two modes with the same cache mode share a file).
struct Wanted {
    path: RelPath,
    chunks: Vec<Chunk>,
    modes: BTreeMap<u32, u32>,
}

fn wanted_files(manifest: &Manifest) -> Vec<(Digest, Wanted)> {
    let mut index: HashMap<Digest, usize> = HashMap::new();
    let mut out: Vec<(Digest, Wanted)> = Vec::new();
    for (path, mode, digest, chunks) in manifest.files() {
        let i = *index.entry(*digest).or_insert_with(|| {
            out.push((
                *digest,
                Wanted {
                    path: path.clone(),
                    chunks: chunks.to_vec(),
                    modes: BTreeMap::new(),
                },
            ));
            out.len() - 1
        });
        out[i].1.modes.insert(FileCache::cache_mode(mode), mode);
    }
    out
}

/// Splits wanted files into those to assemble from blocks and those the cache already has
/// under another mode (copied locally now, counted in the returned number). Blocking.
fn classify(
    cache: &FileCache,
    scratch: &super::cache::Scratch,
    wanted: Vec<(Digest, Wanted)>,
) -> Result<(Vec<Target>, u64), PullError> {
    let mut targets = Vec::new();
    let mut derived = 0;
    for (digest, w) in wanted {
        let size = w.chunks.iter().map(|c| c.size).sum();
        let (present, missing): (Vec<u32>, Vec<u32>) = w
            .modes
            .values()
            .partition(|&&mode| cache.holds(&digest, mode, size));
        if missing.is_empty() {
            continue;
        }
        match present.first() {
            Some(&from) => {
                for &mode in &missing {
                    cache.derive(scratch, &digest, from, mode)?;
                    derived += 1;
                }
            }
            None => targets.push(Target::new(digest, w.path, missing, w.chunks)),
        }
    }
    Ok((targets, derived))
}

/// The blocks to download, in manifest order, each with the pieces it carries.
fn block_plan(targets: &[Target]) -> Vec<(Digest, Vec<Piece>)> {
    let mut index: HashMap<Digest, usize> = HashMap::new();
    let mut blocks: Vec<(Digest, Vec<Piece>)> = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        let mut file_offset = 0u64;
        for c in &target.chunks {
            let i = *index.entry(c.block).or_insert_with(|| {
                blocks.push((c.block, Vec::new()));
                blocks.len() - 1
            });
            blocks[i].1.push(Piece {
                target: t,
                block_offset: c.offset,
                size: c.size,
                file_offset,
            });
            file_offset += c.size;
        }
    }
    blocks
}

/// Sum over the blocks to download of the furthest byte any manifest chunk uses in each.
fn expected_bytes(manifest: &Manifest, blocks: &[(Digest, Vec<Piece>)]) -> u64 {
    let mut extent: HashMap<Digest, u64> = blocks.iter().map(|(d, _)| (*d, 0)).collect();
    for (_, _, _, chunks) in manifest.files() {
        for c in chunks {
            if let Some(e) = extent.get_mut(&c.block) {
                *e = (*e).max(c.offset.saturating_add(c.size));
            }
        }
    }
    extent.values().sum()
}

/// A blocking task panicked (re-raised here) or was cancelled.
fn join_failed(e: JoinError) -> PullError {
    if e.is_panic() {
        std::panic::resume_unwind(e.into_panic());
    }
    PullError::io(
        "assembling files in",
        "the cache scratch directory",
        std::io::Error::other(e),
    )
}
