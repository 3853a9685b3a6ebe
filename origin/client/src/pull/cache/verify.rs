//! `FileCache::verify`: re-hash every cached file against its name and drop what is damaged.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use prewarm_shared::Digest;
use serde::Serialize;

use super::{hash_file_sized, FileCache};
use crate::pull::error::{io_err, PullError};

/// Most threads hashing at once. SHA-256 is CPU-bound; past a few threads the disk is the
/// limit, and the host has other work.
const MAX_WORKERS: usize = 4;

/// What [`FileCache::verify`] checked and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries of the files bucket examined, damaged ones included.
    pub files_checked: u64,
    /// Bytes read and hashed.
    pub bytes_checked: u64,
    /// Damaged entries removed from the cache (all of `damaged`).
    pub files_removed: u64,
    pub bytes_removed: u64,
    /// Damaged files whose inode other names still link (`links > 1`): materialised trees
    /// that keep the damaged bytes until they are pulled again.
    pub still_linked: u64,
    /// What was damaged and removed, by path.
    pub damaged: Vec<Damaged>,
}

impl VerifyReport {
    fn add(&mut self, other: VerifyReport) {
        self.files_checked += other.files_checked;
        self.bytes_checked += other.bytes_checked;
        self.files_removed += other.files_removed;
        self.bytes_removed += other.bytes_removed;
        self.still_linked += other.still_linked;
        self.damaged.extend(other.damaged);
    }

    fn record(&mut self, damaged: Damaged) {
        self.files_removed += 1;
        self.bytes_removed += damaged.bytes;
        self.still_linked += u64::from(damaged.links > 1);
        self.damaged.push(damaged);
    }
}

/// One damaged cache entry, already removed from the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damaged {
    /// Where it was, relative to the cache directory (`files-v1/3f/3fa9…e1.444`).
    pub path: String,
    /// The content digest its name claims, when the name parses.
    pub digest: Option<Digest>,
    pub problem: Problem,
    /// What the bytes hash to, for [`Problem::HashMismatch`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<Digest>,
    /// A regular file's link count when found, this name included (else 0). Removing the
    /// cache's name does not repair the other links: trees materialised by hard links still
    /// hold these bytes.
    pub links: u64,
    /// Its size, for a regular file (else 0).
    pub bytes: u64,
}

/// Why a cache entry is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The bytes do not hash to the digest in the name (same size or not).
    HashMismatch,
    /// The name is not `<sha256 hex>.<cache mode>` in its digest's fan-out directory, so no
    /// pull would ever find it where it is.
    BadName,
    /// The permission bits differ from the mode in the name (someone `chmod`ed it).
    WrongMode,
    /// A directory, symlink or other non-regular file where a cached file belongs.
    NotAFile,
    /// Reading it failed with `EIO`: the disk lost the bytes.
    Unreadable,
}

impl Problem {
    /// A few words for the human report.
    pub fn describe(self) -> &'static str {
        match self {
            Problem::HashMismatch => "content does not match its digest",
            Problem::BadName => "name is not <sha256>.<cache mode> in its fan-out directory",
            Problem::WrongMode => "permission bits differ from its name's mode",
            Problem::NotAFile => "not a regular file",
            Problem::Unreadable => "unreadable (I/O error)",
        }
    }
}

impl FileCache {
    /// Re-hashes every file in the files bucket against the digest in its name, checks the
    /// name and the mode, and removes whatever is damaged so that the next pull fetches it
    /// again. Streams each file (memory stays flat) on up to four threads.
    ///
    /// Trees are not searched: a damaged file hard-linked into materialised runtimes stays
    /// damaged there (the report gives its link count), and a tree copied or reflinked from
    /// it before it was found may hold the same wrong bytes. Those runtimes must be pulled
    /// again with `--replace`.
    ///
    /// # Contract
    /// The caller holds the exclusive [`FileCache::lock`]: no pull may be fetching into the
    /// cache or linking from it meanwhile.
    ///
    /// # Errors
    /// An I/O failure other than `EIO` while reading a file (which makes it damaged) stops the
    /// walk. Damaged entries removed before it stay removed.
    pub fn verify(&self) -> Result<VerifyReport, PullError> {
        let top = match fs::read_dir(&self.files) {
            Ok(rd) => rd
                .collect::<Result<Vec<_>, _>>()
                .map_err(io_err("listing", &self.files))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(VerifyReport::default())
            }
            Err(e) => return Err(PullError::io("listing", &self.files, e)),
        };
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, MAX_WORKERS)
            .min(top.len().max(1));
        // Fan-out directories are the unit of work: 256 of them spread the load evenly.
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let work = || -> Result<VerifyReport, PullError> {
            let mut report = VerifyReport::default();
            while !failed.load(Ordering::Relaxed) {
                let Some(entry) = top.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                if let Err(e) = self.verify_top(entry, &mut report) {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(report)
        };
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut report = VerifyReport::default();
        let mut error = None;
        for r in results {
            match r {
                Ok(r) => report.add(r),
                Err(e) => error = Some(e),
            }
        }
        report.damaged.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(e) = error {
            // The error is all the caller gets: say what was removed before it.
            for d in &report.damaged {
                tracing::warn!(path = %d.path, problem = ?d.problem, links = d.links, "removed a damaged cache file");
            }
            return Err(e);
        }
        Ok(report)
    }

    /// One entry of `files-v1/`: a fan-out directory to verify, or something that has no
    /// business there.
    fn verify_top(&self, entry: &fs::DirEntry, report: &mut VerifyReport) -> Result<(), PullError> {
        let path = entry.path();
        let meta = entry
            .metadata()
            .map_err(io_err("reading metadata of", &path))?;
        let name = entry.file_name();
        let is_fan = name.to_str().is_some_and(|n| {
            n.len() == 2
                && n.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !(is_fan && meta.is_dir()) {
            report.files_checked += 1;
            return self.drop_damaged(&path, &meta, None, Problem::BadName, None, report);
        }
        let dir = fs::read_dir(&path).map_err(io_err("listing", &path))?;
        for entry in dir {
            let entry = entry.map_err(io_err("listing", &path))?;
            self.verify_file(&entry.path(), report)?;
        }
        Ok(())
    }

    /// One entry of a fan-out directory.
    fn verify_file(&self, path: &Path, report: &mut VerifyReport) -> Result<(), PullError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(PullError::io("reading metadata of", path, e)),
        };
        report.files_checked += 1;
        let named = path
            .file_name()
            .and_then(parse_name)
            .filter(|(digest, mode)| self.path_for(digest, *mode) == path);
        let digest = named.map(|(d, _)| d);
        let problem = match named {
            _ if !meta.is_file() => Problem::NotAFile,
            None => Problem::BadName,
            Some((_, mode)) if meta.mode() & 0o7777 != mode => Problem::WrongMode,
            Some((expected, _)) => match hash_file_sized(path) {
                Ok((actual, len)) => {
                    report.bytes_checked += len;
                    if actual == expected {
                        return Ok(());
                    }
                    return self.drop_damaged(
                        path,
                        &meta,
                        digest,
                        Problem::HashMismatch,
                        Some(actual),
                        report,
                    );
                }
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    Problem::Unreadable
                }
                Err(e) => return Err(PullError::io("reading", path, e)),
            },
        };
        self.drop_damaged(path, &meta, digest, problem, None, report)
    }

    /// Removes a damaged entry and records it.
    fn drop_damaged(
        &self,
        path: &Path,
        meta: &fs::Metadata,
        digest: Option<Digest>,
        problem: Problem,
        actual: Option<Digest>,
        report: &mut VerifyReport,
    ) -> Result<(), PullError> {
        let removed = if meta.is_dir() {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(PullError::io("removing damaged cache entry", path, e));
            }
            _ => {}
        }
        let shown = path.strip_prefix(&self.root).unwrap_or(path);
        report.record(Damaged {
            path: shown.to_string_lossy().into_owned(),
            digest,
            problem,
            actual,
            links: if meta.is_file() { meta.nlink() } else { 0 },
            bytes: if meta.is_file() { meta.len() } else { 0 },
        });
        Ok(())
    }
}

/// `<64 lowercase hex>.<3 octal digits>` where the mode obeys the cache's mode rule.
fn parse_name(name: &std::ffi::OsStr) -> Option<(Digest, u32)> {
    let (hex, mode) = name.to_str()?.split_once('.')?;
    if mode.len() != 3 || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let mode = u32::from_str_radix(mode, 8).ok()?;
    let digest = format!("sha256:{hex}").parse().ok()?;
    (FileCache::cache_mode(mode) == mode).then_some((digest, mode))
}
