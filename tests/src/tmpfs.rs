//! A small tmpfs mounted for one test: a filesystem that really fills up (`ENOSPC`), and can be grown in place.

use std::path::Path;
use std::process::Command;

/// A tmpfs on a fresh directory, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts `size` bytes of tmpfs (needs root). `None` when mounting is impossible here, so
    /// the test skips, unless `PREWARM_REQUIRE_SERVICES=1`: then it panics instead.
    pub fn mount(size: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
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
                assert!(
                    std::env::var("PREWARM_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "cannot mount a tmpfs ({why}) but PREWARM_REQUIRE_SERVICES=1"
                );
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
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
        // Lazy: a server still holding a file open must not keep the mount around.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
