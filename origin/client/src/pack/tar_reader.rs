//! One tar layer, member by member, onto the virtual tree: names checked, contents stashed.
//!
//! Archives are read in raw mode: GNU long names and PAX headers are parsed here with a size
//! cap, because the `tar` crate would otherwise read a hostile multi-gigabyte long name into
//! memory before any limit could apply.

use std::io::Read;

use prewarm_shared::RelPath;
use tar::EntryType;

use super::stash::Stash;
use super::tree::{Content, Node, Tree};
use super::{Budget, PackError};

/// Longest GNU long name / long link accepted (PATH_MAX is 4096).
const MAX_LONG_NAME: u64 = 64 << 10;
/// Largest PAX extended header accepted.
const MAX_PAX: u64 = 1 << 20;
/// Most bytes accepted after the end-of-archive marker: zero padding to the record size
/// (`tar -b 2048` makes 1 MiB records). Read through, so a compressed layer's trailer is checked.
const MAX_PADDING: u64 = 1 << 20;
/// What errors say in place of an entry when the archive broke before its first one.
const NO_ENTRY_YET: &[u8] = b"(start of archive)";

/// Extension records that describe the next member.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
}

pub(crate) struct LayerReader<'a> {
    tree: &'a mut Tree,
    stash: &'a Stash,
    budget: &'a mut Budget,
    origin: &'a str,
}

impl<'a> LayerReader<'a> {
    pub(crate) fn new(
        tree: &'a mut Tree,
        stash: &'a Stash,
        budget: &'a mut Budget,
        origin: &'a str,
    ) -> Self {
        Self {
            tree,
            stash,
            budget,
            origin,
        }
    }

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

    /// Applies every member, then checks the archive is whole: its end-of-archive marker (two
    /// zero blocks) is there and the stream ends cleanly after it (for a compressed layer, its
    /// trailer and checksum). A layer cut short, even between two members, is refused, naming
    /// the last entry read.
    pub(crate) fn read_archive(&mut self, decoded: Box<dyn Read + '_>) -> Result<(), PackError> {
        let mut archive = tar::Archive::new(decoded);
        let mut last = NO_ENTRY_YET.to_vec();
        let broken = |this: &Self, last: &[u8], e: std::io::Error| {
            this.entry_err(
                last,
                format!("archive is truncated or corrupt after this entry: {e}"),
            )
        };
        let entries = archive
            .entries()
            .map_err(|e| broken(self, &last, e))?
            .raw(true);
        let mut pending = Pending::default();
        for entry in entries {
            let mut entry = entry.map_err(|e| broken(self, &last, e))?;
            let header_name = entry.header().path_bytes().into_owned();
            last.clone_from(&header_name);
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
            last.clone_from(&name);
            self.member(&mut entry, ty, &name, link)?;
        }
        if pending.long_name.is_some() || pending.pax_path.is_some() {
            return Err(PackError::Invalid(format!(
                "{}: archive ends with an extension header and no member",
                self.origin
            )));
        }
        self.check_end(archive.into_inner(), &last)
    }

    /// The tar crate stops at the first zero block or at the end of the stream alike: the
    /// second zero block must follow, then nothing but zero padding to the end of the stream.
    fn check_end(&self, mut rest: Box<dyn Read + '_>, last: &[u8]) -> Result<(), PackError> {
        let cut = |why: String| {
            self.entry_err(
                last,
                format!("archive ends after this entry {why}: truncated (a partial upload?)"),
            )
        };
        let mut block = [0u8; 512];
        let mut got = 0;
        while got < block.len() {
            match rest.read(&mut block[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(cut(format!("with a broken stream ({e})"))),
            }
        }
        if got < block.len() || block.iter().any(|b| *b != 0) {
            return Err(cut(
                "without its end-of-archive marker (two zero blocks)".into()
            ));
        }
        let mut padding = rest.take(MAX_PADDING + 1);
        let mut buf = vec![0u8; 64 << 10];
        let mut seen = 0u64;
        loop {
            match padding.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    seen += n as u64;
                    if seen > MAX_PADDING || buf[..n].iter().any(|b| *b != 0) {
                        return Err(self.entry_err(
                            last,
                            format!(
                                "more than the end-of-archive marker and up to {MAX_PADDING} \
                                 bytes of zero padding follow the last entry"
                            ),
                        ));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(cut(format!(
                        "and its marker, with a broken or truncated stream ({e})"
                    )))
                }
            }
        }
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
        // Every byte a header declares is decoded, kept (a regular file) or skipped (any other
        // member, whiteouts included), so all of it counts: a directory claiming gigabytes
        // behind a small .tar.gz must stop at the limit like a file would.
        if let Err(hit) = self.budget.bytes(entry.size()) {
            return Err(self.limit_err(raw, hit));
        }
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
                let expected = entry.size();
                let (digest, size) = self
                    .stash
                    .put(entry)
                    .map_err(|e| self.entry_err(raw, format!("reading its contents: {e}")))?;
                if size != expected {
                    return Err(self.entry_err(
                        raw,
                        format!("has {size} of its {expected} bytes: the archive is truncated"),
                    ));
                }
                Node::File {
                    mode,
                    size,
                    content: Content::Stash(digest),
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

/// A member name as a path: UTF-8, one leading `./` stripped, one trailing `/` allowed on
/// directories, then the strict [`RelPath`] rules; `Ok(None)` is the root itself. Shared with
/// the sandbox files API's tar uploads, so both refuse the same names.
pub fn clean_name(raw: &[u8], is_dir: bool) -> Result<Option<RelPath>, String> {
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

/// A GNU long name without its trailing NULs.
pub fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}
