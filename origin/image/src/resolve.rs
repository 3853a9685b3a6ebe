//! From an image's documents to its layers: which manifest (`--ref`, `--platform`), every digest checked.
//!
//! OCI layouts and archives: `index.json` → (nested indexes) → manifest → config + layers,
//! each blob at `blobs/sha256/<hex>` verified against its descriptor's digest and size before
//! it is parsed. `docker save`: `manifest.json` → config (named by its digest) + layers, each
//! layer's uncompressed tar checked against the config's `rootfs.diff_ids`. Layer bytes are
//! verified while they are applied (`prewarm_client::pack::pack_layers`).

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use prewarm_client::pack::{Compression, LayerInput};
use prewarm_shared::Digest;
use serde::{Deserialize, Serialize};

use crate::blobs::Blobs;
use crate::error::ImportError;
use crate::platform::Platform;

/// Deepest chain of indexes followed (docker's `index.json` → image index → manifests is 2).
const MAX_INDEX_DEPTH: usize = 4;
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Which kind of image it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    OciLayout,
    OciArchive,
    DockerArchive,
}

/// The image's config, its layers and where they came from.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) format: Format,
    pub(crate) reference: Option<String>,
    /// The OCI manifest's digest (`None` for a `docker save` archive, which has no manifest blob).
    pub(crate) manifest: Option<Digest>,
    pub(crate) config_digest: Digest,
    pub(crate) config: ImageConfiguration,
    /// The same config as JSON, for the fields the OCI types leave out (Healthcheck, Shell…).
    pub(crate) config_json: serde_json::Value,
    pub(crate) layers: Vec<LayerInput>,
}

pub(crate) fn resolve(
    blobs: &Blobs,
    platform: &Platform,
    reference: Option<&str>,
) -> Result<Resolved, ImportError> {
    let is_dir = matches!(blobs, Blobs::Dir(_));
    if blobs.has("oci-layout") && blobs.has("index.json") {
        let layout: serde_json::Value = json(&blobs.read_doc("oci-layout")?, "oci-layout")?;
        let v = layout.get("imageLayoutVersion").and_then(|v| v.as_str());
        if v != Some("1.0.0") {
            return Err(ImportError::bad(format!(
                "oci-layout: imageLayoutVersion {v:?} is not 1.0.0"
            )));
        }
        let format = if is_dir {
            Format::OciLayout
        } else {
            Format::OciArchive
        };
        return oci(blobs, format, platform, reference);
    }
    if blobs.has("manifest.json") {
        return docker(blobs, platform, reference);
    }
    Err(ImportError::bad(
        "not an image: neither an OCI layout (oci-layout + index.json) nor a `docker save` \
         archive (manifest.json)",
    ))
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ImportError> {
    serde_json::from_slice(bytes).map_err(|e| ImportError::bad(format!("{what}: {e}")))
}

/// An OCI descriptor's digest as ours (sha256 only).
fn digest_of(d: &Descriptor) -> Result<Digest, ImportError> {
    let text = d.digest().to_string();
    text.parse::<Digest>().map_err(|_| {
        ImportError::bad(format!(
            "digest {text:?}: only sha256 digests are supported"
        ))
    })
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Reads the document a descriptor points at, checking its size and digest first.
fn read_verified(
    blobs: &Blobs,
    d: &Descriptor,
    what: &'static str,
) -> Result<Vec<u8>, ImportError> {
    let digest = digest_of(d)?;
    let bytes = blobs.read_doc(&blob_name(&digest))?;
    check(what, &digest, d.size(), &bytes)?;
    Ok(bytes)
}

fn check(what: &'static str, want: &Digest, size: u64, bytes: &[u8]) -> Result<(), ImportError> {
    let err = |message: String| ImportError::Digest {
        what,
        name: want.to_string(),
        message,
    };
    if bytes.len() as u64 != size {
        return Err(err(format!(
            "is {} bytes, its descriptor says {size}",
            bytes.len()
        )));
    }
    let got = Digest::of(bytes);
    if got != *want {
        return Err(err(format!("the bytes hash to {got}")));
    }
    Ok(())
}

/// A manifest an index leads to, with the image name it was filed under.
struct Leaf {
    desc: Descriptor,
    reference: Option<String>,
}

fn ref_of(d: &Descriptor) -> Option<String> {
    let a = d.annotations().as_ref()?;
    a.get("io.containerd.image.name")
        .or_else(|| a.get("org.opencontainers.image.ref.name"))
        .cloned()
}

fn collect(
    blobs: &Blobs,
    index: &ImageIndex,
    inherited: Option<String>,
    depth: usize,
    out: &mut Vec<Leaf>,
) -> Result<(), ImportError> {
    for d in index.manifests() {
        let reference = ref_of(d).or_else(|| inherited.clone());
        let mt = d.media_type().to_string();
        if *d.media_type() == MediaType::ImageIndex || mt == DOCKER_LIST {
            if depth >= MAX_INDEX_DEPTH {
                return Err(ImportError::bad(format!(
                    "indexes nest deeper than {MAX_INDEX_DEPTH} levels"
                )));
            }
            let nested: ImageIndex = json(&read_verified(blobs, d, "index")?, "image index")?;
            collect(blobs, &nested, reference, depth + 1, out)?;
        } else if *d.media_type() == MediaType::ImageManifest || mt == DOCKER_MANIFEST {
            let attestation = d
                .annotations()
                .as_ref()
                .and_then(|a| a.get("vnd.docker.reference.type"))
                .is_some_and(|t| t == "attestation-manifest");
            let unknown = d
                .platform()
                .as_ref()
                .is_some_and(|p| p.os().to_string() == "unknown");
            if !attestation && !unknown {
                out.push(Leaf {
                    desc: d.clone(),
                    reference,
                });
            }
        }
    }
    Ok(())
}

fn ref_matches(have: Option<&str>, want: &str) -> bool {
    have.is_some_and(|h| {
        h == want || h.ends_with(&format!("/{want}")) || h.ends_with(&format!(":{want}"))
    })
}

fn leaf_platform(l: &Leaf) -> String {
    match l.desc.platform() {
        Some(p) => {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        }
        None => "(no platform)".into(),
    }
}

fn oci(
    blobs: &Blobs,
    format: Format,
    platform: &Platform,
    reference: Option<&str>,
) -> Result<Resolved, ImportError> {
    let index: ImageIndex = json(&blobs.read_doc("index.json")?, "index.json")?;
    let mut leaves = Vec::new();
    collect(blobs, &index, None, 0, &mut leaves)?;
    let listing = |ls: &[&Leaf]| {
        ls.iter()
            .map(|l| {
                format!(
                    "{} {}",
                    l.reference.as_deref().unwrap_or("(unnamed)"),
                    leaf_platform(l)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all: Vec<&Leaf> = leaves.iter().collect();
    if all.is_empty() {
        return Err(ImportError::Selection(
            "index.json lists no image manifest".into(),
        ));
    }
    let named: Vec<&Leaf> = match reference {
        Some(r) => all
            .iter()
            .copied()
            .filter(|l| ref_matches(l.reference.as_deref(), r))
            .collect(),
        None => all.clone(),
    };
    if named.is_empty() {
        return Err(ImportError::Selection(format!(
            "no image named {:?}; the index has: {}",
            reference.unwrap_or_default(),
            listing(&all)
        )));
    }
    let fits: Vec<&Leaf> = named
        .iter()
        .copied()
        .filter(|l| match l.desc.platform() {
            Some(p) => platform.matches(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            ),
            None => true,
        })
        .collect();
    let leaf = match fits.as_slice() {
        [one] => *one,
        [] => {
            return Err(ImportError::Selection(format!(
                "no manifest for platform {platform}; the index has: {} (choose with --platform)",
                listing(&named)
            )))
        }
        many => {
            let hint = if reference.is_none() {
                "choose with --ref NAME (or --platform OS/ARCH/VARIANT)"
            } else {
                "choose with --platform OS/ARCH/VARIANT"
            };
            return Err(ImportError::Selection(format!(
                "{} manifests match platform {platform}: {}; {hint}",
                many.len(),
                listing(many)
            )));
        }
    };
    let manifest_digest = digest_of(&leaf.desc)?;
    let manifest: ImageManifest = json(
        &read_verified(blobs, &leaf.desc, "manifest")?,
        "image manifest",
    )?;
    let config_desc = manifest.config();
    let config_bytes = read_verified(blobs, config_desc, "config")?;
    let config_digest = digest_of(config_desc)?;
    let (config, config_json) = parse_config(&config_bytes, platform)?;
    let diff_ids = diff_ids(&config, manifest.layers().len())?;
    let mut layers = Vec::new();
    for (i, (d, diff)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let digest = digest_of(d)?;
        let name = format!("#{} {}", i + 1, short(&digest));
        let declared = layer_compression(d.media_type().as_ref()).ok_or_else(|| {
            ImportError::bad(format!(
                "layer {name}: media type {} is not a filesystem layer",
                d.media_type()
            ))
        })?;
        let section = blobs.section(&blob_name(&digest))?;
        if section.len != d.size() {
            return Err(ImportError::Digest {
                what: "layer",
                name: digest.to_string(),
                message: format!("is {} bytes, its descriptor says {}", section.len, d.size()),
            });
        }
        let found = section.compression()?;
        if declared.is_some_and(|c| c != found) {
            return Err(ImportError::bad(format!(
                "layer {name}: media type {} does not match its bytes ({found:?})",
                d.media_type()
            )));
        }
        layers.push(LayerInput {
            name,
            path: section.path,
            offset: section.offset,
            len: section.len,
            compression: found,
            digest: Some(digest),
            tar_digest: Some(diff),
        });
    }
    Ok(Resolved {
        format,
        reference: leaf.reference.clone(),
        manifest: Some(manifest_digest),
        config_digest,
        config,
        config_json,
        layers,
    })
}

/// The compression a layer media type declares: `Some(None)`-like for "a layer, say nothing
/// of its compression" is `Some(None)`; `None` is "not a layer".
fn layer_compression(mt: &str) -> Option<Option<Compression>> {
    let layer = mt.starts_with("application/vnd.oci.image.layer.")
        || mt.starts_with("application/vnd.docker.image.rootfs.");
    if !layer {
        return None;
    }
    Some(if mt.ends_with("+gzip") || mt.ends_with(".gzip") {
        Some(Compression::Gzip)
    } else if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
        Some(Compression::Zstd)
    } else if mt.ends_with(".tar") {
        Some(Compression::None)
    } else {
        None
    })
}

fn short(d: &Digest) -> String {
    format!("sha256:{}", &d.hex()[..12])
}

/// Parses the config and checks it is for `platform`.
fn parse_config(
    bytes: &[u8],
    platform: &Platform,
) -> Result<(ImageConfiguration, serde_json::Value), ImportError> {
    let config: ImageConfiguration = json(bytes, "image config")?;
    let value: serde_json::Value = json(bytes, "image config")?;
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    if !platform.matches(&os, &arch, config.variant().as_deref()) {
        let mut is = format!("{os}/{arch}");
        if let Some(v) = config.variant() {
            is.push('/');
            is.push_str(v);
        }
        return Err(ImportError::Selection(format!(
            "the image is for {is}, not {platform} (pass --platform {is} to import it anyway)"
        )));
    }
    Ok((config, value))
}

fn diff_ids(config: &ImageConfiguration, layers: usize) -> Result<Vec<Digest>, ImportError> {
    let ids = config.rootfs().diff_ids();
    if ids.len() != layers {
        return Err(ImportError::bad(format!(
            "the config lists {} diff_ids for {layers} layers",
            ids.len()
        )));
    }
    ids.iter()
        .map(|s| {
            s.parse::<Digest>().map_err(|_| {
                ImportError::bad(format!(
                    "config diff_id {s:?}: only sha256 digests are supported"
                ))
            })
        })
        .collect()
}

/// One image of a `docker save` archive's `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// `…/<64 hex>` or `…/<64 hex>.json` names its own digest.
fn digest_in_name(name: &str) -> Option<Digest> {
    let last = name.rsplit('/').next()?;
    let hex = last.strip_suffix(".json").unwrap_or(last);
    format!("sha256:{hex}").parse().ok()
}

fn docker(
    blobs: &Blobs,
    platform: &Platform,
    reference: Option<&str>,
) -> Result<Resolved, ImportError> {
    let entries: Vec<DockerEntry> = json(&blobs.read_doc("manifest.json")?, "manifest.json")?;
    let tags = |e: &DockerEntry| e.repo_tags.clone().unwrap_or_default();
    let chosen: Vec<&DockerEntry> = entries
        .iter()
        .filter(|e| match reference {
            Some(r) => tags(e).iter().any(|t| ref_matches(Some(t), r)),
            None => true,
        })
        .collect();
    let listing = entries
        .iter()
        .map(|e| tags(e).join(" ").to_string())
        .map(|t| if t.is_empty() { "(untagged)".into() } else { t })
        .collect::<Vec<_>>()
        .join(", ");
    let entry = match chosen.as_slice() {
        [one] => *one,
        [] => {
            return Err(ImportError::Selection(format!(
                "no image named {:?} in manifest.json; it has: {listing}",
                reference.unwrap_or_default()
            )))
        }
        _ => {
            return Err(ImportError::Selection(format!(
                "manifest.json holds several images ({listing}); choose with --ref NAME:TAG"
            )))
        }
    };
    let config_digest = digest_in_name(&entry.config).ok_or_else(|| {
        ImportError::bad(format!(
            "config {:?} is not named by its digest, so it cannot be verified",
            entry.config
        ))
    })?;
    let config_bytes = blobs.read_doc(&entry.config)?;
    let got = Digest::of(&config_bytes);
    if got != config_digest {
        return Err(ImportError::Digest {
            what: "config",
            name: entry.config.clone(),
            message: format!("the bytes hash to {got}, not {config_digest}"),
        });
    }
    let (config, config_json) = parse_config(&config_bytes, platform)?;
    let diffs = diff_ids(&config, entry.layers.len())?;
    let mut layers = Vec::new();
    for (i, (path, diff)) in entry.layers.iter().zip(diffs).enumerate() {
        let section = blobs.section(path)?;
        let compression = section.compression()?;
        // A blob named by its digest is checked against it; an uncompressed layer is its own tar.
        let digest = digest_in_name(path)
            .filter(|_| path.starts_with("blobs/"))
            .or((compression == Compression::None).then_some(diff));
        layers.push(LayerInput {
            name: format!("#{} {path}", i + 1),
            path: section.path,
            offset: section.offset,
            len: section.len,
            compression,
            digest,
            tar_digest: Some(diff),
        });
    }
    Ok(Resolved {
        format: Format::DockerArchive,
        reference: entry.repo_tags.as_ref().and_then(|t| t.first().cloned()),
        manifest: None,
        config_digest,
        config,
        config_json,
        layers,
    })
}
