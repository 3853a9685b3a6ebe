//! The unpack stash: layer file contents in a private temp dir, one file per digest.
//!
//! Archive names never become paths here: a stashed file is named by the hex of its own
//! content digest, computed while it is copied in, so identical contents are stored once.

use std::io::{Read, Write};
use std::path::PathBuf;

use prewarm_shared::{Digest, Hasher};

use super::PackError;

/// Copy buffer size: big enough to amortise syscalls, small enough to keep memory flat.
const BUF: usize = 256 << 10;

#[derive(Debug)]
pub(crate) struct Stash {
    dir: tempfile::TempDir,
}

impl Stash {
    /// A fresh stash under the system temp dir (`TMPDIR`), removed on drop.
    pub(crate) fn new() -> Result<Self, PackError> {
        let dir = tempfile::Builder::new()
            .prefix("prewarm-pack-")
            .tempdir()
            .map_err(PackError::io("creating the unpack stash"))?;
        Ok(Self { dir })
    }

    pub(crate) fn path(&self, d: &Digest) -> PathBuf {
        self.dir.path().join(d.hex())
    }

    /// Copies `r` to its end into the stash, returning its digest and length. The caller
    /// bounds `r` (a tar entry is exactly its header's size, checked against the limits first).
    pub(crate) fn put(&self, r: &mut dyn Read) -> Result<(Digest, u64), PackError> {
        let ctx = || format!("writing to the unpack stash {}", self.dir.path().display());
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.path())
            .map_err(|e| PackError::io(ctx())(e))?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; BUF];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(PackError::io("reading the layer")(e)),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(|e| PackError::io(ctx())(e))?;
        }
        let len = hasher.len();
        let digest = hasher.finish();
        let dst = self.path(&digest);
        if !dst.exists() {
            tmp.persist(&dst)
                .map_err(|e| PackError::io(ctx())(e.error))?;
        }
        Ok((digest, len))
    }
}
