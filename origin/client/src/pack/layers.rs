//! Reading a runtime pack: meta.json, lock.json and its tar layers, applied in order to a virtual tree.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use prewarm_shared::{pack_key, Digest, Hasher, LockFile, Meta};

use super::stash::Stash;
use super::tar_reader::LayerReader;
use super::tree::Tree;
use super::{Budget, PackError};

/// A runtime pack read into a tree.
#[derive(Debug)]
pub(crate) struct RuntimePack {
    pub(crate) meta: Meta,
    pub(crate) lock: Option<LockFile>,
    pub(crate) pack_key: String,
    pub(crate) tree: Tree,
    pub(crate) stash: Stash,
}

/// How a layer archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Reads `src/meta.json`, the optional `src/lock.json`, and applies every layer.
pub(crate) fn read_runtime_pack(src: &Path, budget: &mut Budget) -> Result<RuntimePack, PackError> {
    let meta_path = src.join("meta.json");
    let bytes =
        std::fs::read(&meta_path).map_err(PackError::io(meta_path.display().to_string()))?;
    let meta = Meta::parse(&bytes)?;
    let lock_path = src.join("lock.json");
    let lock = match std::fs::read(&lock_path) {
        Ok(bytes) => Some(LockFile::parse(&bytes, &meta)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(PackError::io(lock_path.display().to_string())(e)),
    };
    let stash = Stash::new()?;
    let mut tree = Tree::default();
    let mut digests = Vec::with_capacity(meta.layers.len());
    for (i, name) in meta.layers.iter().enumerate() {
        let (path, compression) = find_layer(src, name)?;
        tree.set_layer(i + 1);
        let origin = format!("layer {name}");
        let file =
            File::open(&path).map_err(PackError::io(format!("{origin}: {}", path.display())))?;
        let (d, _) = apply_layer(&mut tree, &stash, budget, &origin, file, compression, false)?;
        digests.push(d);
    }
    Ok(RuntimePack {
        pack_key: pack_key(&digests),
        meta,
        lock,
        tree,
        stash,
    })
}

/// Exactly one of `layers/NAME.tar`, `.tar.gz`, `.tgz`, `.tar.zst` must exist.
fn find_layer(src: &Path, name: &str) -> Result<(PathBuf, Compression), PackError> {
    let dir = src.join("layers");
    let found: Vec<(PathBuf, Compression)> = [
        ("tar", Compression::None),
        ("tar.gz", Compression::Gzip),
        ("tgz", Compression::Gzip),
        ("tar.zst", Compression::Zstd),
    ]
    .into_iter()
    .map(|(ext, c)| (dir.join(format!("{name}.{ext}")), c))
    .filter(|(p, _)| p.is_file())
    .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(PackError::Invalid(format!(
            "layer {name:?}: none of layers/{name}.tar, .tar.gz, .tgz or .tar.zst exists in {}",
            src.display()
        ))),
        _ => Err(PackError::Invalid(format!(
            "layer {name:?}: several archives exist ({}); keep exactly one",
            found
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Passes bytes through while hashing them: the layer digest is of the archive as stored.
/// (`None`: passes them through unhashed.)
struct HashRead<R> {
    inner: R,
    hasher: Option<Hasher>,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Applies one layer archive (`origin` names it in errors) to `tree`; returns the SHA-256 of
/// the archive as stored and, with `hash_tar`, of the uncompressed tar (an image's `diff_id`).
pub(crate) fn apply_layer(
    tree: &mut Tree,
    stash: &Stash,
    budget: &mut Budget,
    origin: &str,
    archive: impl Read,
    compression: Compression,
    hash_tar: bool,
) -> Result<(Digest, Option<Digest>), PackError> {
    let mut hr = HashRead {
        inner: BufReader::with_capacity(256 << 10, archive),
        hasher: Some(Hasher::new()),
    };
    let tar_digest;
    {
        let decoded: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut hr),
            // Read to its end by `read_archive`, so every member's trailer (CRC and length) is
            // checked and a stream cut before one is an error, not a short layer. Several
            // members (`cat a.gz b.gz`, bgzip) are one stream, as for gzip(1).
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut hr)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(&mut hr)
                    .map_err(PackError::io(format!("{origin}: opening zstd stream")))?,
            ),
        };
        // `read_archive` reads the decoded stream to its end, so this hashes all of it.
        let mut decoded = HashRead {
            inner: decoded,
            hasher: hash_tar.then(Hasher::new),
        };
        let mut reader = LayerReader::new(tree, stash, budget, origin);
        reader.read_archive(Box::new(&mut decoded))?;
        tar_digest = decoded.hasher.map(Hasher::finish);
    }
    // Trailing bytes after the end-of-archive marker are part of the stored file's digest.
    std::io::copy(&mut hr, &mut std::io::sink())
        .map_err(PackError::io(format!("{origin}: reading the archive")))?;
    // Always `Some` for the stored bytes.
    Ok((hr.hasher.unwrap_or_default().finish(), tar_digest))
}
