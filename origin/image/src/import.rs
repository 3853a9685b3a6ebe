//! `prewarm import`: image → verified layers → the client's pack → the client's push.

use std::path::PathBuf;
use std::time::Instant;

use prewarm_client::pack::{pack_layers, LayeredSource, Outside, PackLimits, Packed};
use prewarm_client::push::{push_packed, PushOptions, PushReport};
use prewarm_client::transfer::Sink;
use prewarm_shared::{Digest, RuntimeName, Tag};
use serde::Serialize;

use crate::blobs::Blobs;
use crate::error::ImportError;
use crate::platform::Platform;
use crate::resolve::{resolve, Format};
use crate::runtime::map;
use crate::spec::Sidecar;

/// What to import and how to shape the runtime.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub image: PathBuf,
    pub name: RuntimeName,
    pub tag: Tag,
    /// Which manifest of a multi-platform index (default: this machine's).
    pub platform: Platform,
    /// Which image of an archive holding several (`--ref`).
    pub reference: Option<String>,
    /// The sidecar with the flags laid over it.
    pub spec: Sidecar,
    pub limits: PackLimits,
}

/// Where the runtime came from.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub format: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Digest>,
    pub config: Digest,
    pub platform: String,
    pub layers: usize,
}

/// A packed image, ready to push, with what the import could not carry over.
#[derive(Debug)]
pub struct Prepared {
    pub packed: Packed,
    pub image: ImageInfo,
    /// The image directory taken as the runtime (`/`: all of it), and where sandboxes see it.
    pub root: String,
    pub prefix: String,
    /// What of the image lay outside `root`.
    pub outside_root: Outside,
    /// Config fields with no place in a runtime, each with why.
    pub unmapped: Vec<String>,
}

/// `--json` output: the push report, then the import's own findings.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    #[serde(flatten)]
    pub push: PushReport,
    pub image: ImageInfo,
    pub root: String,
    pub prefix: String,
    pub outside_root: Outside,
    pub unmapped: Vec<String>,
}

/// Reads, verifies and packs the image. Blocking (file I/O, hashing): call from
/// `spawn_blocking`. Nothing is written but the pack's private temp stash.
///
/// # Errors
/// [`ImportError`], naming the document, blob, layer or entry at fault.
pub fn prepare(req: &ImportRequest) -> Result<Prepared, ImportError> {
    let blobs = Blobs::open(&req.image, req.limits.max_total_bytes)?;
    let image = resolve(&blobs, &req.platform, req.reference.as_deref())?;
    let mapped = map(&image, req.name.as_str(), req.tag.as_str(), &req.spec)?;
    let info = ImageInfo {
        format: image.format,
        reference: image.reference.clone(),
        manifest: image.manifest,
        config: image.config_digest,
        platform: format!("{}/{}", image.config.os(), image.config.architecture()),
        layers: image.layers.len(),
    };
    let root = match &mapped.root {
        Some(r) => format!("/{}", r.as_str()),
        None => "/".into(),
    };
    let prefix = mapped.meta.prefix.clone();
    let pack = pack_layers(
        LayeredSource {
            meta: mapped.meta,
            lock: mapped.lock,
            layers: image.layers,
            root: mapped.root,
        },
        &req.limits,
    )?;
    drop(blobs);
    Ok(Prepared {
        packed: pack.packed,
        image: info,
        root,
        prefix,
        outside_root: pack.outside_root,
        unmapped: mapped.unmapped,
    })
}

/// Imports `req.image` and publishes it as `req.name:req.tag` on `sink`: only blocks the
/// sink lacks are uploaded, so layers shared with runtimes already there cost nothing.
///
/// # Errors
/// [`ImportError`]; nothing reaches the sink unless the whole image verified and packed.
pub async fn import(
    req: ImportRequest,
    sink: &dyn Sink,
    opts: PushOptions,
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let (name, tag) = (req.name.clone(), req.tag.clone());
    let prepared = tokio::task::spawn_blocking(move || prepare(&req)).await??;
    let push = push_packed(prepared.packed, &name, &tag, sink, opts, started).await?;
    Ok(ImportReport {
        push,
        image: prepared.image,
        root: prepared.root,
        prefix: prepared.prefix,
        outside_root: prepared.outside_root,
        unmapped: prepared.unmapped,
    })
}
