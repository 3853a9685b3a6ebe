//! Warm-up's writable view: a build tree's directories lent to the sandbox user while its warm commands run, and the whole tree taken back before it is checked and sealed.
//!
//! A build tree's directories are its own (materialise makes them; nothing links a directory),
//! while its files are hard links to cache inodes that every runtime with the same content
//! shares. Lent the directories, the sandbox user can add, rename and unlink this tree's
//! entries: write bytecode beside a source, replace a file by renaming a new one over it. The
//! files materialise placed stay the origin's and read-only, so it can neither write nor
//! `chmod` one, nor write one through a hard link of its own (the inode is still not writable
//! by it, and `fs.protected_hardlinks` refuses the link anyway). A replaced file is a new inode
//! in this tree; the shared inode only loses a link.
//!
//! (An overlayfs upper directory would give warm-up a copy-on-write view too, at a higher
//! price: mounts the origin makes and must never leak, directories that must still be
//! writable by the sandbox user, and an upper layer to merge back, whiteouts and opaque
//! directories included.)

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::process::{getegid, geteuid};

use crate::jail::identity::SandboxUser;

/// Gives `user` every directory under `root`, `root` included; files and symlinks stay the
/// origin's. Blocking. The tree is fresh from materialise: nothing else writes it yet.
pub(super) fn lend_dirs(root: &Path, user: SandboxUser) -> io::Result<()> {
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.map_err(io::Error::other)?;
        if e.file_type().is_dir() {
            lchown(e.path(), Some(user.uid), Some(user.gid))?;
        }
    }
    Ok(())
}

/// Gives the origin back everything under `root` it does not own (the lent directories and
/// whatever the warm commands made), clearing setuid, setgid and sticky bits on all of it.
/// Returns how many entries it took back. Never follows a symlink. Blocking; call it only
/// when no sandboxed process can still be running in the tree.
pub(super) fn reclaim(root: &Path) -> io::Result<u64> {
    let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
    let mut taken = 0;
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.map_err(io::Error::other)?;
        let m = e.metadata().map_err(io::Error::other)?;
        if m.uid() == uid && m.gid() == gid {
            continue;
        }
        lchown(e.path(), Some(uid), Some(gid))?;
        taken += 1;
        if !m.file_type().is_symlink() && m.mode() & 0o7000 != 0 {
            fs::set_permissions(e.path(), fs::Permissions::from_mode(m.mode() & 0o777))?;
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: SandboxUser = SandboxUser {
        uid: 4242,
        gid: 4343,
    };

    fn owner(p: &Path) -> (u32, u32) {
        let m = fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    }

    #[test]
    fn only_directories_are_lent_and_everything_comes_back_without_special_bits() {
        let origin = (geteuid().as_raw(), getegid().as_raw());
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rt");
        fs::create_dir_all(root.join("lib")).unwrap();
        let shared = root.join("lib/shared");
        fs::write(&shared, b"cache inode").unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o444)).unwrap();
        std::os::unix::fs::symlink("shared", root.join("lib/link")).unwrap();

        lend_dirs(&root, USER).unwrap();
        let lent = (USER.uid, USER.gid);
        assert_eq!(owner(&root), lent);
        assert_eq!(owner(&root.join("lib")), lent);
        assert_eq!(owner(&shared), origin, "files stay the origin's");
        assert_eq!(owner(&root.join("lib/link")), origin);

        // What a warm command leaves: a setuid file and a setgid, sticky directory of its own,
        // and a symlink of its own to a file outside the tree.
        let made = root.join("lib/made");
        fs::write(&made, b"#!/bin/sh\n").unwrap();
        lchown(&made, Some(USER.uid), Some(USER.gid)).unwrap();
        fs::set_permissions(&made, fs::Permissions::from_mode(0o4755)).unwrap();
        let cache_dir = root.join("lib/__pycache__");
        fs::create_dir(&cache_dir).unwrap();
        lchown(&cache_dir, Some(USER.uid), Some(USER.gid)).unwrap();
        fs::set_permissions(&cache_dir, fs::Permissions::from_mode(0o3775)).unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, b"not the tree's").unwrap();
        lchown(&outside, Some(USER.uid), Some(USER.gid)).unwrap();
        let escape = root.join("escape");
        std::os::unix::fs::symlink(&outside, &escape).unwrap();
        lchown(&escape, Some(USER.uid), Some(USER.gid)).unwrap();

        assert_eq!(reclaim(&root).unwrap(), 5);
        for p in [
            &root,
            &root.join("lib"),
            &made,
            &cache_dir,
            &escape,
            &shared,
        ] {
            assert_eq!(owner(p), origin, "{}", p.display());
            let mode = fs::symlink_metadata(p).unwrap().mode();
            assert_eq!(mode & 0o7000, 0, "{}: {mode:o}", p.display());
        }
        assert_eq!(fs::metadata(&made).unwrap().mode() & 0o777, 0o755);
        assert_eq!(owner(&outside), lent, "a symlink's target is not followed");
        assert_eq!(reclaim(&root).unwrap(), 0, "nothing left to take back");
    }
}
