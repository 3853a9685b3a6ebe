//! Chunking and plain-directory sources: exact reconstruction, dedup, determinism, stability.

use std::collections::HashSet;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use prewarm_shared::wire::MAX_BLOCK_SIZE;
use prewarm_shared::Digest;

use super::super::{pack_with, ChunkParams, PackError, PackLimits, Packed};
use super::{file_bytes, listing, pack_err, pack_ok, runtime, tar_bytes, zst, T};

/// Deterministic incompressible-looking bytes (xorshift), so CDC finds real boundaries.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sizes around every threshold: empty, bundled, one block, CDC, and above a block's maximum.
fn sizes() -> Vec<(String, Vec<u8>)> {
    [
        0usize,
        1,
        100,
        64 << 10,
        (64 << 10) + 1,
        500 << 10,
        3 << 20,
        10 << 20,
    ]
    .iter()
    .enumerate()
    .map(|(i, &n)| (format!("d{}/f{n}", i % 3), noise(i as u64 + 1, n)))
    .collect()
}

fn assert_plan_is_sound(p: &Packed) {
    let planned: Vec<Digest> = p.blocks.iter().map(|b| b.digest).collect();
    let distinct: HashSet<Digest> = planned.iter().copied().collect();
    assert_eq!(distinct.len(), planned.len(), "blocks are distinct");
    assert_eq!(
        distinct,
        p.manifest.blocks().into_iter().collect(),
        "plan = manifest blocks"
    );
    assert!(p
        .blocks
        .iter()
        .all(|b| b.size <= MAX_BLOCK_SIZE && b.size > 0));
}

#[test]
fn plain_directory_files_rebuild_exactly_from_blocks() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in sizes() {
        let path = dir.path().join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
    }
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    std::fs::set_permissions(
        dir.path().join("empty"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    symlink("../d0/f0", dir.path().join("d1/link")).unwrap();
    let p = pack_ok(dir.path());
    assert_eq!(p.manifest.pack_key, None);
    assert!(listing(&p.manifest).contains(&"empty/ 700".to_string()));
    assert!(listing(&p.manifest).contains(&"d1/link -> ../d0/f0".to_string()));
    for (name, bytes) in sizes() {
        assert_eq!(file_bytes(&p, &name), bytes, "{name}");
    }
    let empty_chunks = p
        .manifest
        .files()
        .find(|f| f.0.as_str() == "d0/f0")
        .unwrap()
        .3;
    assert!(empty_chunks.is_empty());
    assert_plan_is_sound(&p);
    // The 10 MiB file is cut into several blocks, none over the maximum.
    let big = p
        .manifest
        .files()
        .find(|f| f.0.as_str() == "d1/f10485760")
        .unwrap()
        .3;
    assert!(big.len() >= 3, "{} chunks", big.len());
}

#[test]
fn layer_contents_rebuild_exactly_and_identical_files_dedup() {
    let files = sizes();
    let mut recs: Vec<T<'_>> = files.iter().map(|(n, b)| T::File(n, b, 0o644)).collect();
    recs.extend(
        files
            .iter()
            .map(|(n, b)| T::File(Box::leak(format!("copy/{n}").into_boxed_str()), b, 0o644)),
    );
    let src = runtime(&[("l", "tar.zst", zst(&tar_bytes(&recs)))]);
    let p = pack_ok(src.path());
    for (name, bytes) in &files {
        assert_eq!(&file_bytes(&p, name), bytes);
        assert_eq!(&file_bytes(&p, &format!("copy/{name}")), bytes);
    }
    assert_plan_is_sound(&p);
    let bytes_planned: u64 = p.blocks.iter().map(|b| b.size).sum();
    let unique: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(bytes_planned, unique, "copies add no block bytes");
}

#[test]
fn creation_order_does_not_change_the_manifest() {
    let make = |order: &[usize]| {
        let dir = tempfile::tempdir().unwrap();
        let files = sizes();
        for &i in order {
            let (name, bytes) = &files[i];
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        dir
    };
    let a = make(&[0, 1, 2, 3, 4, 5, 6, 7]);
    let b = make(&[7, 3, 5, 1, 6, 0, 2, 4]);
    assert_eq!(
        pack_ok(a.path()).manifest.digest(),
        pack_ok(b.path()).manifest.digest()
    );
}

#[test]
fn an_early_edit_changes_only_nearby_bundles() {
    let params = ChunkParams {
        bundle_avg: 32 << 10,
        bundle_max: 128 << 10,
        ..ChunkParams::default()
    };
    let write = |change: bool| {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..400u64 {
            let mut body = noise(i + 7, 2000 + (i as usize * 37) % 3000);
            if change && i == 5 {
                // One file grows and a new one appears next to it.
                body.extend_from_slice(&noise(99, 3000));
                std::fs::write(dir.path().join("m005a.py"), noise(98, 4000)).unwrap();
            }
            std::fs::write(dir.path().join(format!("m{i:03}.py")), body).unwrap();
        }
        dir
    };
    let (v1, v2) = (write(false), write(true));
    let p1 = pack_with(v1.path(), &PackLimits::default(), &params).unwrap();
    let p2 = pack_with(v2.path(), &PackLimits::default(), &params).unwrap();
    assert!(p1.blocks.len() >= 20, "{} bundles", p1.blocks.len());
    let old: HashSet<Digest> = p1.blocks.iter().map(|b| b.digest).collect();
    let new: Vec<_> = p2
        .blocks
        .iter()
        .filter(|b| !old.contains(&b.digest))
        .collect();
    let new_bytes: u64 = new.iter().map(|b| b.size).sum();
    // The early change must not shift every later bundle boundary.
    assert!(new.len() <= 3, "{} new blocks", new.len());
    assert!(new_bytes <= 3 * params.bundle_max, "{new_bytes} new bytes");
}

#[test]
fn unsupported_files_and_edits_after_packing_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"hello").unwrap();
    let p = pack_ok(dir.path());
    std::fs::write(dir.path().join("f"), b"HELLO").unwrap();
    let e = p.read_block(&p.blocks[0]).unwrap_err();
    assert!(matches!(e, PackError::Changed { .. }), "{e}");

    let sock = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let e = pack_err(dir.path());
    assert!(e.to_string().contains("\"sock\": is a socket"), "{e}");
}

/// Measures chunking strategies on two runtime packs (see docs/CHUNKING.md):
/// `PREWARM_MEASURE="bench/out/v1 bench/out/v2" cargo test --release -p prewarm-client
/// --lib pack::tests::chunking::measure -- --ignored`; writes to `$PREWARM_MEASURE_OUT`.
#[test]
#[ignore = "needs bench/make-runtime-pack output"]
fn measure() {
    let dirs = std::env::var("PREWARM_MEASURE").expect("PREWARM_MEASURE=\"V1 V2\"");
    let (v1, v2) = dirs.split_once(' ').expect("two dirs");
    let d = ChunkParams::default();
    let b = |small_max: u64, avg: u64, max: u64| ChunkParams {
        small_max,
        bundle_avg: avg,
        bundle_max: max,
        ..d.clone()
    };
    let configs = [
        (
            "one block per file",
            ChunkParams {
                small_max: 0,
                cdc_above: MAX_BLOCK_SIZE,
                ..d.clone()
            },
        ),
        (
            "bundles ≤16K avg 256K max 1M",
            b(16 << 10, 256 << 10, 1 << 20),
        ),
        (
            "bundles ≤32K avg 128K max 512K",
            b(32 << 10, 128 << 10, 512 << 10),
        ),
        (
            "bundles ≤64K avg 64K max 256K",
            b(64 << 10, 64 << 10, 256 << 10),
        ),
        (
            "bundles ≤64K avg 128K max 512K (chosen)",
            b(64 << 10, 128 << 10, 512 << 10),
        ),
        (
            "bundles ≤64K avg 256K max 1M",
            b(64 << 10, 256 << 10, 1 << 20),
        ),
        (
            "bundles ≤64K avg 1M max 4M, CDC >1M",
            b(64 << 10, 1 << 20, 4 << 20),
        ),
        ("bundles ≤64K avg 4M max 8M", b(64 << 10, 4 << 20, 8 << 20)),
        (
            "bundles ≤256K avg 1M max 4M",
            b(256 << 10, 1 << 20, 4 << 20),
        ),
        (
            "chosen + CDC 64K/256K/1M above 256K",
            ChunkParams {
                cdc_above: 256 << 10,
                cdc_min: 64 << 10,
                cdc_avg: 256 << 10,
                cdc_max: 1 << 20,
                ..d.clone()
            },
        ),
        (
            "chosen + no CDC below 8M",
            ChunkParams {
                cdc_above: MAX_BLOCK_SIZE,
                ..d.clone()
            },
        ),
        ("chosen (default)", d),
    ];
    let mut out = String::from(
        "| config | v1 blocks | v1 manifest KiB | v2 new blocks | v2 new block MiB | changed file MiB | ratio |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, params) in configs {
        let p1 = pack_with(Path::new(v1), &PackLimits::default(), &params).unwrap();
        let p2 = pack_with(Path::new(v2), &PackLimits::default(), &params).unwrap();
        let old_blocks: HashSet<Digest> = p1.blocks.iter().map(|b| b.digest).collect();
        let old_files: HashSet<Digest> = p1.manifest.files().map(|f| *f.2).collect();
        let new: Vec<_> = p2
            .blocks
            .iter()
            .filter(|b| !old_blocks.contains(&b.digest))
            .collect();
        let new_bytes: u64 = new.iter().map(|b| b.size).sum();
        let mut seen = HashSet::new();
        let changed: u64 = p2
            .manifest
            .entries
            .iter()
            .filter_map(|e| match e {
                prewarm_shared::Entry::File { digest, size, .. }
                    if !old_files.contains(digest) && seen.insert(*digest) =>
                {
                    Some(*size)
                }
                _ => None,
            })
            .sum();
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        out += &format!(
            "| {name} | {} | {} | {} | {:.1} | {:.1} | {:.3} |\n",
            p1.blocks.len(),
            p1.manifest.to_canonical_json().len() >> 10,
            new.len(),
            mib(new_bytes),
            mib(changed),
            new_bytes as f64 / changed.max(1) as f64,
        );
    }
    let files = pack_ok(Path::new(v1)).manifest.files().count();
    out += &format!("\nv1: {files} files\n");
    let dest =
        std::env::var("PREWARM_MEASURE_OUT").unwrap_or_else(|_| "/tmp/prewarm-measure.md".into());
    std::fs::write(dest, out).unwrap();
}
