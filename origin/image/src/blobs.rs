//! Where an image's files are: a directory, or an archive indexed member by member (never unpacked).
//!
//! An archive is read once to find each regular member's offset and size; a blob is then that
//! section of the archive file. Member names are looked up as keys, never joined onto a real
//! path, so a hostile archive cannot name anything outside itself. A gzip or zstd compressed
//! archive (`docker save | gzip`) is first decompressed to a private temp file, bounded.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use prewarm_client::pack::Compression;
use prewarm_shared::RelPath;

use crate::error::ImportError;

/// Largest index, manifest or config document read into memory.
pub(crate) const MAX_DOC: u64 = 4 << 20;
/// Symlink hops followed inside an archive before giving up.
const MAX_HOPS: usize = 8;

/// `len` bytes at `offset` of `path`.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

#[derive(Debug)]
pub(crate) enum Member {
    File { offset: u64, len: u64 },
    Dir,
    Symlink(String),
}

/// An image directory, or an indexed archive.
#[derive(Debug)]
pub(crate) enum Blobs {
    Dir(PathBuf),
    Archive {
        path: PathBuf,
        members: HashMap<String, Member>,
        /// The decompressed copy of a compressed archive; removed on drop.
        _temp: Option<tempfile::NamedTempFile>,
    },
}

impl Blobs {
    /// Opens `image`: a directory as it is, a file as a (possibly compressed) tar archive.
    pub(crate) fn open(image: &Path, max_bytes: u64) -> Result<Self, ImportError> {
        let md = std::fs::metadata(image).map_err(ImportError::io(image.display()))?;
        if md.is_dir() {
            return Ok(Blobs::Dir(image.to_path_buf()));
        }
        let (path, temp) = match sniff(image)? {
            Compression::None => (image.to_path_buf(), None),
            c => {
                let t = decompress(image, c, max_bytes)?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let members = index(&path, &image.display().to_string())?;
        Ok(Blobs::Archive {
            path,
            members,
            _temp: temp,
        })
    }

    /// `true` if `name` is a regular file of the image.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.section(name).is_ok()
    }

    /// Where the regular file `name` (a `/`-separated relative path) is.
    pub(crate) fn section(&self, name: &str) -> Result<Section, ImportError> {
        let rel: RelPath = name
            .parse()
            .map_err(|e| ImportError::bad(format!("the image names file {name:?}: {e}")))?;
        match self {
            Blobs::Dir(dir) => {
                let path = dir.join(rel.as_str());
                let md = std::fs::metadata(&path).map_err(|_| ImportError::missing(name))?;
                if !md.is_file() {
                    return Err(ImportError::missing(name));
                }
                Ok(Section {
                    path,
                    offset: 0,
                    len: md.len(),
                })
            }
            Blobs::Archive { path, members, .. } => {
                let mut at = rel.as_str().to_string();
                for _ in 0..MAX_HOPS {
                    match members.get(&at) {
                        Some(Member::File { offset, len }) => {
                            return Ok(Section {
                                path: path.clone(),
                                offset: *offset,
                                len: *len,
                            })
                        }
                        Some(Member::Symlink(target)) => {
                            at = resolve_link(&at, target).ok_or_else(|| {
                                ImportError::bad(format!(
                                    "archive member {at:?} links to {target:?}, outside the archive"
                                ))
                            })?;
                        }
                        Some(Member::Dir) | None => return Err(ImportError::missing(name)),
                    }
                }
                Err(ImportError::bad(format!(
                    "archive member {name:?}: more than {MAX_HOPS} symlinks in a row"
                )))
            }
        }
    }

    /// Reads a small document (index, manifest, config) whole; larger than [`MAX_DOC`] is an error.
    pub(crate) fn read_doc(&self, name: &str) -> Result<Vec<u8>, ImportError> {
        let s = self.section(name)?;
        if s.len > MAX_DOC {
            return Err(ImportError::bad(format!(
                "{name} is {} bytes; documents over {MAX_DOC} bytes are refused",
                s.len
            )));
        }
        s.read_all()
    }
}

impl Section {
    pub(crate) fn read_all(&self) -> Result<Vec<u8>, ImportError> {
        let ctx = || self.path.display().to_string();
        let mut f = File::open(&self.path).map_err(ImportError::io(ctx()))?;
        f.seek(SeekFrom::Start(self.offset))
            .map_err(ImportError::io(ctx()))?;
        let mut v = Vec::with_capacity(self.len as usize);
        f.take(self.len)
            .read_to_end(&mut v)
            .map_err(ImportError::io(ctx()))?;
        if v.len() as u64 != self.len {
            return Err(ImportError::bad(format!("{} is truncated", ctx())));
        }
        Ok(v)
    }

    /// The compression its first bytes show.
    pub(crate) fn compression(&self) -> Result<Compression, ImportError> {
        let mut f = File::open(&self.path).map_err(ImportError::io(self.path.display()))?;
        f.seek(SeekFrom::Start(self.offset))
            .map_err(ImportError::io(self.path.display()))?;
        let mut magic = [0u8; 4];
        let n = f
            .take(self.len.min(4))
            .read(&mut magic)
            .map_err(ImportError::io(self.path.display()))?;
        Ok(by_magic(&magic[..n]))
    }
}

fn by_magic(m: &[u8]) -> Compression {
    if m.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if m.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn sniff(path: &Path) -> Result<Compression, ImportError> {
    Section {
        path: path.to_path_buf(),
        offset: 0,
        len: 4,
    }
    .compression()
}

/// Decompresses a whole archive into a temp file, refusing more than `max` bytes (a bomb).
fn decompress(
    path: &Path,
    c: Compression,
    max: u64,
) -> Result<tempfile::NamedTempFile, ImportError> {
    let ctx = path.display().to_string();
    let f = BufReader::new(File::open(path).map_err(ImportError::io(&ctx))?);
    let mut r: Box<dyn Read> = match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(f).map_err(ImportError::io(&ctx))?)
        }
        Compression::None => Box::new(f),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix("prewarm-image-")
        .tempfile()
        .map_err(ImportError::io("creating a temp file"))?;
    let n = std::io::copy(&mut (&mut r).take(max + 1), tmp.as_file_mut())
        .map_err(ImportError::io(format!("decompressing {ctx}")))?;
    if n > max {
        return Err(ImportError::bad(format!(
            "{ctx} decompresses to more than {max} bytes (--max-unpacked-bytes)"
        )));
    }
    Ok(tmp)
}

/// Lists an archive's members: regular files with their data's offset, directories,
/// symlinks. Anything else, a name that is not a clean relative path, or a name listed twice
/// is refused.
fn index(path: &Path, shown: &str) -> Result<HashMap<String, Member>, ImportError> {
    let f = File::open(path).map_err(ImportError::io(shown))?;
    let mut archive = tar::Archive::new(BufReader::new(f));
    let mut members = HashMap::new();
    let entries = archive
        .entries_with_seek()
        .map_err(ImportError::io(shown))?
        .raw(true);
    for e in entries {
        let e =
            e.map_err(|e| ImportError::bad(format!("{shown}: not a readable tar archive: {e}")))?;
        let raw = e.header().path_bytes().into_owned();
        let shown_name = String::from_utf8_lossy(&raw).into_owned();
        let ty = e.header().entry_type();
        if ty.is_pax_global_extensions() || ty.is_pax_local_extensions() {
            continue;
        }
        let bad = |why: &str| ImportError::bad(format!("{shown}: member {shown_name:?}: {why}"));
        let name = std::str::from_utf8(&raw).map_err(|_| bad("name is not UTF-8"))?;
        let name = name.strip_prefix("./").unwrap_or(name);
        let name = name.strip_suffix('/').unwrap_or(name);
        if name.is_empty() || name == "." {
            continue;
        }
        let rel: RelPath = name
            .parse()
            .map_err(|e| bad(&format!("unsafe name: {e}")))?;
        let member = if ty.is_file() {
            Member::File {
                offset: e.raw_file_position(),
                len: e.size(),
            }
        } else if ty.is_dir() {
            Member::Dir
        } else if ty.is_symlink() {
            let t = e
                .header()
                .link_name_bytes()
                .ok_or_else(|| bad("symlink without a target"))?;
            Member::Symlink(
                String::from_utf8(t.into_owned()).map_err(|_| bad("link target is not UTF-8"))?,
            )
        } else {
            return Err(bad(&format!(
                "{ty:?} members are not part of an image archive"
            )));
        };
        if members.insert(rel.as_str().to_string(), member).is_some() {
            return Err(bad("listed twice; which one is meant is ambiguous"));
        }
    }
    Ok(members)
}

/// `target` of a symlink at `at`, as an archive member name; `None` if it leaves the archive.
fn resolve_link(at: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = at.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}
