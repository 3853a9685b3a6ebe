//! Layer import as `prewarm push` does it (`pack::pack` of a runtime pack), with small limits:
//! never panics, writes nothing outside its own directory, and what it accepts is a valid
//! manifest whose every block re-reads to its digest.
//!
//! Input: a mode byte, a split byte, then archive bytes. Mode picks the layer's form: a plain
//! `.tar`; the bytes gzip- or zstd-compressed by the harness (so mutations reach the tar
//! reader through each decoder); or the bytes as a hostile `.tar.gz` / `.tar.zst` stream.
//! An odd split byte cuts the archive in two layers at `split * 512` bytes, so whiteouts and
//! writes through a lower layer's symlink are reachable.
#![no_main]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prewarm_client::pack::{pack, PackLimits};
use prewarm_shared::Manifest;

const LIMITS: PackLimits = PackLimits {
    max_total_bytes: 1 << 20,
    max_entries: 512,
};

/// The one directory this target may write in: `src/` per input, `tmp/` as `TMPDIR` (the
/// unpack stash). Set before the first input, while the process has one thread.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("prewarm-fuzz-layer-")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::create_dir(dir.join("tmp")).unwrap();
        std::env::set_var("TMPDIR", dir.join("tmp"));
        dir
    })
}

/// Every path under `dir` (not following links), sorted.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(e.path());
        }
    }
    out.sort();
    out
}

fn write_layer(dir: &Path, name: &str, mode: u8, bytes: &[u8]) {
    let (ext, body) = match mode % 5 {
        0 => ("tar", bytes.to_vec()),
        1 => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(bytes).unwrap();
            ("tar.gz", gz.finish().unwrap())
        }
        2 => ("tar.zst", zstd::bulk::compress(bytes, 1).unwrap()),
        3 => ("tar.gz", bytes.to_vec()),
        _ => ("tar.zst", bytes.to_vec()),
    };
    std::fs::write(dir.join("layers").join(format!("{name}.{ext}")), body).unwrap();
}

fuzz_target!(|data: &[u8]| {
    let [mode, split, archive @ ..] = data else {
        return;
    };
    let root = root();
    let src = tempfile::Builder::new()
        .prefix("src-")
        .tempdir_in(root)
        .unwrap();
    std::fs::create_dir(src.path().join("layers")).unwrap();
    let layers: Vec<&[u8]> = if split % 2 == 1 {
        let at = (usize::from(*split) * 512).min(archive.len());
        vec![&archive[..at], &archive[at..]]
    } else {
        vec![archive]
    };
    let names: Vec<String> = (0..layers.len()).map(|i| format!("l{i}")).collect();
    for (name, bytes) in names.iter().zip(&layers) {
        write_layer(src.path(), name, *mode, bytes);
    }
    let meta = serde_json::json!({"name": "fuzz", "version": "1", "layers": names});
    std::fs::write(src.path().join("meta.json"), meta.to_string()).unwrap();
    let before = listing(root);

    if let Ok(packed) = pack(src.path(), &LIMITS) {
        let m = &packed.manifest;
        assert_eq!(m.validate(), Ok(()));
        assert_eq!(Manifest::parse(&m.to_canonical_json()).as_ref(), Ok(m));
        assert!(m.bytes_total() <= LIMITS.max_total_bytes);
        for b in &packed.blocks {
            let bytes = packed
                .read_block(b)
                .expect("a planned block re-reads to its digest");
            assert_eq!(bytes.len() as u64, b.size);
        }
        // While packed, only the stash (under tmp/) is new.
        for p in listing(root) {
            assert!(
                before.contains(&p) || p.starts_with(root.join("tmp")),
                "pack wrote {} outside its stash",
                p.display()
            );
        }
    }
    // Whatever happened, the source is untouched and the stash is gone.
    assert_eq!(
        listing(root),
        before,
        "pack left files behind or changed its source"
    );
});
