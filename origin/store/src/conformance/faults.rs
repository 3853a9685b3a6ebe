//! Fault cases for every [`Store`]: a full backend, a failing body; and the small tmpfs the disk cases run on.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use futures::StreamExt;
use prewarm_shared::Digest;

use crate::{Kind, Store, StoreExt};

/// One object a fault case tried to store, and whether `put` said it did.
pub struct Attempt {
    pub digest: Digest,
    pub bytes: Bytes,
    pub stored: bool,
}

/// Puts distinct blocks of `len` bytes until `put` has failed `failures` times (the backend is
/// full), or panics after `max` tries: the case would prove nothing. Blocks are sent in 1 to
/// `pieces` pieces in turn, so that once the backend is full every way of failing is met: the
/// lost error of a last (or only) write is the classic bug.
pub async fn fill_until_full(
    store: &dyn Store,
    len: usize,
    pieces: usize,
    failures: usize,
    max: usize,
) -> Vec<Attempt> {
    let mut tried = Vec::new();
    let mut failed = 0;
    while failed < failures {
        assert!(
            tried.len() < max,
            "{}: {max} puts of {len} bytes never failed; the backend is not full",
            store.name()
        );
        let bytes = super::unique("full", len);
        let digest = Digest::of(&bytes);
        let step = len.div_ceil(1 + tried.len() % pieces.max(1));
        let chunks: Vec<_> = bytes
            .chunks(step)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let stored = store
            .put(Kind::Block, &digest, futures::stream::iter(chunks).boxed())
            .await
            .is_ok();
        failed += usize::from(!stored);
        tried.push(Attempt {
            digest,
            bytes,
            stored,
        });
    }
    tried
}

/// The contract after faults: nothing is visible under a digest unless its bytes match, and
/// every acknowledged put reads back whole.
pub async fn nothing_wrong_is_visible(store: &dyn Store, tried: &[Attempt]) {
    let name = store.name();
    for a in tried {
        let head = store.head(Kind::Block, &a.digest).await.unwrap();
        let got = store.get_bytes(Kind::Block, &a.digest).await.unwrap();
        if a.stored {
            assert_eq!(
                head,
                Some(a.bytes.len() as u64),
                "{name}: acknowledged put lost"
            );
        }
        match got {
            Some(b) => assert!(
                b == a.bytes,
                "{name}: {} visible with wrong bytes",
                a.digest
            ),
            None => assert!(
                !a.stored && head.is_none(),
                "{name}: {} reported present ({head:?}) but not readable",
                a.digest
            ),
        }
    }
}

/// A body that fails after some bytes (a client hanging up, a source disk's `EIO`): the put
/// fails and nothing is visible. For `run_all`.
pub async fn failing_body_stores_nothing(store: &dyn Store) {
    let bytes = super::unique("failing-body", 200_000);
    let d = Digest::of(&bytes);
    let body = futures::stream::iter(vec![
        Ok(bytes.slice(..100_000)),
        Err(crate::StoreError::other(
            "test",
            std::io::Error::from_raw_os_error(5),
        )),
    ])
    .boxed();
    assert!(store.put(Kind::Block, &d, body).await.is_err());
    assert_eq!(
        store.head(Kind::Block, &d).await.unwrap(),
        None,
        "{}",
        store.name()
    );
    assert!(store.get(Kind::Block, &d).await.unwrap().is_none());
}

/// A tmpfs of a fixed size mounted on a fresh directory, unmounted on drop: a filesystem that
/// fills up for real (`ENOSPC`) under the disk store.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts `size` bytes of tmpfs (needs root). `None` when mounting is impossible here, so
    /// the caller skips, unless `PREWARM_REQUIRE_SERVICES=1`: then it panics instead.
    pub fn mount(size: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                skip(&format!("cannot mount a tmpfs (needs root): {why}"))
            }
        }
    }

    /// A directory inside the mount.
    pub fn sub(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The mount point.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Grows (or shrinks) the filesystem in place, as freeing space would.
    pub fn resize(&self, size: u64) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "remounting the tmpfs failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file still open elsewhere must not keep the mount (and the test dir) around.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// An ext4 filesystem on a loop device whose backing file lies on a much smaller tmpfs: `write`
/// succeeds into the page cache (ext4 sees plenty of room), and the failure shows only when the
/// data is written back, as an error from `fsync`, as with a failing disk. Torn down on drop.
pub struct FailingWriteback {
    device: String,
    mnt: tempfile::TempDir,
    _backing: Tmpfs,
}

impl FailingWriteback {
    /// `None` (after a log line) when loop devices or mkfs are not available here, unless
    /// `PREWARM_REQUIRE_SERVICES=1`: then it panics instead.
    pub fn mount(backing: u64, device: u64) -> Option<FailingWriteback> {
        let tmpfs = Tmpfs::mount(backing)?;
        let file = tmpfs.sub("backing");
        let mnt = tempfile::tempdir().unwrap();
        let run = |cmd: &mut Command| -> Result<String, String> {
            match cmd.output() {
                Ok(o) if o.status.success() => {
                    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
                }
                Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
                Err(e) => Err(e.to_string()),
            }
        };
        let made = std::fs::File::create(&file)
            .and_then(|f| f.set_len(device))
            .map_err(|e| e.to_string())
            .and_then(|()| run(Command::new("losetup").args(["-f", "--show"]).arg(&file)));
        let device = match made {
            Ok(d) => d,
            Err(why) => return skip(&format!("no loop device: {why}")),
        };
        let fs = run(Command::new("mkfs.ext4").args(["-q", "-O", "^has_journal", &device]))
            .and_then(|_| run(Command::new("mount").arg(&device).arg(mnt.path())));
        if let Err(why) = fs {
            let _ = Command::new("losetup").args(["-d", &device]).status();
            return skip(&format!("cannot make ext4 on {device}: {why}"));
        }
        Some(FailingWriteback {
            device,
            mnt,
            _backing: tmpfs,
        })
    }

    /// A directory inside the mount.
    pub fn sub(&self, name: &str) -> PathBuf {
        self.mnt.path().join(name)
    }

    /// Unmounts and mounts again, which drops the page cache: what reads see afterwards is
    /// what reached the device, as after a reboot.
    pub fn remount(&self) {
        for cmd in [
            Command::new("umount").arg(self.mnt.path()).status(),
            Command::new("mount")
                .arg(&self.device)
                .arg(self.mnt.path())
                .status(),
        ] {
            assert!(cmd.is_ok_and(|s| s.success()), "remounting {}", self.device);
        }
    }
}

impl Drop for FailingWriteback {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mnt.path()).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// The `None` of a fixture that cannot be built here, unless `PREWARM_REQUIRE_SERVICES=1`.
fn skip<T>(why: &str) -> Option<T> {
    assert!(
        std::env::var("PREWARM_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{why}, but PREWARM_REQUIRE_SERVICES=1"
    );
    tracing::warn!("skipping: {why}");
    None
}
