//! The node directory: where warm runtimes, sandboxes and the node's file cache live, and its startup sweep.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use prewarm_shared::Digest;
use rustix::fs::{flock, FlockOperation};

/// Versioned name of the node directory inside the origin's data dir.
pub const NODE_DIR: &str = "node-v1";

/// Paths of one node. One origin process owns a node directory at a time (an exclusive
/// `flock` on `lock`), so the startup sweep may remove whatever a killed process left.
///
/// ```text
/// <data-dir>/node-v1/
/// ├── lock                     flock held while an origin runs on this node dir
/// ├── index.json               warm runtimes: digest → {runtime, prefix, env, size, last_used…}
/// ├── estimates.json           learned warm durations per runtime (for `estimated_ms`)
/// ├── cache/                   the pull FileCache (files-v1/…, tmp/); runtimes hard-link from it
/// ├── runtimes/
/// │   ├── <manifest hex>/      a sealed warm runtime (read-only), listed in index.json
/// │   └── .warming-<hex>-<r>/  a runtime being built; renamed to <hex> only when warm and sealed
/// └── sandboxes/
///     └── sb-<id>/workspace/   a sandbox's private writable workspace (mounted at /workspace)
/// ```
///
/// Runtimes and the cache share a filesystem, so materialising is hard linking. At startup,
/// everything in `runtimes/` that is not a runtime listed in the index (half-built trees of a
/// killed warm), every `sandboxes/` entry (sandboxes do not survive a restart) and the cache's
/// scratch are removed, and index entries whose tree is gone are dropped.
#[derive(Debug)]
pub struct NodeLayout {
    pub root: PathBuf,
    pub cache: PathBuf,
    pub runtimes: PathBuf,
    pub sandboxes: PathBuf,
    pub index: PathBuf,
    pub estimates: PathBuf,
    /// Holds the flock for the life of the process.
    _lock: fs::File,
}

impl NodeLayout {
    /// Creates the directories and takes the node lock (failing if another process holds it).
    pub fn open(root: &Path) -> io::Result<Self> {
        let cache = root.join("cache");
        let runtimes = root.join("runtimes");
        let sandboxes = root.join("sandboxes");
        for d in [root, &cache, &runtimes, &sandboxes] {
            fs::create_dir_all(d)?;
        }
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))?;
        flock(&lock, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by another origin ({e})", root.display()),
            )
        })?;
        Ok(Self {
            index: root.join("index.json"),
            estimates: root.join("estimates.json"),
            root: root.to_path_buf(),
            cache,
            runtimes,
            sandboxes,
            _lock: lock,
        })
    }

    /// Where the warm runtime with manifest `digest` lives once sealed.
    pub fn runtime_dir(&self, digest: &Digest) -> PathBuf {
        self.runtimes.join(digest.hex())
    }

    /// A fresh build directory for `digest` (not created; `materialise` creates it).
    pub fn build_dir(&self, digest: &Digest) -> PathBuf {
        self.runtimes.join(format!(
            ".warming-{}-{:016x}",
            digest.hex(),
            rand::random::<u64>()
        ))
    }

    /// Removes leftovers of a previous process: returns the names of runtime dirs kept.
    /// `keep` says whether a `runtimes/<name>` directory is a registered runtime.
    pub fn sweep(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        self.kill_leftover_sandboxes();
        // Snapshot clones a killed origin left mounted, before their directories go.
        crate::snapshot::overlay::sweep_mounts(&self.root);
        let mut kept = Vec::new();
        for (dir, all) in [(&self.runtimes, false), (&self.sandboxes, true)] {
            let Ok(rd) = fs::read_dir(dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !all && keep(&name) {
                    kept.push(name);
                    continue;
                }
                tracing::info!(path = %e.path().display(), "removing leftover of a previous run");
                remove_tree(&e.path());
            }
        }
        if let Ok(rd) = fs::read_dir(self.cache.join("tmp")) {
            for e in rd.flatten() {
                remove_tree(&e.path());
            }
        }
        kept
    }
}

impl NodeLayout {
    /// Kills bubblewrap processes a previous process of this node left behind. bwrap's
    /// `--die-with-parent` covers a clean death, but not an origin killed while a bwrap was
    /// still starting (before it armed its parent-death signal): such a warm or exec would run
    /// on, orphaned. Found by their command line, which binds a directory of this node.
    fn kill_leftover_sandboxes(&self) {
        use rustix::process::{kill_process, Pid, Signal};
        let me = std::process::id();
        let mut needle = self.root.as_os_str().as_encoded_bytes().to_vec();
        needle.push(b'/');
        let Ok(procs) = fs::read_dir("/proc") else {
            return;
        };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(cmdline) = fs::read(p.path().join("cmdline")) else {
                continue;
            };
            let mut args = cmdline.split(|b| *b == 0);
            // `prlimit` too: it becomes bwrap when it execs, but could be caught before.
            let is_bwrap = args
                .next()
                .is_some_and(|a| a.ends_with(b"bwrap") || a.ends_with(b"prlimit"));
            let ours = args.any(|a| a.starts_with(&needle));
            if is_bwrap && ours {
                if let Some(pid) = Pid::from_raw(pid as i32) {
                    tracing::warn!(
                        pid = pid.as_raw_nonzero().get(),
                        "killing a sandbox process left by a previous run"
                    );
                    let _ = kill_process(pid, Signal::Kill);
                }
            }
        }
    }
}

/// Removes a tree whose directories may be read-only (sealed runtimes); logs failures.
///
/// Trees the sandbox user wrote (workspaces, build dirs) are removed without changing a mode
/// first: `remove_dir_all` never follows a symlink, and root needs no write bit. Only an
/// origin that is not root (no sandboxes then) makes directories writable to remove them.
pub fn remove_tree(path: &Path) {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).or_else(|e| {
            if e.kind() != io::ErrorKind::PermissionDenied {
                return Err(e);
            }
            make_writable(path);
            fs::remove_dir_all(path)
        }),
        Ok(_) => fs::remove_file(path),
        Err(_) => return,
    };
    if let Err(err) = res {
        if err.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %err, "could not remove a tree");
        }
    }
}

/// Gives every directory under `path` owner rwx, each before it is listed.
fn make_writable(path: &Path) {
    if fs::set_permissions(path, fs::Permissions::from_mode(0o700)).is_err() {
        return;
    }
    let Ok(dir) = fs::read_dir(path) else { return };
    for e in dir.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&e.path());
        }
    }
}

/// Writes `bytes` to `path` atomically: a temp file beside it, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}
