//! Keeping warm-up from corrupting the shared file cache, and sealing a warm runtime read-only.
//!
//! Warm commands run with the runtime's directories writable, and many of its files are hard
//! links to cache inodes shared with every other runtime on the node. Two defences, one
//! preventive, one detective:
//! 1. Warm commands run as the unprivileged sandbox user (`crate::jail::identity`), with no
//!    capabilities. Cache inodes are the origin's (root's) and read-only: that user can
//!    neither open them for writing nor `chmod` them. It is lent this tree's directories
//!    (`super::lend`), so it can still create files (bytecode) and replace or remove entries.
//! 2. In case (1) ever fails (a kernel bug, a misconfigured node), every cache inode the tree
//!    links to is snapshotted before the commands run (inode, size, mtime, mode, ctime) and
//!    checked afterwards. A changed size, mtime or mode fails the warm. The mtime can be put
//!    back (`touch -r`), the ctime cannot, but other warms hard-linking the same inode change
//!    it too; so a changed ctime alone means the file is hashed again against its digest.
//!    Damage fails the warm, and the damaged cache file is removed from the cache so it is
//!    fetched and verified again next time. (Runtimes already linked to the same inode would
//!    share the damage; that is why (1) is there.) Files the commands replaced by rename or
//!    deleted are new inodes or gone: the cache is untouched by those.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use prewarm_shared::{Digest, Manifest};

use prewarm_client::pull::{hash_file, FileCache};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    mode: u32,
}

/// Changes on every write, chmod or link, and cannot be set back by the file's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ctime(i64, i64);

fn ctime(m: &fs::Metadata) -> Ctime {
    Ctime(m.ctime(), m.ctime_nsec())
}

fn stamp(m: &fs::Metadata) -> Stamp {
    Stamp {
        ino: m.ino(),
        size: m.size(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        mode: m.mode() & 0o7777,
    }
}

/// The cache inodes a materialised tree shares, as they were before warm-up.
#[derive(Debug, Default)]
pub struct CacheSnapshot {
    linked: HashMap<PathBuf, (Stamp, Ctime, Digest)>,
}

impl CacheSnapshot {
    /// Records every cache file that `root`'s files are hard links of. Blocking.
    pub fn take(manifest: &Manifest, cache: &FileCache, root: &Path) -> io::Result<Self> {
        let mut linked = HashMap::new();
        for (path, mode, digest, _) in manifest.files() {
            let cached = cache.path_for(digest, mode);
            if linked.contains_key(&cached) {
                continue;
            }
            let (Ok(c), Ok(t)) = (
                fs::symlink_metadata(&cached),
                fs::symlink_metadata(root.join(path.as_str())),
            ) else {
                continue;
            };
            if c.dev() == t.dev() && c.ino() == t.ino() {
                linked.insert(cached, (stamp(&c), ctime(&c), *digest));
            }
        }
        Ok(Self { linked })
    }

    pub fn len(&self) -> usize {
        self.linked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.linked.is_empty()
    }

    /// Checks every recorded inode is unchanged. Changed ones are removed from the cache;
    /// returns their cache paths (empty when all is well). Blocking.
    pub fn verify_and_evict(&self) -> Vec<PathBuf> {
        let mut bad = Vec::new();
        for (path, (before, ctime_before, digest)) in &self.linked {
            let intact = match fs::symlink_metadata(path) {
                Ok(m) if stamp(&m) != *before => false,
                Ok(m) if ctime(&m) != *ctime_before => hash_file(path).ok() == Some(*digest),
                Ok(_) => true,
                Err(_) => false,
            };
            if !intact {
                tracing::error!(path = %path.display(), "a warm command modified a cached file in place; evicting it");
                if let Err(e) = fs::remove_file(path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::error!(path = %path.display(), %e, "could not evict a damaged cache file");
                    }
                }
                bad.push(path.clone());
            }
        }
        bad
    }
}

/// What sealing found in the tree.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sealed {
    pub files: u64,
    pub bytes: u64,
}

/// Removes every write bit under `root` (files first, directories deepest last), so nothing
/// changes a warm runtime after it is registered. Files that are already read-only (cache
/// links) are left alone: not even their ctime changes. Symlinks are not followed. Blocking.
pub fn seal(root: &Path) -> io::Result<Sealed> {
    let mut out = Sealed::default();
    let mut dirs = Vec::new();
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.map_err(io::Error::other)?;
        let m = e.metadata().map_err(io::Error::other)?;
        if m.is_dir() {
            dirs.push((e.into_path(), m.mode()));
            continue;
        }
        if m.is_file() {
            out.files += 1;
            out.bytes += m.len();
            if m.mode() & 0o222 != 0 {
                let mode = m.mode() & 0o555;
                fs::set_permissions(e.path(), fs::Permissions::from_mode(mode))?;
            }
        }
    }
    for (d, mode) in dirs.iter().rev() {
        fs::set_permissions(d, fs::Permissions::from_mode(mode & 0o555))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read-only "cache file" with `bytes`, snapshotted as `CacheSnapshot::take` would.
    fn cached(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, CacheSnapshot) {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
        let m = fs::symlink_metadata(&p).unwrap();
        let linked = HashMap::from([(p.clone(), (stamp(&m), ctime(&m), Digest::of(bytes)))]);
        (p, CacheSnapshot { linked })
    }

    fn rewrite(p: &Path, bytes: &[u8], keep_mtime: bool) {
        let before = fs::metadata(p).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(p, bytes).unwrap();
        if keep_mtime {
            let f = fs::File::options().write(true).open(p).unwrap();
            f.set_modified(before.modified().unwrap()).unwrap();
        }
        fs::set_permissions(p, fs::Permissions::from_mode(0o444)).unwrap();
    }

    #[test]
    fn untouched_and_relinked_files_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, snap) = cached(tmp.path(), "f", b"same bytes\n");
        assert!(snap.verify_and_evict().is_empty());
        // Another runtime linking the inode (or a chmod and back) changes only the ctime.
        fs::hard_link(&p, tmp.path().join("other-runtime")).unwrap();
        rewrite(&p, b"same bytes\n", true);
        assert!(snap.verify_and_evict().is_empty());
        assert!(p.exists());
    }

    #[test]
    fn changed_bytes_are_caught_even_with_size_mode_and_mtime_put_back() {
        let tmp = tempfile::tempdir().unwrap();
        for (name, keep_mtime, bytes) in [
            ("plain", false, &b"longer, changed\n"[..]),
            ("stealthy", true, b"SAME BYTES\n"),
        ] {
            let (p, snap) = cached(tmp.path(), name, b"same bytes\n");
            rewrite(&p, bytes, keep_mtime);
            assert_eq!(snap.verify_and_evict(), std::slice::from_ref(&p), "{name}");
            assert!(!p.exists(), "{name}: the damaged file left the cache");
        }
    }

    #[test]
    fn seal_removes_every_write_bit_and_counts_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rt");
        fs::create_dir_all(root.join("lib")).unwrap();
        fs::write(root.join("lib/a.pyc"), b"12345").unwrap();
        fs::write(root.join("b"), b"xy").unwrap();
        let sealed = seal(&root).unwrap();
        assert_eq!((sealed.files, sealed.bytes), (2, 7));
        for p in [
            root.clone(),
            root.join("lib"),
            root.join("lib/a.pyc"),
            root.join("b"),
        ] {
            let mode = fs::metadata(&p).unwrap().mode();
            assert_eq!(mode & 0o222, 0, "{} is writable", p.display());
        }
        crate::warm::layout::remove_tree(&root);
        assert!(!root.exists());
    }
}
