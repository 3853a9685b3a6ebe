//! Images built inside the tests: OCI layouts, OCI archives and `docker save` archives.

mod debian;
mod formats;
mod hostile;

use std::io::Write;
use std::path::Path;

use prewarm_client::pack::PackLimits;
use prewarm_shared::{Digest, Entry, Manifest};
use serde_json::json;

use crate::{prepare, ImportError, ImportRequest, Platform, Prepared, Sidecar};

/// One tar record; names are written raw so hostile ones reach the importer unchanged.
pub(super) enum T<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

pub(super) fn tar_bytes(records: &[T<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for r in records {
        let (name, ty, data, link, mode): (&str, _, &[u8], &str, u32) = match r {
            T::Dir(n) => (n, tar::EntryType::Directory, b"", "", 0o755),
            T::File(n, d) => (n, tar::EntryType::Regular, d, "", 0o644),
            T::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", t, 0o777),
        };
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(ty);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

pub(super) fn gz(tar: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(tar).unwrap();
    e.finish().unwrap()
}

pub(super) fn zst(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 1).unwrap()
}

/// A layer: its stored bytes, its media type and the digest of its uncompressed tar.
#[derive(Clone)]
pub(super) struct Layer {
    pub(super) stored: Vec<u8>,
    pub(super) media_type: &'static str,
    pub(super) diff_id: Digest,
}

impl Layer {
    pub(super) fn tar(t: Vec<u8>) -> Self {
        Self::with(t, "application/vnd.oci.image.layer.v1.tar", |t| t.to_vec())
    }
    pub(super) fn gzip(t: Vec<u8>) -> Self {
        Self::with(t, "application/vnd.oci.image.layer.v1.tar+gzip", gz)
    }
    pub(super) fn zstd(t: Vec<u8>) -> Self {
        Self::with(t, "application/vnd.oci.image.layer.v1.tar+zstd", zst)
    }
    fn with(t: Vec<u8>, media_type: &'static str, enc: fn(&[u8]) -> Vec<u8>) -> Self {
        Layer {
            stored: enc(&t),
            media_type,
            diff_id: Digest::of(&t),
        }
    }
}

/// One image: layers and the `config` object of its config.
#[derive(Clone)]
pub(super) struct Image {
    pub(super) arch: &'static str,
    pub(super) layers: Vec<Layer>,
    pub(super) config: serde_json::Value,
}

impl Image {
    pub(super) fn new(layers: Vec<Layer>, config: serde_json::Value) -> Self {
        Image {
            arch: "amd64",
            layers,
            config,
        }
    }

    pub(super) fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "architecture": self.arch,
            "os": "linux",
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": self.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
        }))
        .unwrap()
    }
}

pub(super) fn put_blob(dir: &Path, bytes: &[u8]) -> (Digest, u64) {
    let d = Digest::of(bytes);
    std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    (d, bytes.len() as u64)
}

fn desc(mt: &str, (d, size): (Digest, u64)) -> serde_json::Value {
    json!({"mediaType": mt, "digest": d.to_string(), "size": size})
}

/// Writes one image's config, layers and manifest as blobs; returns the manifest descriptor.
pub(super) fn write_manifest(dir: &Path, img: &Image) -> serde_json::Value {
    let config = put_blob(dir, &img.config_bytes());
    let layers: Vec<_> = img
        .layers
        .iter()
        .map(|l| desc(l.media_type, put_blob(dir, &l.stored)))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": layers,
    });
    let mut d = desc(
        "application/vnd.oci.image.manifest.v1+json",
        put_blob(dir, &serde_json::to_vec(&manifest).unwrap()),
    );
    d["platform"] = json!({"os": "linux", "architecture": img.arch});
    d
}

/// An OCI layout whose `index.json` lists `manifests` (descriptors from [`write_manifest`]).
pub(super) fn layout_with(
    build: impl FnOnce(&Path) -> Vec<serde_json::Value>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let manifests = build(dir.path());
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    dir
}

pub(super) fn layout(img: &Image) -> tempfile::TempDir {
    layout_with(|d| vec![write_manifest(d, img)])
}

/// Tars a directory (an OCI layout) into an archive file.
pub(super) fn archive_of(dir: &Path) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut b = tar::Builder::new(f.reopen().unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
    f
}

/// A `docker save` archive as Docker before 25 wrote it: `<config hex>.json`,
/// `<id>/layer.tar` (uncompressed), `manifest.json`.
pub(super) fn docker_save(img: &Image, tag: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut b = tar::Builder::new(f.reopen().unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    let config = img.config_bytes();
    let config_name = format!("{}.json", Digest::of(&config).hex());
    add(&config_name, &config);
    let mut layers = Vec::new();
    for (i, l) in img.layers.iter().enumerate() {
        let name = format!("{:064x}/layer.tar", i + 1);
        add(&name, &l.stored);
        layers.push(name);
    }
    let manifest = json!([{"Config": config_name, "RepoTags": [tag], "Layers": layers}]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    b.finish().unwrap();
    f
}

pub(super) fn request(image: &Path, spec: Sidecar) -> ImportRequest {
    ImportRequest {
        image: image.to_path_buf(),
        name: "img".parse().unwrap(),
        tag: "v1".parse().unwrap(),
        platform: Platform {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
        },
        reference: None,
        spec,
        limits: PackLimits::default(),
    }
}

pub(super) fn prefix(p: &str) -> Sidecar {
    Sidecar {
        prefix: Some(p.into()),
        ..Sidecar::default()
    }
}

pub(super) fn ok(req: &ImportRequest) -> Prepared {
    prepare(req).unwrap_or_else(|e| panic!("import failed: {e}"))
}

pub(super) fn err(req: &ImportRequest) -> ImportError {
    match prepare(req) {
        Ok(p) => panic!("import should fail, got {:?}", listing(&p.packed.manifest)),
        Err(e) => e,
    }
}

/// `path`, `path/` or `path -> target` per entry.
pub(super) fn listing(m: &Manifest) -> Vec<String> {
    m.entries
        .iter()
        .map(|e| match e {
            Entry::Dir { path, .. } => format!("{path}/"),
            Entry::Symlink { path, target } => format!("{path} -> {target}"),
            Entry::File { path, .. } => path.to_string(),
        })
        .collect()
}
