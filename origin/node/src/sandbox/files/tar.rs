//! Directories in and out of a workspace as tar streams: packed without following links, unpacked with every name checked.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use prewarm_client::pack::{clean_tar_name as clean_name, trim_tar_nul as trim_nul};
use prewarm_shared::RelPath;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{io, kind_of, read_dir, resolve_err, EntryKind, FileError, Workspace, TMP_PREFIX};

/// Longest GNU long name / long link accepted in an upload.
const MAX_LONG_NAME: u64 = 64 << 10;
/// Largest PAX extended header accepted in an upload.
const MAX_PAX: u64 = 1 << 20;

impl Workspace {
    /// Writes directory `dir` (the root for `None`) as a tar stream to `out`: files,
    /// directories and symlinks (as links), names relative to `dir`. Blocking.
    pub fn pack_tar(&self, dir: Option<&RelPath>, out: &mut dyn Write) -> Result<(), FileError> {
        let fd = self.open_dir(dir)?;
        let mut tar = tar::Builder::new(out);
        self.pack_dir(&fd, "", &mut tar)?;
        tar.finish().map_err(|e| FileError::Io {
            action: "sending the archive",
            source: e,
        })
    }

    fn pack_dir(
        &self,
        fd: &OwnedFd,
        prefix: &str,
        tar: &mut tar::Builder<&mut dyn Write>,
    ) -> Result<(), FileError> {
        let send = |e: std::io::Error| FileError::Io {
            action: "sending the archive",
            source: e,
        };
        for (name, st) in read_dir(fd)? {
            if self.stop.is_cancelled() {
                return Err(FileError::Stopped);
            }
            let path = format!("{prefix}{name}");
            let mut h = tar::Header::new_gnu();
            h.set_mode(st.st_mode & 0o7777);
            h.set_mtime(st.st_mtime);
            match kind_of(st.st_mode) {
                EntryKind::File => {
                    let Ok(f) = rustix::fs::openat(
                        fd,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) else {
                        continue; // removed meanwhile
                    };
                    let st = rustix::fs::fstat(&f).map_err(io("reading a file's status"))?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                        continue;
                    }
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(st.st_size as u64);
                    // A file growing meanwhile is cut at the size in the header.
                    let body = File::from(f).take(st.st_size as u64);
                    tar.append_data(&mut h, &path, body).map_err(send)?;
                }
                EntryKind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{path}/"), std::io::empty())
                        .map_err(send)?;
                    let Ok(sub) = rustix::fs::openat(
                        fd,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) else {
                        continue;
                    };
                    self.pack_dir(&sub, &format!("{path}/"), tar)?;
                }
                EntryKind::Symlink => {
                    let Ok(target) = rustix::fs::readlinkat(fd, name.as_str(), Vec::new()) else {
                        continue;
                    };
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, &path, OsStr::from_bytes(target.as_bytes()))
                        .map_err(send)?;
                }
                EntryKind::Other => {}
            }
        }
        Ok(())
    }

    /// Unpacks a tar stream into directory `dir` (made if missing; the root for `None`):
    /// regular files (each atomic, each within the file size limit), directories and
    /// symlinks. Names are checked like manifest paths; hard links, devices and FIFOs are
    /// refused. Returns the number of entries. Blocking.
    pub fn unpack_tar(&self, dir: Option<&RelPath>, body: &mut dyn Read) -> Result<u64, FileError> {
        self.make_dirs(dir)?;
        let mut archive = tar::Archive::new(body);
        let entries = archive
            .entries()
            .map_err(|e| bad_archive("(start)", e))?
            .raw(true);
        let (mut long_name, mut pax_path, mut long_link, mut pax_link) = (None, None, None, None);
        let mut count = 0;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad_archive("(archive)", e))?;
            let header_name = entry.header().path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&header_name).into_owned();
            let ty = entry.header().entry_type();
            let size = entry.size();
            match ty {
                tar::EntryType::GNULongName => {
                    long_name = Some(read_ext(&mut entry, &shown, size, MAX_LONG_NAME)?);
                    continue;
                }
                tar::EntryType::GNULongLink => {
                    long_link = Some(read_ext(&mut entry, &shown, size, MAX_LONG_NAME)?);
                    continue;
                }
                tar::EntryType::XHeader => {
                    let data = read_ext(&mut entry, &shown, size, MAX_PAX)?;
                    for ext in tar::PaxExtensions::new(&data) {
                        let ext = ext.map_err(|e| bad_archive(&shown, e))?;
                        match ext.key_bytes() {
                            b"path" => pax_path = Some(ext.value_bytes().to_vec()),
                            b"linkpath" => pax_link = Some(ext.value_bytes().to_vec()),
                            b"size" => {
                                return Err(archive_err(&shown, "PAX `size` is not supported"))
                            }
                            _ => {}
                        }
                    }
                    continue;
                }
                tar::EntryType::XGlobalHeader => {
                    read_ext(&mut entry, &shown, size, MAX_PAX)?;
                    continue;
                }
                _ => {}
            }
            let raw = pax_path
                .take()
                .or(long_name.take().map(trim_nul))
                .unwrap_or(header_name);
            let link = pax_link
                .take()
                .or(long_link.take().map(trim_nul))
                .or_else(|| entry.header().link_name_bytes().map(|c| c.into_owned()));
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let is_dir = ty == tar::EntryType::Directory;
            let Some(rel) = clean_name(&raw, is_dir).map_err(|r| archive_err(&shown, r))? else {
                continue; // the root itself
            };
            let path = match dir {
                Some(d) => format!("{d}/{rel}").parse::<RelPath>()?,
                None => rel,
            };
            let mode = entry.header().mode().map_err(|e| bad_archive(&shown, e))? & 0o777;
            match ty {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if size > self.file_limit {
                        return Err(FileError::TooLarge {
                            path: path.to_string(),
                            limit: self.file_limit,
                        });
                    }
                    let n = self.write(&path, &mut entry, mode)?;
                    if n != size {
                        return Err(archive_err(&shown, "truncated member"));
                    }
                }
                tar::EntryType::Directory => {
                    let fd = self.make_dirs(Some(&path))?;
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode | 0o700))
                        .map_err(io("setting a directory's mode"))?;
                }
                tar::EntryType::Symlink => {
                    let target = link
                        .filter(|t| !t.is_empty() && !t.contains(&0))
                        .ok_or_else(|| archive_err(&shown, "symlink without a target"))?;
                    self.symlink(&path, &target)?;
                }
                other => {
                    return Err(archive_err(
                        &shown,
                        format!(
                        "{other:?} entries are not supported (files, directories and symlinks are)"
                    ),
                    ))
                }
            }
            count += 1;
        }
        if long_name.is_some() || pax_path.is_some() {
            return Err(archive_err(
                "(end)",
                "archive ends with an extension header",
            ));
        }
        Ok(count)
    }

    /// Makes `path` a symlink to `target` (replacing a file or link there), owned by the
    /// sandbox user. The target is stored as given: reads through it still stay beneath.
    fn symlink(&self, path: &RelPath, target: &[u8]) -> Result<(), FileError> {
        let dir = self.make_dirs(path.parent().as_ref())?;
        let tmp = format!("{TMP_PREFIX}{:016x}", rand::random::<u64>());
        rustix::fs::symlinkat(OsStr::from_bytes(target), &dir, tmp.as_str())
            .map_err(io("making a symlink"))?;
        // lchown through the directory's own descriptor: the link itself, never its target.
        let at = format!("/proc/self/fd/{}/{tmp}", dir.as_raw_fd());
        let owned = std::os::unix::fs::lchown(&at, Some(self.user.uid), Some(self.user.gid));
        let moved = owned
            .map_err(|e| FileError::Io {
                action: "giving a symlink to the sandbox user",
                source: e,
            })
            .and_then(|()| {
                rustix::fs::renameat(&dir, tmp.as_str(), &dir, path.file_name())
                    .map_err(resolve_err(path.as_str(), "placing a symlink"))
            });
        if moved.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        }
        moved
    }
}

fn archive_err(entry: &str, reason: impl Into<String>) -> FileError {
    FileError::Archive {
        entry: entry.chars().take(200).collect(),
        reason: reason.into(),
    }
}

fn bad_archive(entry: &str, e: impl std::fmt::Display) -> FileError {
    archive_err(entry, format!("truncated or corrupt archive: {e}"))
}

fn read_ext(entry: &mut dyn Read, shown: &str, size: u64, cap: u64) -> Result<Vec<u8>, FileError> {
    if size > cap {
        return Err(archive_err(
            shown,
            format!("extension header of {size} bytes exceeds {cap}"),
        ));
    }
    let mut v = Vec::new();
    entry
        .take(cap)
        .read_to_end(&mut v)
        .map_err(|e| bad_archive(shown, e))?;
    Ok(v)
}
