//! Packing ordered layer archives that a caller found elsewhere (an image's blobs), not a pack directory.
//!
//! The layers go through the same reader, tree and limits as a pack's `layers/`: names checked,
//! whiteouts and opaque directories applied, nothing written outside the stash. What differs
//! is where the archives are (a section of any file) and that their digests are checked
//! against what the caller expects.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use prewarm_shared::{pack_key, Digest, LockFile, Meta, RelPath};

use super::layers::{apply_layer, Compression};
use super::stash::Stash;
use super::tree::{Outside, Tree};
use super::{finish, Budget, ChunkParams, PackError, PackLimits, Packed};

/// One layer archive: `len` bytes at `offset` of `path` (a blob file, or a member of an
/// uncompressed archive), with the digests it must have.
#[derive(Debug, Clone)]
pub struct LayerInput {
    /// Names the layer in errors (`layer NAME: entry …`).
    pub name: String,
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    pub compression: Compression,
    /// SHA-256 of the archive as stored (an image manifest's layer digest), when known. At
    /// least one of `digest` and `tar_digest` must be given.
    pub digest: Option<Digest>,
    /// SHA-256 of the uncompressed tar (an image config's `diff_id`), when known.
    pub tar_digest: Option<Digest>,
}

/// A runtime made of caller-supplied layers.
#[derive(Debug, Clone)]
pub struct LayeredSource {
    pub meta: Meta,
    pub lock: Option<LockFile>,
    pub layers: Vec<LayerInput>,
    /// The directory of the layered tree that becomes the runtime (`None`: all of it).
    pub root: Option<RelPath>,
}

/// The packed runtime and what lay outside its root.
#[derive(Debug)]
pub struct LayeredPack {
    pub packed: Packed,
    pub outside_root: Outside,
}

/// Applies `src.layers` in order, checking each one's digests, takes the subtree at
/// `src.root`, and packs it. Blocking: call from `spawn_blocking`.
///
/// # Errors
/// As [`super::pack`], plus [`PackError::DigestMismatch`] naming the layer whose bytes are not
/// what the caller expects (checked once the layer has been read, before anything is kept),
/// and [`PackError::Invalid`] if the root is not a directory of the result.
pub fn pack_layers(src: LayeredSource, limits: &PackLimits) -> Result<LayeredPack, PackError> {
    src.meta.validate()?;
    let mut budget = Budget::new(*limits);
    let stash = Stash::new()?;
    let mut tree = Tree::default();
    let mut digests = Vec::with_capacity(src.layers.len());
    for (i, l) in src.layers.iter().enumerate() {
        tree.set_layer(i + 1);
        let origin = format!("layer {}", l.name);
        if l.digest.is_none() && l.tar_digest.is_none() {
            return Err(PackError::Invalid(format!(
                "{origin}: no digest to verify it against"
            )));
        }
        let mut f = File::open(&l.path)
            .map_err(PackError::io(format!("{origin}: {}", l.path.display())))?;
        f.seek(SeekFrom::Start(l.offset))
            .map_err(PackError::io(format!("{origin}: {}", l.path.display())))?;
        let (stored, tar) = apply_layer(
            &mut tree,
            &stash,
            &mut budget,
            &origin,
            f.take(l.len),
            l.compression,
            l.tar_digest.is_some(),
        )?;
        let mismatch =
            |what: &'static str, expected: Digest, actual: Digest| PackError::DigestMismatch {
                origin: origin.clone(),
                what,
                expected,
                actual,
            };
        if let Some(expected) = l.digest.filter(|d| *d != stored) {
            return Err(mismatch("archive", expected, stored));
        }
        if let (Some(expected), Some(actual)) = (l.tar_digest, tar) {
            if expected != actual {
                return Err(mismatch("uncompressed tar (diff_id)", expected, actual));
            }
        }
        digests.push(stored);
    }
    let (tree, outside_root) = match &src.root {
        Some(root) => tree.subtree(root).map_err(|e| {
            PackError::Invalid(format!(
                "the runtime's root directory {e} in the layered tree"
            ))
        })?,
        None => (tree, Outside::default()),
    };
    let packed = finish(
        tree,
        Some(src.meta),
        src.lock,
        Some(pack_key(&digests)),
        Some(stash),
        &ChunkParams::default(),
    )?;
    Ok(LayeredPack {
        packed,
        outside_root,
    })
}
