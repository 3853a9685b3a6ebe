//! Scanning a workspace into manifest entries: unchanged files recognised by their stat, changed ones planned into blocks, hostile entries skipped by name.
//!
//! The walk never follows a symlink: a symlink is recorded with its target verbatim (data, as
//! in runtimes; materialise never writes through one), and fifos, sockets, devices, names that
//! are not UTF-8 and entries that vanish while the walk runs are skipped and reported.
//! Blocking: call it from `spawn_blocking`.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use prewarm_client::pack::{PackError, PlannedBlock, WorkspacePlanner};
use prewarm_shared::{Entry, RelPath};
use serde::Serialize;

/// What identifies a file's contents without reading them: if all of these are unchanged
/// since the last snapshot, so are its bytes (the kernel bumps `ctime` on every write, and a
/// process cannot set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatKey {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl StatKey {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mode: m.mode() & 0o777,
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Each file of the last snapshot, with the stat it had then.
#[derive(Debug, Default, Clone)]
pub struct StatCache(HashMap<RelPath, (StatKey, Entry)>);

/// An entry left out of the snapshot, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: String,
    /// `fifo`, `socket`, `device`, `vanished`, `not_utf8`, `unreadable`.
    pub reason: &'static str,
}

/// A scanned workspace.
pub struct Scan {
    pub entries: Vec<Entry>,
    /// New blocks of the files read this time (each readable with [`PlannedBlock::read`]
    /// while the workspace is still frozen).
    pub blocks: Vec<PlannedBlock>,
    pub skipped: Vec<Skipped>,
    /// The stat cache for the next snapshot.
    pub cache: StatCache,
    /// Files whose bytes were read and planned.
    pub files_read: u64,
    /// Files recognised from `prev` without reading them.
    pub files_reused: u64,
}

/// Why a scan failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading the workspace: {0}")]
    Io(#[from] io::Error),
    #[error("planning the workspace's blocks: {0}")]
    Plan(#[from] PackError),
}

/// Scans `root` (not recorded itself: a manifest's root has no entry). `prev` is the stat
/// cache of the sandbox's last snapshot.
pub fn scan(root: &Path, prev: &StatCache) -> Result<Scan, ScanError> {
    let mut planner = WorkspacePlanner::default();
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let mut keys: HashMap<RelPath, StatKey> = HashMap::new();
    let mut cache = StatCache::default();
    let (mut files_read, mut files_reused) = (0, 0);
    let mut walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .into_iter();
    while let Some(e) = walk.next() {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                let path = err
                    .path()
                    .and_then(|p| p.strip_prefix(root).ok())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let gone = err.io_error().map(|i| i.kind()) == Some(io::ErrorKind::NotFound);
                skipped.push(Skipped {
                    path,
                    reason: if gone { "vanished" } else { "unreadable" },
                });
                continue;
            }
        };
        let rel_os = e.path().strip_prefix(root).unwrap_or(e.path());
        let Some(rel) = rel_os.to_str().and_then(|s| s.parse::<RelPath>().ok()) else {
            skipped.push(Skipped {
                path: rel_os.to_string_lossy().into_owned(),
                reason: "not_utf8",
            });
            if e.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        };
        let md = match std::fs::symlink_metadata(e.path()) {
            Ok(m) => m,
            Err(err) => {
                let gone = err.kind() == io::ErrorKind::NotFound;
                skipped.push(Skipped {
                    path: rel.to_string(),
                    reason: if gone { "vanished" } else { "unreadable" },
                });
                if e.file_type().is_dir() {
                    walk.skip_current_dir();
                }
                continue;
            }
        };
        let ft = md.file_type();
        if ft.is_dir() {
            entries.push(Entry::Dir {
                path: rel,
                mode: md.mode() & 0o777,
            });
        } else if ft.is_symlink() {
            match std::fs::read_link(e.path()) {
                Ok(t) => match t.to_str() {
                    Some(t) if !t.is_empty() && !t.contains('\0') => entries.push(Entry::Symlink {
                        path: rel,
                        target: t.to_string(),
                    }),
                    _ => skipped.push(Skipped {
                        path: rel.to_string(),
                        reason: "not_utf8",
                    }),
                },
                Err(_) => skipped.push(Skipped {
                    path: rel.to_string(),
                    reason: "vanished",
                }),
            }
        } else if ft.is_file() {
            let key = StatKey::of(&md);
            if let Some((k, entry)) = prev.0.get(&rel) {
                if *k == key {
                    cache.0.insert(rel, (key, entry.clone()));
                    entries.push(entry.clone());
                    files_reused += 1;
                    continue;
                }
            }
            match planner.add_file(rel.clone(), key.mode, key.size, e.path()) {
                Ok(()) => {
                    keys.insert(rel, key);
                    files_read += 1;
                }
                // Gone between the stat and the read (only something outside the frozen
                // sandbox can do that): left out, by name.
                Err(PackError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    skipped.push(Skipped {
                        path: rel.to_string(),
                        reason: "vanished",
                    })
                }
                Err(err) => return Err(err.into()),
            }
        } else {
            let reason = if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else {
                "device"
            };
            skipped.push(Skipped {
                path: rel.to_string(),
                reason,
            });
        }
    }
    let (files, blocks) = planner.finish()?;
    for f in files {
        if let Some(k) = keys.get(f.path()) {
            cache.0.insert(f.path().clone(), (*k, f.clone()));
        }
        entries.push(f);
    }
    // Skipped directories' children were never walked; skipped entries under a recorded
    // directory leave it as it is. Nothing else to fix up: every parent of an entry is a
    // directory the walk recorded first.
    Ok(Scan {
        entries,
        blocks,
        skipped,
        cache,
        files_read,
        files_reused,
    })
}
