//! Copy-on-write clones with overlayfs: mounting a clone's workspace on a snapshot base, the base's metadata layer, unmounting, and sweeping mounts a killed origin left.
//!
//! A clone's workspace is `overlay(lower = base/meta : base/data, upper = clone/upper)`:
//! - `base/data` is the snapshot's tree materialised by hard links from the node's file cache
//!   (root's, read-only cache modes), shared by every clone of the snapshot;
//! - `base/meta` is a metadata-only layer (`metacopy=on`) made once per base: every entry
//!   owned by the sandbox user with the mode the manifest records, no data copied;
//! - `clone/upper` gets everything the clone writes (copy-up on first write).
//!
//! Mounting costs the same whatever the workspace's size; a write in one clone lands in its
//! own upper only, never in another clone, the base, or the file cache (overlayfs never writes
//! a lower layer). Needs root and overlayfs; otherwise the caller copies instead.

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, DirBuilderExt, PermissionsExt};
use std::path::Path;

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

use crate::jail::identity::SandboxUser;

/// How a clone's workspace was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloneKind {
    /// overlayfs: O(1), copy-on-write.
    Overlay,
    /// A full copy of the base (no root, or no overlayfs): O(workspace size).
    Copy,
}

/// Overlay mount options. `metacopy=on` lets a chown/chmod copy up metadata only; the base's
/// meta layer is made of such entries, so every mount stacking on it needs the option too.
fn options(lower: &str, upper: &Path, work: &Path) -> String {
    format!(
        "lowerdir={lower},upperdir={},workdir={},metacopy=on,redirect_dir=on,index=off",
        upper.display(),
        work.display()
    )
}

fn overlay(lower: &str, upper: &Path, work: &Path, target: &Path) -> io::Result<()> {
    mount(
        "prewarm-snapshot",
        target,
        "overlay",
        MountFlags::NODEV | MountFlags::NOSUID,
        options(lower, upper, work).as_str(),
    )
    .map_err(io::Error::from)
}

fn mkdir(p: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().mode(mode).create(p)
}

/// Builds `base/meta` over `base/data`: every entry of the merged view owned by `user` and
/// given `mode_of(path)` (files and directories; symlinks only chowned). Returns `false`
/// (and leaves no meta layer) when overlayfs cannot be mounted here. Blocking.
pub fn build_meta(
    base: &Path,
    user: SandboxUser,
    mode_of: &dyn Fn(&Path) -> Option<u32>,
) -> io::Result<bool> {
    let (meta, work, merged) = (
        base.join("meta"),
        base.join(".meta-work"),
        base.join(".merged"),
    );
    for d in [&meta, &work, &merged] {
        mkdir(d, 0o700)?;
    }
    let data = base.join("data");
    let lower = data
        .to_str()
        .ok_or_else(|| io::Error::other("non-UTF-8 node path"))?;
    if let Err(e) = overlay(lower, &meta, &work, &merged) {
        tracing::warn!(error = %e, "overlayfs unavailable: snapshot clones will be copies");
        for d in [&meta, &work, &merged] {
            let _ = fs::remove_dir_all(d);
        }
        return Ok(false);
    }
    let chowned = (|| {
        for e in walkdir::WalkDir::new(&merged).follow_links(false) {
            let e = e.map_err(io::Error::other)?;
            lchown(e.path(), Some(user.uid), Some(user.gid))?;
            let ft = e.file_type();
            if ft.is_symlink() {
                continue;
            }
            let rel = e.path().strip_prefix(&merged).unwrap_or(e.path());
            let mode = if rel.as_os_str().is_empty() {
                Some(0o755)
            } else {
                mode_of(rel)
            };
            if let Some(m) = mode {
                fs::set_permissions(e.path(), fs::Permissions::from_mode(m & 0o777))?;
            }
        }
        Ok::<(), io::Error>(())
    })();
    let unmounted = unmount(&merged, UnmountFlags::empty()).map_err(io::Error::from);
    let _ = fs::remove_dir_all(&work);
    let _ = fs::remove_dir(&merged);
    chowned?;
    unmounted?;
    Ok(true)
}

/// Mounts a clone's workspace at `target` (created here), with its upper and work dirs
/// beside it in `dir`. Blocking.
pub fn mount_clone(base: &Path, dir: &Path, target: &Path, user: SandboxUser) -> io::Result<()> {
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    mkdir(&upper, 0o755)?;
    mkdir(&work, 0o700)?;
    mkdir(target, 0o755)?;
    // The merged root takes the upper root's owner: the sandbox user's, like a fresh workspace.
    lchown(&upper, Some(user.uid), Some(user.gid))?;
    let lower = format!(
        "{}:{}",
        base.join("meta").display(),
        base.join("data").display()
    );
    overlay(&lower, &upper, &work, target)
}

/// Detaches the mount at `target` if there is one (busy or not); a missing mount is fine.
pub fn unmount_clone(target: &Path) {
    match unmount(target, UnmountFlags::DETACH) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => {}
        Err(e) => tracing::warn!(path = %target.display(), error = %e, "could not unmount a clone"),
    }
}

/// Detaches every mount under `root` (a node directory): what an origin killed with clones
/// mounted left behind. Deepest first. Call before anything removes trees under `root`.
pub fn sweep_mounts(root: &Path) {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut prefix = root.as_os_str().as_encoded_bytes().to_vec();
    prefix.push(b'/');
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.as_bytes().starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        tracing::info!(path = %p, "detaching a mount left by a previous run");
        unmount_clone(Path::new(&p));
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Copies `base/data` to `target` as `user`'s files with `mode_of` modes: the fallback where
/// overlayfs is not available. Never follows a symlink. Blocking.
pub fn copy_clone(
    base: &Path,
    target: &Path,
    user: SandboxUser,
    mode_of: &dyn Fn(&Path) -> Option<u32>,
) -> io::Result<()> {
    let data = base.join("data");
    mkdir(target, 0o755)?;
    lchown(target, Some(user.uid), Some(user.gid))?;
    for e in walkdir::WalkDir::new(&data)
        .min_depth(1)
        .follow_links(false)
    {
        let e = e.map_err(io::Error::other)?;
        let rel = e.path().strip_prefix(&data).unwrap_or(e.path());
        let dst = target.join(rel);
        let ft = e.file_type();
        if ft.is_dir() {
            mkdir(&dst, 0o700)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path())?, &dst)?;
        } else if ft.is_file() {
            fs::copy(e.path(), &dst)?;
        } else {
            continue;
        }
        lchown(&dst, Some(user.uid), Some(user.gid))?;
        if !ft.is_symlink() {
            let m = mode_of(rel).unwrap_or(if ft.is_dir() { 0o755 } else { 0o644 });
            fs::set_permissions(&dst, fs::Permissions::from_mode(m & 0o777))?;
        }
    }
    Ok(())
}
