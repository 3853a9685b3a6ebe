//! Hostile layers: every escape attempt and bomb is refused, naming the layer and the entry.

use tar::EntryType;

use super::super::{pack, PackError, PackLimits};
use super::{gz, pack_err, runtime, runtime_tars, tar_bytes, zst, T};

/// Asserts an entry error naming `layer` and `entry`, whose reason mentions `why`.
fn assert_refused(e: &PackError, layer: &str, entry: &str, why: &str) {
    let msg = e.to_string();
    match e {
        PackError::Entry {
            origin, entry: en, ..
        } => {
            assert_eq!(origin, &format!("layer {layer}"), "{msg}");
            assert_eq!(en, entry, "{msg}");
        }
        other => panic!("expected an entry error, got {other:?}"),
    }
    assert!(msg.contains(why), "{msg:?} should mention {why:?}");
}

#[test]
fn absolute_and_parent_paths_are_refused() {
    for (name, why) in [
        ("/etc/passwd", "absolute"),
        ("../escape", ".."),
        ("a/../../etc/shadow", ".."),
        ("a//b", "empty"),
        ("./a/./b", "empty"),
        ("././a", "empty"),
    ] {
        let src = runtime_tars(&[("evil", &[T::Dir("./", 0o755), T::File(name, b"x", 0o644)])]);
        assert_refused(&pack_err(src.path()), "evil", name, why);
    }
}

#[test]
fn leading_dot_slash_is_normal_tar_output() {
    let src = runtime_tars(&[(
        "base",
        &[
            T::Dir("./", 0o755),
            T::Dir("./bin/", 0o755),
            T::File("./bin/tool", b"#!/bin/sh\n", 0o755),
        ],
    )]);
    let p = super::pack_ok(src.path());
    assert_eq!(super::listing(&p.manifest), ["bin/ 755", "bin/tool 755"]);
}

#[test]
fn writing_beneath_a_symlink_is_refused() {
    // Planted by an earlier layer…
    let src = runtime_tars(&[
        ("base", &[T::Symlink("lib", "/etc")]),
        (
            "evil",
            &[T::File("lib/passwd", b"root::0:0::/:/bin/sh\n", 0o644)],
        ),
    ]);
    assert_refused(
        &pack_err(src.path()),
        "evil",
        "lib/passwd",
        "beneath symlink \"lib\"",
    );
    // …or earlier in the same layer, including a directory beneath it.
    let src = runtime_tars(&[(
        "evil",
        &[T::Symlink("up", "../../.."), T::Dir("up/etc/", 0o755)],
    )]);
    assert_refused(&pack_err(src.path()), "evil", "up/etc/", "beneath symlink");
    // A hard link through a symlink is refused the same way.
    let src = runtime_tars(&[(
        "evil",
        &[
            T::File("f", b"x", 0o644),
            T::Symlink("s", "/tmp"),
            T::Link("s/f", "f"),
        ],
    )]);
    assert_refused(&pack_err(src.path()), "evil", "s/f", "beneath symlink");
}

#[test]
fn hard_links_must_point_at_an_earlier_regular_file() {
    for (target, why) in [
        ("../../etc/passwd", ".."),
        ("/etc/passwd", "absolute"),
        ("missing", "not an earlier regular file"),
        ("dir", "not a regular file"),
        ("link", "not a regular file"),
    ] {
        let src = runtime_tars(&[(
            "evil",
            &[
                T::Dir("dir/", 0o755),
                T::Symlink("link", "dir"),
                T::Link("h", target),
            ],
        )]);
        let e = pack_err(src.path());
        // A bad target is reported under the link's name or the target's, always the layer.
        let msg = e.to_string();
        assert!(msg.starts_with("layer evil: entry "), "{msg}");
        assert!(msg.contains(why), "{msg:?} should mention {why:?}");
    }
    // A good one is a copy of the content reference.
    let src = runtime_tars(&[(
        "ok",
        &[
            T::File("bin/python3.11", b"ELF", 0o755),
            T::Link("bin/python3", "./bin/python3.11"),
        ],
    )]);
    let p = super::pack_ok(src.path());
    assert_eq!(super::file_bytes(&p, "bin/python3"), b"ELF");
    assert_eq!(p.blocks.len(), 1);
}

#[test]
fn devices_fifos_and_non_utf8_names_are_refused() {
    for (ty, why) in [
        (EntryType::Char, "device"),
        (EntryType::Block, "device"),
        (EntryType::Fifo, "fifo"),
    ] {
        let src = runtime_tars(&[(
            "evil",
            &[T::Raw {
                name: b"dev/sda",
                ty,
                data: b"",
                link: b"",
                size: None,
            }],
        )]);
        assert_refused(&pack_err(src.path()), "evil", "dev/sda", why);
    }
    let src = runtime_tars(&[(
        "evil",
        &[T::Raw {
            name: b"caf\xe9",
            ty: EntryType::Regular,
            data: b"x",
            link: b"",
            size: None,
        }],
    )]);
    assert_refused(&pack_err(src.path()), "evil", "caf\u{fffd}", "not UTF-8");
}

#[test]
fn decompression_bombs_stop_at_the_limit() {
    let limits = PackLimits {
        max_total_bytes: 1 << 20,
        max_entries: 100,
    };
    // 64 MiB of zeros is a few dozen KiB of gzip.
    let zeros = vec![0u8; 64 << 20];
    let bomb = gz(&tar_bytes(&[T::File("zeros", &zeros, 0o644)]));
    assert!(bomb.len() < 1 << 20);
    let src = runtime(&[("bomb", "tar.gz", bomb)]);
    let e = pack(src.path(), &limits).unwrap_err();
    assert!(
        matches!(&e, PackError::Limit { limit: "max_total_bytes", entry, .. } if entry == "zeros"),
        "{e}"
    );
    assert!(e.to_string().contains("layer bomb"), "{e}");

    // Bytes add up across layers.
    let half = vec![7u8; 600 << 10];
    let src = runtime_tars(&[
        ("a", &[T::File("a", &half, 0o644)]),
        ("b", &[T::File("b", &half, 0o644)]),
    ]);
    let e = pack(src.path(), &limits).unwrap_err();
    assert!(
        matches!(&e, PackError::Limit { origin, .. } if origin == "layer b"),
        "{e}"
    );

    // So do entries.
    let names: Vec<String> = (0..150).map(|i| format!("f{i}")).collect();
    let many: Vec<T<'_>> = names.iter().map(|n| T::File(n, b"", 0o644)).collect();
    let src = runtime_tars(&[("many", &many)]);
    let e = pack(src.path(), &limits).unwrap_err();
    assert!(
        matches!(&e, PackError::Limit { limit: "max_entries", entry, .. } if entry == "f100"),
        "{e}"
    );

    // Data behind a member that keeps none (a directory, symlink, hard link or whiteout
    // claiming a size) is still decoded to be skipped: it counts too, or a small .tar.gz
    // could make pack inflate gigabytes for nothing. (Found while writing the layer fuzzer.)
    for ty in [EntryType::Directory, EntryType::Symlink, EntryType::Link] {
        let name: &[u8] = if ty == EntryType::Directory {
            b"d/"
        } else {
            b"s"
        };
        let bomb = gz(&tar_bytes(&[
            T::File("t", b"x", 0o644),
            T::Raw {
                name,
                ty,
                data: &zeros,
                link: b"t",
                size: None,
            },
        ]));
        let src = runtime(&[("bomb", "tar.gz", bomb)]);
        let e = pack(src.path(), &limits).unwrap_err();
        assert!(
            matches!(
                &e,
                PackError::Limit {
                    limit: "max_total_bytes",
                    ..
                }
            ),
            "{ty:?}: {e}"
        );
    }
    let bomb = gz(&tar_bytes(&[T::File(".wh.gone", &zeros, 0o644)]));
    let src = runtime(&[("bomb", "tar.gz", bomb)]);
    let e = pack(src.path(), &limits).unwrap_err();
    assert!(
        matches!(
            &e,
            PackError::Limit {
                limit: "max_total_bytes",
                ..
            }
        ),
        "whiteout: {e}"
    );

    // A long-name record claiming a terabyte is refused before it is read.
    let src = runtime_tars(&[(
        "evil",
        &[T::Raw {
            name: b"././@LongLink",
            ty: EntryType::GNULongName,
            data: b"",
            link: b"",
            size: Some(1 << 40),
        }],
    )]);
    let e = pack_err(src.path());
    assert!(
        e.to_string().contains("layer evil") && e.to_string().contains("exceeds"),
        "{e}"
    );
}

#[test]
fn bad_meta_and_missing_layers_are_named() {
    let src = runtime_tars(&[("base", &[T::File("a", b"a", 0o644)])]);
    std::fs::write(
        src.path().join("meta.json"),
        r#"{"name":"t","version":"1","layers":["base"],"wram":[]}"#,
    )
    .unwrap();
    let e = pack_err(src.path());
    assert!(
        matches!(e, PackError::Meta(_)) && e.to_string().contains("wram"),
        "{e}"
    );

    let src = runtime_tars(&[("base", &[T::File("a", b"a", 0o644)])]);
    std::fs::write(src.path().join("lock.json"), r#"{"packages":[],"extra":1}"#).unwrap();
    assert!(pack_err(src.path()).to_string().contains("extra"));

    std::fs::remove_file(src.path().join("lock.json")).unwrap();
    std::fs::rename(
        src.path().join("layers/base.tar"),
        src.path().join("layers/base.tar.zst"),
    )
    .unwrap();
    std::fs::write(src.path().join("layers/base.tgz"), b"").unwrap();
    let e = pack_err(src.path());
    assert!(
        e.to_string().contains("layer \"base\": several archives"),
        "{e}"
    );
    std::fs::remove_file(src.path().join("layers/base.tgz")).unwrap();
    std::fs::remove_file(src.path().join("layers/base.tar.zst")).unwrap();
    let e = pack_err(src.path());
    assert!(
        e.to_string()
            .contains("layer \"base\": none of layers/base.tar"),
        "{e}"
    );
}

#[test]
fn truncated_or_corrupt_layers_are_refused_naming_layer_and_entry() {
    let whole = tar_bytes(&[
        T::Dir("bin/", 0o755),
        T::File("bin/tool", &[7u8; 3000], 0o755),
        T::File("lib/last", b"the last file\n", 0o644),
    ]);
    assert!(whole.len() >= 1024 && whole[whole.len() - 1024..].iter().all(|b| *b == 0));
    let end_of_last = whole.len() - 1024; // the tar crate writes exactly two zero blocks
    let refused = |ext: &str, bytes: Vec<u8>, entry: &str, why: &str| {
        let src = runtime(&[("base", ext, bytes)]);
        let e = pack_err(src.path());
        let msg = e.to_string();
        assert!(msg.contains("layer base"), "{msg}");
        assert!(msg.contains(entry), "{ext}: should name {entry:?}: {msg}");
        assert!(msg.contains(why), "{ext}: should say {why:?}: {msg}");
    };
    // Cut exactly at a member boundary: no end-of-archive marker.
    refused(
        "tar",
        whole[..end_of_last].to_vec(),
        "lib/last",
        "end-of-archive marker",
    );
    // Only one of the two zero blocks.
    refused(
        "tar",
        whole[..end_of_last + 512].to_vec(),
        "lib/last",
        "end-of-archive marker",
    );
    // Cut inside a file's contents.
    refused(
        "tar",
        whole[..512 * 3 + 1000].to_vec(),
        "bin/tool",
        "truncated",
    );
    // Garbage after the marker.
    let mut trailing = whole.clone();
    trailing.extend_from_slice(b"not padding");
    refused("tar", trailing, "lib/last", "padding");

    // gzip: the whole tar, but the stream's trailer (CRC, length) cut off.
    let z = gz(&whole);
    refused("tar.gz", z[..z.len() - 8].to_vec(), "lib/last", "truncated");
    // A wrong CRC.
    let mut bad_crc = z.clone();
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0xff;
    refused("tar.gz", bad_crc, "lib/last", "");
    // Cut in the middle of the deflate stream.
    refused("tar.gz", z[..z.len() / 2].to_vec(), "", "truncated");
    // zstd cut short.
    let zs = zst(&whole);
    refused("tar.zst", zs[..zs.len() - 4].to_vec(), "", "truncated");

    // A gzip stream of several members, the tar split across them, is one layer.
    let mut members = gz(&whole[..2048]);
    members.extend_from_slice(&gz(&whole[2048..]));
    let src = runtime(&[("base", "tar.gz", members.clone())]);
    assert_eq!(
        super::file_bytes(&super::pack_ok(src.path()), "lib/last"),
        b"the last file\n"
    );
    // Cut at the boundary between the two members: the tar is short of its end.
    let first = gz(&whole[..2048]).len();
    refused("tar.gz", members[..first].to_vec(), "bin/tool", "truncated");

    // Whole archives, with GNU tar's padding to a 10 KiB record, are fine.
    let mut padded = whole.clone();
    padded.resize(whole.len().div_ceil(10240) * 10240, 0);
    for (ext, bytes) in [
        ("tar", padded.clone()),
        ("tar.gz", gz(&padded)),
        ("tar.zst", zst(&padded)),
    ] {
        let src = runtime(&[("base", ext, bytes)]);
        let p = super::pack_ok(src.path());
        assert_eq!(
            super::file_bytes(&p, "lib/last"),
            b"the last file\n",
            "{ext}"
        );
    }
}
