//! A sandbox's workspace as files: read, write (atomic), list, remove, tar in and out, never outside it.
//!
//! The workspace is writable by code run in the sandbox, so any name in it may be a symlink
//! planted to lead elsewhere (`/etc`, `../../node`, a directory swapped for a link between a
//! check and a use). Every path is therefore resolved by the kernel from an open descriptor of
//! the workspace root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: a symlink that
//! stays inside is followed, one that would leave is refused (`EXDEV`), whatever happens to
//! the tree meanwhile. The last component is then handled relative to its parent's descriptor
//! (`*at` calls on one name, never following it), so nothing between a check and its use is
//! looked up again by name.
//!
//! Files and directories made here belong to the sandbox user, as if the sandbox had made
//! them. A write goes to a temporary name in the target's directory and is renamed over it:
//! the file appears whole or not at all.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;

use prewarm_shared::path::PathError;
use prewarm_shared::RelPath;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

mod tar;

use super::{Busy, SandboxError, SandboxService};
use crate::jail::identity::SandboxUser;

/// Mode of a file written without `?mode=`.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// Mode of a directory made for a write or an upload.
const DIR_MODE: u32 = 0o755;
/// Temporary names start with this; they are renamed away or removed.
const TMP_PREFIX: &str = ".prewarm-tmp-";

/// What went wrong with a file operation; each variant has a stable `code()`.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("no such file or directory in the workspace: {0}")]
    NotFound(String),
    #[error("{0} leads outside the workspace (through a symlink); refused")]
    Escapes(String),
    #[error("{0} is a directory")]
    IsDir(String),
    #[error("{0} is not a directory")]
    NotDir(String),
    #[error("{0} is not a regular file")]
    NotFile(String),
    #[error("the workspace root cannot be {0}")]
    Root(&'static str),
    #[error("{path} is larger than the sandbox's file size limit of {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("mode {0:?} is not an octal permission mode of at most 0777")]
    BadMode(String),
    #[error("archive entry {entry:?}: {reason}")]
    Archive { entry: String, reason: String },
    #[error("the sandbox was deleted during the transfer")]
    Stopped,
    /// The request body broke off (the client went away, or sent a malformed chunk).
    #[error("reading the request body: {0}")]
    Body(#[source] std::io::Error),
    #[error("{action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    /// Stable machine code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            FileError::Path(p) => p.code(),
            FileError::NotFound(_) => "not_found",
            FileError::Escapes(_) => "path_escapes_workspace",
            FileError::IsDir(_) => "is_a_directory",
            FileError::NotDir(_) => "not_a_directory",
            FileError::NotFile(_) => "not_a_regular_file",
            FileError::Root(_) => "bad_path",
            FileError::TooLarge { .. } => "too_large",
            FileError::BadMode(_) => "bad_mode",
            FileError::Archive { .. } => "bad_archive",
            FileError::Stopped => "not_found",
            FileError::Body(_) => "bad_body",
            FileError::Io { .. } => "internal",
        }
    }
}

/// Kind of a workspace entry, as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    pub size: u64,
    /// Permission bits, e.g. `0o644` (sent as a number).
    pub mode: u32,
    /// Last modification, seconds since the Unix epoch.
    pub mtime: i64,
    /// A symlink's target, as stored (not resolved).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
}

/// Parses `?mode=0755` (octal, at most `0777`).
pub fn parse_mode(s: &str) -> Result<u32, FileError> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
        _ => Err(FileError::BadMode(s.chars().take(32).collect())),
    }
}

/// An open workspace of a live sandbox. Holding it keeps the sandbox from being reaped as
/// idle, and a delete waits for it (transfers end early when [`Workspace::stop`] fires).
pub struct Workspace {
    _busy: Busy,
    root: OwnedFd,
    user: SandboxUser,
    file_limit: u64,
    stop: CancellationToken,
}

impl SandboxService {
    /// Opens the sandbox's workspace for file operations. Blocking (one `open`).
    pub fn workspace(&self, id: &str) -> Result<Workspace, FileOrSandbox> {
        let busy = self.hold(id)?;
        let sb = &busy.0;
        let root = rustix::fs::open(
            sb.workspace(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FileError::Io {
            action: "opening the workspace",
            source: e.into(),
        })?;
        Ok(Workspace {
            user: self.cfg.jail.user,
            file_limit: sb.limits.file_bytes,
            stop: sb.stop.clone(),
            root,
            _busy: busy,
        })
    }
}

/// Either error of [`SandboxService::workspace`]: no such sandbox, or the file operation's.
#[derive(Debug, thiserror::Error)]
pub enum FileOrSandbox {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    File(#[from] FileError),
}

fn io(action: &'static str) -> impl FnOnce(Errno) -> FileError {
    move |e| FileError::Io {
        action,
        source: e.into(),
    }
}

/// Maps a resolution error for `path` to what the client should hear.
fn resolve_err<'p>(path: &'p str, action: &'static str) -> impl FnOnce(Errno) -> FileError + 'p {
    move |e| match e {
        Errno::XDEV | Errno::LOOP => FileError::Escapes(path.to_string()),
        Errno::NOENT => FileError::NotFound(path.to_string()),
        Errno::NOTDIR => FileError::NotDir(path.to_string()),
        Errno::ISDIR => FileError::IsDir(path.to_string()),
        e => FileError::Io {
            action,
            source: e.into(),
        },
    }
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

impl Workspace {
    /// Fired when the sandbox is deleted: long transfers stop.
    pub fn stop(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Largest file this sandbox may hold (its `file_bytes` limit).
    pub fn file_limit(&self) -> u64 {
        self.file_limit
    }

    /// Opens `path` (or the root for `None`) beneath the root, following only symlinks that
    /// stay beneath it.
    fn open_beneath(&self, path: Option<&RelPath>, flags: OFlags) -> Result<OwnedFd, FileError> {
        let p = path.map_or(".", RelPath::as_str);
        rustix::fs::openat2(
            &self.root,
            p,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            BENEATH,
        )
        .map_err(resolve_err(p, "opening a workspace path"))
    }

    fn open_dir(&self, path: Option<&RelPath>) -> Result<OwnedFd, FileError> {
        self.open_beneath(path, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// Opens (making as needed, as the sandbox user) every directory of `path`.
    fn make_dirs(&self, path: Option<&RelPath>) -> Result<OwnedFd, FileError> {
        let Some(path) = path else {
            return self.open_dir(None);
        };
        for dir in path.ancestors().chain(std::iter::once(path.clone())) {
            match self.open_dir(Some(&dir)) {
                Ok(fd) => drop(fd),
                Err(FileError::NotFound(_)) => {
                    let parent = self.open_dir(dir.parent().as_ref())?;
                    match rustix::fs::mkdirat(
                        &parent,
                        dir.file_name(),
                        Mode::from_raw_mode(DIR_MODE),
                    ) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(resolve_err(dir.as_str(), "making a directory")(e)),
                    }
                    let fd = self.open_dir(Some(&dir))?;
                    self.own(&fd)?;
                }
                Err(e) => return Err(e),
            }
        }
        self.open_dir(Some(path))
    }

    fn own(&self, fd: &OwnedFd) -> Result<(), FileError> {
        std::os::unix::fs::fchown(fd, Some(self.user.uid), Some(self.user.gid)).map_err(|e| {
            FileError::Io {
                action: "giving a file to the sandbox user",
                source: e,
            }
        })
    }

    /// Writes `body` to `path` atomically with `mode`, making its directories; at most the
    /// file size limit. Returns the bytes written. Blocking.
    pub fn write(&self, path: &RelPath, body: &mut dyn Read, mode: u32) -> Result<u64, FileError> {
        let dir = self.make_dirs(path.parent().as_ref())?;
        let name = path.file_name();
        if let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(FileError::IsDir(path.to_string()));
            }
        }
        let tmp = Temp::create(&dir, self)?;
        let mut file = File::from(tmp.fd.try_clone().map_err(|e| FileError::Io {
            action: "duplicating a descriptor",
            source: e,
        })?);
        let limit = self.file_limit;
        let mut src = Reading {
            inner: body.take(limit.saturating_add(1)),
            failed: false,
        };
        let n = std::io::copy(&mut src, &mut file).map_err(|e| {
            if src.failed {
                FileError::Body(e)
            } else {
                FileError::Io {
                    action: "writing the file",
                    source: e,
                }
            }
        })?;
        if n > limit {
            return Err(FileError::TooLarge {
                path: path.to_string(),
                limit,
            });
        }
        rustix::fs::fchmod(&tmp.fd, Mode::from_raw_mode(mode))
            .map_err(io("setting a file's mode"))?;
        self.commit(tmp, name)?;
        Ok(n)
    }

    /// Renames a finished temporary over `name`, unless the sandbox was deleted meanwhile.
    fn commit(&self, tmp: Temp<'_>, name: &str) -> Result<(), FileError> {
        if self.stop.is_cancelled() {
            return Err(FileError::Stopped);
        }
        rustix::fs::renameat(tmp.dir, tmp.name.as_str(), tmp.dir, name).map_err(|e| match e {
            Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST => FileError::IsDir(name.to_string()),
            // The directory, or the temporary in it, was removed meanwhile (by the sandbox).
            Errno::NOENT => FileError::NotFound(name.to_string()),
            e => FileError::Io {
                action: "renaming a written file into place",
                source: e.into(),
            },
        })?;
        tmp.keep();
        Ok(())
    }

    /// Opens the regular file at `path` for reading, with its size. Blocking.
    pub fn open_read(&self, path: &RelPath) -> Result<(File, u64), FileError> {
        // NONBLOCK: opening a FIFO the sandbox planted must not hang; checked just below.
        let fd = self.open_beneath(Some(path), OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd).map_err(io("reading a file's status"))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Directory => return Err(FileError::IsDir(path.to_string())),
            _ => return Err(FileError::NotFile(path.to_string())),
        }
        Ok((File::from(fd), st.st_size as u64))
    }

    /// The entries of directory `dir` (the root for `None`), sorted by name. Blocking.
    pub fn list(&self, dir: Option<&RelPath>) -> Result<Vec<FileEntry>, FileError> {
        let fd = self.open_dir(dir)?;
        let mut out = Vec::new();
        for (name, st) in read_dir(&fd)? {
            let kind = kind_of(st.st_mode);
            let target = match kind {
                EntryKind::Symlink => rustix::fs::readlinkat(&fd, name.as_str(), Vec::new())
                    .ok()
                    .map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned()),
                _ => None,
            };
            out.push(FileEntry {
                name,
                kind,
                size: st.st_size as u64,
                mode: st.st_mode & 0o7777,
                mtime: st.st_mtime as i64,
                target,
            });
        }
        Ok(out)
    }

    /// Removes `path`: a file or symlink (never what it points to), or a directory and
    /// everything in it. Blocking.
    pub fn remove(&self, path: &RelPath) -> Result<(), FileError> {
        let dir = self.open_dir(path.parent().as_ref())?;
        let name = path.file_name();
        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(resolve_err(path.as_str(), "reading a file's status"))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            remove_tree_at(&dir, name)
        } else {
            rustix::fs::unlinkat(&dir, name, AtFlags::empty())
                .map_err(resolve_err(path.as_str(), "removing a file"))
        }
    }
}

/// A reader that remembers whether it failed, so a broken body is told from a failed write.
struct Reading<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for Reading<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        self.failed |= matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::Interrupted);
        r
    }
}

/// A temporary file in a directory, removed on drop unless kept.
struct Temp<'d> {
    dir: &'d OwnedFd,
    name: String,
    fd: OwnedFd,
    kept: bool,
}

impl<'d> Temp<'d> {
    fn create(dir: &'d OwnedFd, ws: &Workspace) -> Result<Self, FileError> {
        let name = format!("{TMP_PREFIX}{:016x}", rand::random::<u64>());
        let fd = rustix::fs::openat(
            dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        // ENOENT: the directory was removed meanwhile (by the sandbox).
        .map_err(resolve_err(".", "creating a temporary file"))?;
        let t = Temp {
            dir,
            name,
            fd,
            kept: false,
        };
        ws.own(&t.fd)?;
        Ok(t)
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let _ = rustix::fs::unlinkat(self.dir, self.name.as_str(), AtFlags::empty());
        }
    }
}

fn kind_of(mode: u32) -> EntryKind {
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

/// Names (UTF-8 ones; others are skipped) and `lstat`s of a directory's entries, sorted.
fn read_dir(fd: &OwnedFd) -> Result<Vec<(String, rustix::fs::Stat)>, FileError> {
    let mut dir = rustix::fs::Dir::read_from(fd).map_err(io("reading a directory"))?;
    let mut out = Vec::new();
    while let Some(e) = dir.read() {
        let e = e.map_err(io("reading a directory"))?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        // Gone meanwhile: not listed.
        if let Ok(st) = rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            out.push((name.to_string(), st));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Removes directory `name` in `parent` and everything in it, never following a symlink.
fn remove_tree_at(parent: &OwnedFd, name: &str) -> Result<(), FileError> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io("opening a directory to remove"))?;
    for (child, st) in read_dir(&fd)? {
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            remove_tree_at(&fd, &child)?;
        } else {
            rustix::fs::unlinkat(&fd, child.as_str(), AtFlags::empty())
                .map_err(io("removing a file"))?;
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(io("removing a directory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_client::pack::clean_tar_name as clean_name;

    #[test]
    fn modes_parse_octal_only() {
        assert_eq!(parse_mode("0755").unwrap(), 0o755);
        assert_eq!(parse_mode("644").unwrap(), 0o644);
        assert_eq!(parse_mode("0o600").unwrap(), 0o600);
        for bad in ["", "0o", "999", "4755", "rwx", "-1"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn member_names_are_checked() {
        assert_eq!(
            clean_name(b"./a/b", false).unwrap().unwrap().as_str(),
            "a/b"
        );
        assert_eq!(clean_name(b"d/", true).unwrap().unwrap().as_str(), "d");
        assert!(clean_name(b"./", true).unwrap().is_none());
        for bad in [&b"../x"[..], b"/etc/passwd", b"a//b", b"a/../../b", b"\xff"] {
            assert!(clean_name(bad, false).is_err(), "{bad:?}");
        }
    }
}
