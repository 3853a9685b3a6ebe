//! Reading a runtime pack: meta.json, lock.json and its tar layers, applied in order to a virtual tree.
//!
//! Tar archives are read in raw mode: GNU long names and PAX headers are parsed here with a
//! size cap, because the `tar` crate would otherwise read a hostile multi-gigabyte long name
//! into memory before any limit could apply.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use prewarm_shared::{pack_key, Digest, Hasher, LockFile, Meta, RelPath};
use tar::EntryType;

use super::stash::Stash;
use super::tree::{Node, Tree};
use super::{Budget, PackError};

/// Longest GNU long name / long link accepted (PATH_MAX is 4096).
const MAX_LONG_NAME: u64 = 64 << 10;
/// Largest PAX extended header accepted.
const MAX_PAX: u64 = 1 << 20;

/// A runtime pack read into a tree.
#[derive(Debug)]
pub(crate) struct RuntimePack {
    pub(crate) meta: Meta,
    pub(crate) lock: Option<LockFile>,
    pub(crate) pack_key: String,
    pub(crate) tree: Tree,
    pub(crate) stash: Stash,
}

#[derive(Debug, Clone, Copy)]
enum Compression {
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
        let d = apply_layer(&mut tree, &stash, budget, name, &path, compression)?;
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
struct HashRead<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Applies one layer archive to `tree`; returns the SHA-256 of the archive file.
fn apply_layer(
    tree: &mut Tree,
    stash: &Stash,
    budget: &mut Budget,
    name: &str,
    path: &Path,
    compression: Compression,
) -> Result<Digest, PackError> {
    let origin = format!("layer {name}");
    let file = File::open(path).map_err(PackError::io(format!("{origin}: {}", path.display())))?;
    let mut hr = HashRead {
        inner: BufReader::with_capacity(256 << 10, file),
        hasher: Hasher::new(),
    };
    {
        let decoded: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut hr),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut hr)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(&mut hr)
                    .map_err(PackError::io(format!("{origin}: opening zstd stream")))?,
            ),
        };
        let mut reader = LayerReader {
            tree,
            stash,
            budget,
            origin: &origin,
        };
        reader.read_archive(decoded)?;
    }
    // Trailing bytes after the end-of-archive marker are part of the stored file's digest.
    std::io::copy(&mut hr, &mut std::io::sink()).map_err(PackError::io(format!(
        "{origin}: reading {}",
        path.display()
    )))?;
    Ok(hr.hasher.finish())
}

/// Extension records that describe the next member.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
}

struct LayerReader<'a> {
    tree: &'a mut Tree,
    stash: &'a Stash,
    budget: &'a mut Budget,
    origin: &'a str,
}

impl LayerReader<'_> {
    fn entry_err(&self, entry: &[u8], reason: impl Into<String>) -> PackError {
        PackError::Entry {
            origin: self.origin.to_string(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }

    fn limit_err(&self, entry: &[u8], (limit, max): (&'static str, u64)) -> PackError {
        PackError::Limit {
            origin: self.origin.to_string(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            limit,
            max,
        }
    }

    fn read_archive(&mut self, decoded: Box<dyn Read + '_>) -> Result<(), PackError> {
        let tar_err = |origin: &str| PackError::io(format!("{origin}: reading tar"));
        let mut archive = tar::Archive::new(decoded);
        let entries = archive.entries().map_err(tar_err(self.origin))?.raw(true);
        let mut pending = Pending::default();
        for entry in entries {
            let mut entry = entry.map_err(tar_err(self.origin))?;
            let header_name = entry.header().path_bytes().into_owned();
            if let Err(hit) = self.budget.entry() {
                return Err(self.limit_err(&header_name, hit));
            }
            let ty = entry.header().entry_type();
            match ty {
                EntryType::GNULongName => {
                    let size = entry.size();
                    pending.long_name =
                        Some(self.read_ext(&mut entry, &header_name, size, MAX_LONG_NAME)?);
                    continue;
                }
                EntryType::GNULongLink => {
                    let size = entry.size();
                    pending.long_link =
                        Some(self.read_ext(&mut entry, &header_name, size, MAX_LONG_NAME)?);
                    continue;
                }
                EntryType::XHeader => {
                    let size = entry.size();
                    let data = self.read_ext(&mut entry, &header_name, size, MAX_PAX)?;
                    self.parse_pax(&data, &header_name, &mut pending)?;
                    continue;
                }
                EntryType::XGlobalHeader => {
                    let size = entry.size();
                    self.read_ext(&mut entry, &header_name, size, MAX_PAX)?;
                    continue;
                }
                _ => {}
            }
            let p = std::mem::take(&mut pending);
            let name = p
                .pax_path
                .or(p.long_name.map(trim_nul))
                .unwrap_or(header_name);
            let link = p
                .pax_link
                .or(p.long_link.map(trim_nul))
                .or_else(|| entry.header().link_name_bytes().map(|c| c.into_owned()));
            self.member(&mut entry, ty, &name, link)?;
        }
        if pending.long_name.is_some() || pending.pax_path.is_some() {
            return Err(PackError::Invalid(format!(
                "{}: archive ends with an extension header and no member",
                self.origin
            )));
        }
        Ok(())
    }

    fn read_ext(
        &self,
        entry: &mut dyn Read,
        header_name: &[u8],
        size: u64,
        cap: u64,
    ) -> Result<Vec<u8>, PackError> {
        if size > cap {
            return Err(self.entry_err(
                header_name,
                format!("extension header of {size} bytes exceeds {cap}"),
            ));
        }
        let mut v = Vec::with_capacity(size as usize);
        entry
            .take(cap)
            .read_to_end(&mut v)
            .map_err(PackError::io(format!("{}: reading tar", self.origin)))?;
        Ok(v)
    }

    fn parse_pax(
        &self,
        data: &[u8],
        header_name: &[u8],
        pending: &mut Pending,
    ) -> Result<(), PackError> {
        for ext in tar::PaxExtensions::new(data) {
            let ext =
                ext.map_err(|e| self.entry_err(header_name, format!("bad PAX header: {e}")))?;
            match ext.key_bytes() {
                b"path" => pending.pax_path = Some(ext.value_bytes().to_vec()),
                b"linkpath" => pending.pax_link = Some(ext.value_bytes().to_vec()),
                // The stream is read with header sizes; a PAX size would desynchronise it.
                b"size" => {
                    return Err(self.entry_err(
                        header_name,
                        "PAX `size` override (members over 8 GiB) is not supported",
                    ))
                }
                k if k.starts_with(b"GNU.sparse") => {
                    return Err(self.entry_err(header_name, "sparse files are not supported"))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Parses a member name: UTF-8, exactly one leading `./` stripped, one trailing `/` allowed
    /// on directories, then the strict [`RelPath`] rules. `Ok(None)` is the root itself.
    fn parse_name(&self, raw: &[u8], is_dir: bool) -> Result<Option<RelPath>, PackError> {
        clean_name(raw, is_dir).map_err(|reason| self.entry_err(raw, reason))
    }

    fn member(
        &mut self,
        entry: &mut tar::Entry<'_, Box<dyn Read + '_>>,
        ty: EntryType,
        raw: &[u8],
        link: Option<Vec<u8>>,
    ) -> Result<(), PackError> {
        let is_dir = ty == EntryType::Directory;
        let Some(path) = self.parse_name(raw, is_dir)? else {
            return if is_dir {
                Ok(())
            } else {
                Err(self.entry_err(raw, "only a directory may name the root"))
            };
        };
        let fname = path.file_name();
        if let Some(hidden) = fname.strip_prefix(".wh.") {
            let parent = path.parent();
            let r = if hidden == ".wh..opq" {
                self.tree.opaque(parent.as_ref())
            } else if hidden.starts_with(".wh.") || hidden.is_empty() {
                Err(format!("unsupported whiteout {fname:?}"))
            } else {
                let target = match &parent {
                    Some(p) => p.join(hidden),
                    None => hidden.parse(),
                };
                target
                    .map_err(|e| format!("whiteout names an unsafe path: {e}"))
                    .and_then(|t| self.tree.whiteout(&t))
            };
            return r.map_err(|reason| self.entry_err(raw, reason));
        }
        let mode = entry
            .header()
            .mode()
            .map_err(|e| self.entry_err(raw, format!("bad mode: {e}")))?
            & 0o777;
        let node = match ty {
            EntryType::Regular | EntryType::Continuous => {
                self.tree
                    .check_parents(&path)
                    .map_err(|r| self.entry_err(raw, r))?;
                if let Err(hit) = self.budget.bytes(entry.size()) {
                    return Err(self.limit_err(raw, hit));
                }
                let (digest, size) = self.stash.put(entry)?;
                Node::File {
                    mode,
                    size,
                    content: super::tree::Content::Stash(digest),
                }
            }
            EntryType::Directory => Node::Dir { mode },
            EntryType::Symlink => {
                let target = link.ok_or_else(|| self.entry_err(raw, "symlink without a target"))?;
                let target = String::from_utf8(target)
                    .map_err(|_| self.entry_err(raw, "symlink target is not UTF-8"))?;
                if target.is_empty() || target.contains('\0') {
                    return Err(self.entry_err(raw, "symlink target is empty or contains NUL"));
                }
                Node::Symlink { target }
            }
            EntryType::Link => {
                let target =
                    link.ok_or_else(|| self.entry_err(raw, "hard link without a target"))?;
                let shown = String::from_utf8_lossy(&target).into_owned();
                let target = match clean_name(&target, false) {
                    Ok(Some(t)) => t,
                    Ok(None) => return Err(self.entry_err(raw, "hard link to the root")),
                    Err(r) => {
                        return Err(self.entry_err(raw, format!("hard link target {shown:?}: {r}")))
                    }
                };
                let size = self
                    .tree
                    .hard_link(&path, &target)
                    .map_err(|r| self.entry_err(raw, r))?;
                return self
                    .budget
                    .bytes(size)
                    .map_err(|hit| self.limit_err(raw, hit));
            }
            EntryType::Char | EntryType::Block => {
                return Err(self.entry_err(raw, "device nodes are not allowed in a runtime"))
            }
            EntryType::Fifo => {
                return Err(self.entry_err(raw, "fifos are not allowed in a runtime"))
            }
            EntryType::GNUSparse => {
                return Err(self.entry_err(raw, "sparse files are not supported"))
            }
            other => {
                return Err(self.entry_err(raw, format!("unsupported tar entry type {other:?}")))
            }
        };
        self.tree
            .insert(&path, node)
            .map_err(|r| self.entry_err(raw, r))
    }
}

fn clean_name(raw: &[u8], is_dir: bool) -> Result<Option<RelPath>, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "name is not UTF-8".to_string())?;
    let s = s.strip_prefix("./").unwrap_or(s);
    let s = if is_dir {
        s.strip_suffix('/').unwrap_or(s)
    } else {
        s
    };
    if s.is_empty() || s == "." {
        return Ok(None);
    }
    s.parse::<RelPath>()
        .map(Some)
        .map_err(|e| format!("unsafe name: {e}"))
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}
