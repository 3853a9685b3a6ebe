//! Test helpers for packing: hand-written tar layers (hostile ones included) and pack dirs.

mod chunking;
mod hostile;
mod layers;

use std::io::Write;
use std::path::Path;

use prewarm_shared::{Entry, Manifest};
use tar::{EntryType, Header};

use super::{pack, PackError, PackLimits, Packed};

/// One tar record, names written raw so the tar crate's own checks never hide ours.
pub(super) enum T<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Link(&'a str, &'a str),
    Raw {
        name: &'a [u8],
        ty: EntryType,
        data: &'a [u8],
        link: &'a [u8],
        size: Option<u64>,
    },
}

pub(super) fn tar_bytes(records: &[T<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for r in records {
        let (name, ty, data, link, mode, size): (&[u8], _, &[u8], &[u8], u32, Option<u64>) = match r
        {
            T::Dir(n, m) => (n.as_bytes(), EntryType::Directory, b"", b"", *m, None),
            T::File(n, d, m) => (n.as_bytes(), EntryType::Regular, d, b"", *m, None),
            T::Symlink(n, t) => (
                n.as_bytes(),
                EntryType::Symlink,
                b"",
                t.as_bytes(),
                0o777,
                None,
            ),
            T::Link(n, t) => (
                n.as_bytes(),
                EntryType::Link,
                b"",
                t.as_bytes(),
                0o644,
                None,
            ),
            T::Raw {
                name,
                ty,
                data,
                link,
                size,
            } => (name, *ty, data, link, 0o644, *size),
        };
        if name.len() > 100 {
            // Long legitimate names go through the builder (GNU long-name records).
            let mut h = Header::new_gnu();
            h.set_entry_type(ty);
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            b.append_data(&mut h, std::str::from_utf8(name).unwrap(), data)
                .unwrap();
            continue;
        }
        let mut h = Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(ty);
        h.set_size(size.unwrap_or(data.len() as u64));
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        if size.is_some() {
            // A header that lies about its size: write the header alone.
            b.get_mut().extend_from_slice(h.as_bytes());
        } else {
            b.append(&h, data).unwrap();
        }
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

/// Writes a runtime pack: `layers` as (name, file extension, archive bytes), in order.
pub(super) fn runtime(layers: &[(&str, &str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("layers")).unwrap();
    for (name, ext, bytes) in layers {
        std::fs::write(dir.path().join(format!("layers/{name}.{ext}")), bytes).unwrap();
    }
    let names: Vec<String> = layers.iter().map(|(n, _, _)| format!("{n:?}")).collect();
    std::fs::write(
        dir.path().join("meta.json"),
        format!(
            r#"{{"name":"t","version":"1","layers":[{}],"prefix":"/opt/t"}}"#,
            names.join(",")
        ),
    )
    .unwrap();
    dir
}

/// A runtime of plain `.tar` layers.
pub(super) fn runtime_tars(layers: &[(&str, &[T<'_>])]) -> tempfile::TempDir {
    let l: Vec<(&str, &str, Vec<u8>)> = layers
        .iter()
        .map(|(n, r)| (*n, "tar", tar_bytes(r)))
        .collect();
    runtime(&l)
}

pub(super) fn pack_ok(src: &Path) -> Packed {
    pack(src, &PackLimits::default()).unwrap_or_else(|e| panic!("pack failed: {e}"))
}

pub(super) fn pack_err(src: &Path) -> PackError {
    match pack(src, &PackLimits::default()) {
        Ok(p) => panic!("pack should fail, got {} entries", p.manifest.entries.len()),
        Err(e) => e,
    }
}

/// `path → short description` of the tree, for readable assertions.
pub(super) fn listing(m: &Manifest) -> Vec<String> {
    m.entries
        .iter()
        .map(|e| match e {
            Entry::Dir { path, mode } => format!("{path}/ {mode:o}"),
            Entry::Symlink { path, target } => format!("{path} -> {target}"),
            Entry::File { path, mode, .. } => format!("{path} {mode:o}"),
        })
        .collect()
}

/// The bytes of file `path`, rebuilt only from `read_block`, as a puller would.
pub(super) fn file_bytes(p: &Packed, path: &str) -> Vec<u8> {
    let (_, _, digest, chunks) = p
        .manifest
        .files()
        .find(|(q, ..)| q.as_str() == path)
        .unwrap_or_else(|| panic!("{path} not in manifest"));
    let mut out = Vec::new();
    for c in chunks {
        let block = p
            .blocks
            .iter()
            .find(|b| b.digest == c.block)
            .expect("every chunk's block is planned");
        let bytes = p.read_block(block).unwrap();
        out.extend_from_slice(&bytes[c.offset as usize..(c.offset + c.size) as usize]);
    }
    assert_eq!(prewarm_shared::Digest::of(&out), *digest, "{path}");
    out
}
