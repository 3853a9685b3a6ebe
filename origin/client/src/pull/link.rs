//! Placing one cached file in a tree: hard link, reflink or copy, and never a silent fallback.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use prewarm_shared::{Digest, RelPath};
use rustix::io::Errno;
use serde::Serialize;

use super::error::PullError;
use super::LinkMode;

/// How many files of a materialised tree were placed each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    pub hardlink: u64,
    pub reflink: u64,
    pub copy: u64,
}

impl LinkStats {
    /// `"hardlink"`, `"reflink"` or `"copy"` if every file went one way, `"mixed"` otherwise.
    /// A tree without files reports what `requested` would have used first.
    pub fn mode_used(&self, requested: LinkMode) -> &'static str {
        match (self.hardlink, self.reflink, self.copy) {
            (0, 0, 0) => match requested {
                LinkMode::Auto | LinkMode::Hardlink => "hardlink",
                LinkMode::Reflink => "reflink",
                LinkMode::Copy => "copy",
            },
            (_, 0, 0) => "hardlink",
            (0, _, 0) => "reflink",
            (0, 0, _) => "copy",
            _ => "mixed",
        }
    }
}

/// Places files for one materialisation. In `Auto` it remembers a strategy the filesystem
/// refused (cross-device, unsupported) so a 40k-file tree does not retry it 40k times.
#[derive(Debug)]
pub(crate) struct Linker {
    requested: LinkMode,
    no_hardlink: bool,
    no_reflink: bool,
    pub(crate) stats: LinkStats,
}

impl Linker {
    pub(crate) fn new(requested: LinkMode) -> Self {
        Self {
            requested,
            no_hardlink: false,
            no_reflink: false,
            stats: LinkStats::default(),
        }
    }

    /// Puts cached `src` at `dst` (which must not exist). A hard link keeps the cache's
    /// read-only mode; a reflink or copy gets exactly `mode`.
    pub(crate) fn place(
        &mut self,
        src: &Path,
        dst: &Path,
        mode: u32,
        rel: &RelPath,
        digest: &Digest,
    ) -> Result<(), PullError> {
        let fail = |action: &'static str, e: io::Error| {
            if e.kind() == io::ErrorKind::NotFound && !src.exists() {
                PullError::NotCached {
                    path: rel.clone(),
                    digest: *digest,
                }
            } else {
                PullError::io(action, dst, e)
            }
        };
        let impossible =
            |mode: &'static str, reason: &str, e: io::Error| PullError::LinkImpossible {
                mode,
                path: rel.clone(),
                reason: reason.to_string(),
                source: e,
            };
        let auto = self.requested == LinkMode::Auto;
        if (auto && !self.no_hardlink) || self.requested == LinkMode::Hardlink {
            match fs::hard_link(src, dst) {
                Ok(()) => {
                    // Cache files get the fixed mtime when they enter the cache; one cached by
                    // an older prewarm gets it now (a stat when it has it already).
                    let m = fs::symlink_metadata(dst).map_err(|e| fail("inspecting", e))?;
                    if m.mtime() != MATERIALISED_MTIME || m.mtime_nsec() != 0 {
                        set_fixed_mtime(dst)?;
                    }
                    self.stats.hardlink += 1;
                    return Ok(());
                }
                Err(e) => match Errno::from_io_error(&e) {
                    Some(Errno::XDEV | Errno::PERM | Errno::OPNOTSUPP) if auto => {
                        tracing::warn!(
                            cache = %src.display(), dest = %dst.display(), err = %e,
                            "hard links impossible here; reflinking or copying instead"
                        );
                        self.no_hardlink = true;
                    }
                    Some(Errno::MLINK) if auto => {}
                    Some(Errno::XDEV) => {
                        let why = "the cache directory and the destination are on different \
                                   filesystems; use --link-mode auto or copy, or a --cache-dir \
                                   on the destination's filesystem";
                        return Err(impossible("hardlink", why, e));
                    }
                    Some(Errno::MLINK) => {
                        let why = "the cached file has as many hard links as the filesystem allows";
                        return Err(impossible("hardlink", why, e));
                    }
                    Some(Errno::PERM | Errno::OPNOTSUPP) => {
                        let why = "the filesystem refuses hard links";
                        return Err(impossible("hardlink", why, e));
                    }
                    _ => return Err(fail("hard-linking", e)),
                },
            }
        }
        if (auto && !self.no_reflink) || self.requested == LinkMode::Reflink {
            match reflink(src, dst) {
                Ok(()) => {
                    set_mode(dst, mode)?;
                    set_fixed_mtime(dst)?;
                    self.stats.reflink += 1;
                    return Ok(());
                }
                Err(e) if reflink_unsupported(&e) => {
                    if !auto {
                        let why = "the filesystem cannot clone files (FICLONE), or the cache is \
                                   on another filesystem";
                        return Err(impossible("reflink", why, e));
                    }
                    self.no_reflink = true;
                }
                Err(e) => return Err(fail("reflinking", e)),
            }
        }
        fs::copy(src, dst).map_err(|e| fail("copying", e))?;
        set_mode(dst, mode)?;
        set_fixed_mtime(dst)?;
        self.stats.copy += 1;
        Ok(())
    }
}

fn reflink(src: &Path, dst: &Path) -> io::Result<()> {
    let from = File::open(src)?;
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    if let Err(e) = rustix::fs::ioctl_ficlone(&to, &from) {
        drop(to);
        let _ = fs::remove_file(dst);
        return Err(e.into());
    }
    Ok(())
}

fn reflink_unsupported(e: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(e),
        Some(
            Errno::OPNOTSUPP
                | Errno::XDEV
                | Errno::INVAL
                | Errno::NOTTY
                | Errno::NOSYS
                | Errno::PERM
                | Errno::BADF
        )
    )
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), PullError> {
    fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|e| PullError::io("setting the mode of", path, e))
}

/// The modification time (Unix seconds, 1980-01-02T00:00:00Z) of every file prewarm
/// materialises, on every host, like `SOURCE_DATE_EPOCH`: the same manifest gives the same
/// metadata everywhere, so bytecode that records its source's mtime (CPython's `.pyc`) made on
/// one node is valid on another (docs/FORMAT.md, "Materialised metadata"). After 1980 so zip
/// tools accept the files.
pub const MATERIALISED_MTIME: i64 = 315_619_200;

/// Sets `path`'s access and modification times to [`MATERIALISED_MTIME`] (not following a
/// symlink).
pub(crate) fn set_fixed_mtime(path: &Path) -> Result<(), PullError> {
    let t = rustix::fs::Timespec {
        tv_sec: MATERIALISED_MTIME,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| PullError::io("setting the mtime of", path, e.into()))
}
