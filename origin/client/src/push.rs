//! `prewarm push`: pack a source, upload only the blocks the destination lacks, then the manifest, then the tag.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use prewarm_shared::{Digest, RuntimeName, Tag};
use serde::Serialize;

use crate::pack::{self, PackError, PackLimits, Packed};
use crate::transfer::{Sink, TransferError};

/// What a push did; `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub digest: Digest,
    pub files: u64,
    pub bytes_total: u64,
    pub blocks_total: u64,
    pub blocks_uploaded: u64,
    pub bytes_uploaded: u64,
    pub pack_key: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error("packing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Options beyond source and destination.
#[derive(Debug, Clone, Copy)]
pub struct PushOptions {
    pub limits: PackLimits,
    /// Blocks uploaded at once.
    pub concurrency: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            limits: PackLimits::default(),
            concurrency: 8,
        }
    }
}

/// Packs `src` and publishes it as `name:tag` on `sink`. Nothing reaches the sink unless the
/// whole source packed cleanly, and the tag moves only after the manifest is stored.
pub async fn push(
    src: &Path,
    name: &RuntimeName,
    tag: &Tag,
    sink: &dyn Sink,
    opts: PushOptions,
) -> Result<PushReport, PushError> {
    let started = Instant::now();
    let src = src.to_path_buf();
    let limits = opts.limits;
    let packed = tokio::task::spawn_blocking(move || pack::pack(&src, &limits)).await??;
    push_packed(packed, name, tag, sink, opts, started).await
}

/// Publishes an already packed runtime (an imported image, say) as `name:tag`: uploads the
/// blocks `sink` lacks, then the manifest, then the tag. `started` is when the work began,
/// for the report's duration.
pub async fn push_packed(
    packed: Packed,
    name: &RuntimeName,
    tag: &Tag,
    sink: &dyn Sink,
    opts: PushOptions,
    started: Instant,
) -> Result<PushReport, PushError> {
    let packed = Arc::new(packed);
    let all: Vec<Digest> = packed.blocks.iter().map(|b| b.digest).collect();
    let missing: std::collections::HashSet<Digest> =
        sink.missing_blocks(&all).await?.into_iter().collect();
    let to_upload: Vec<usize> = (0..packed.blocks.len())
        .filter(|&i| missing.contains(&packed.blocks[i].digest))
        .collect();
    let bytes_uploaded: u64 = to_upload.iter().map(|&i| packed.blocks[i].size).sum();
    tracing::info!(
        blocks = all.len(),
        missing = to_upload.len(),
        bytes = bytes_uploaded,
        "uploading missing blocks"
    );

    futures::stream::iter(to_upload.iter().copied())
        .map(|i| {
            let packed = packed.clone();
            async move {
                let digest = packed.blocks[i].digest;
                let bytes =
                    tokio::task::spawn_blocking(move || packed.read_block(&packed.blocks[i]))
                        .await??;
                sink.put_block(&digest, bytes).await?;
                Ok::<_, PushError>(())
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .try_collect::<()>()
        .await?;

    let manifest = &packed.manifest;
    let bytes = manifest.to_canonical_json();
    let digest = Digest::of(&bytes);
    sink.put_manifest(&digest, bytes.into()).await?;
    sink.set_tag(name, tag, &digest).await?;
    Ok(PushReport {
        digest,
        files: manifest.files().count() as u64,
        bytes_total: manifest.bytes_total(),
        blocks_total: all.len() as u64,
        blocks_uploaded: to_upload.len() as u64,
        bytes_uploaded,
        pack_key: manifest.pack_key.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
