//! Planning a sandbox workspace's changed files into blocks: the runtime planner with smaller content-defined chunks.
//!
//! Workspaces hold databases, logs and datasets that change in place. With the runtime
//! parameters (CDC chunks of 1 MiB average, up to 4 MiB) a 64 KiB edit moves megabytes; here
//! files over 64 KiB are cut into chunks of 64 KiB on average (16 KiB to 256 KiB), so an edit
//! anywhere costs a few hundred KiB of new blocks at most. Small files are bundled as for
//! runtimes. The price, in requests and manifest size, is in docs/CHUNKING.md.

use std::path::Path;
use std::sync::Arc;

use prewarm_shared::{Entry, RelPath};

use super::chunk::{ChunkParams, Chunker};
use super::{PackError, PlannedBlock};

/// The workspace parameters (see the module docs).
fn workspace_params() -> ChunkParams {
    ChunkParams {
        small_max: 64 << 10,
        bundle_avg: 128 << 10,
        bundle_max: 512 << 10,
        cdc_above: 64 << 10,
        cdc_min: 16 << 10,
        cdc_avg: 64 << 10,
        cdc_max: 256 << 10,
    }
}

/// Plans the blocks of files fed in any order (a snapshot sorts its manifest afterwards).
pub struct WorkspacePlanner(Chunker);

impl Default for WorkspacePlanner {
    fn default() -> Self {
        Self(Chunker::new(workspace_params()))
    }
}

impl WorkspacePlanner {
    /// Reads and plans `file` (`size` bytes) as `path` with permission bits `mode`.
    ///
    /// # Errors
    /// [`PackError::Io`] if the file cannot be read, [`PackError::Changed`]-like
    /// [`PackError::Invalid`] if it is shorter than `size`.
    pub fn add_file(
        &mut self,
        path: RelPath,
        mode: u32,
        size: u64,
        file: &Path,
    ) -> Result<(), PackError> {
        self.0
            .add_file(path, mode & 0o777, size, Arc::from(file), None)
    }

    /// The planned files' entries and every distinct new block, each readable with
    /// [`PlannedBlock::read`] while the files are unchanged.
    ///
    /// # Errors
    /// [`PackError::Invalid`] on an internal planning error.
    pub fn finish(self) -> Result<(Vec<Entry>, Vec<PlannedBlock>), PackError> {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64 KiB overwrite in the middle of an 8 MiB file changes at most 1 MiB of blocks
    /// (the bound; in practice two to four chunks).
    #[test]
    fn a_small_edit_in_a_big_file_changes_few_bytes_of_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data.bin");
        let mut bytes: Vec<u8> = (0..8u64 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&f, &bytes).unwrap();
        let plan = |bytes: &[u8]| {
            std::fs::write(&f, bytes).unwrap();
            let mut p = WorkspacePlanner::default();
            p.add_file("data.bin".parse().unwrap(), 0o644, bytes.len() as u64, &f)
                .unwrap();
            p.finish().unwrap().1
        };
        let before = plan(&bytes);
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + (64 << 10)] {
            *b ^= 0x5a;
        }
        let after = plan(&bytes);
        let old: std::collections::HashSet<_> = before.iter().map(|b| b.digest).collect();
        let new_bytes: u64 = after
            .iter()
            .filter(|b| !old.contains(&b.digest))
            .map(|b| b.size)
            .sum();
        assert!(
            new_bytes > 0 && new_bytes <= 1 << 20,
            "{new_bytes} new bytes"
        );
        assert!(before.iter().all(|b| b.size <= 256 << 10));
        for b in &after {
            assert_eq!(prewarm_shared::Digest::of(&b.read().unwrap()), b.digest);
        }
    }
}
