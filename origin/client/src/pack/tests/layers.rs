//! Layer semantics: order, overrides, whiteouts, compression, pack key, lock.json.

use prewarm_shared::{pack_key, Digest};

use super::{file_bytes, gz, listing, pack_ok, runtime, runtime_tars, tar_bytes, zst, T};

#[test]
fn later_layers_override_earlier_paths() {
    let src = runtime_tars(&[
        (
            "one",
            &[
                T::File("etc/conf", b"one", 0o644),
                T::File("was-file", b"f", 0o644),
                T::Dir("was-dir/", 0o700),
                T::File("was-dir/inner", b"gone", 0o644),
                T::Dir("merged/", 0o700),
                T::File("merged/old", b"stays", 0o644),
            ],
        ),
        (
            "two",
            &[
                T::File("etc/conf", b"two", 0o600),
                T::Symlink("was-dir", "elsewhere"),
                T::Dir("was-file/", 0o755),
                T::File("was-file/x", b"", 0o644),
                T::Dir("merged/", 0o755),
                T::File("merged/new", b"added", 0o644),
            ],
        ),
    ]);
    let p = pack_ok(src.path());
    assert_eq!(
        listing(&p.manifest),
        [
            "etc/ 755",
            "etc/conf 600",
            "merged/ 755",
            "merged/new 644",
            "merged/old 644",
            "was-dir -> elsewhere",
            "was-file/ 755",
            "was-file/x 644",
        ]
    );
    assert_eq!(file_bytes(&p, "etc/conf"), b"two");
    assert_eq!(file_bytes(&p, "merged/old"), b"stays");
}

#[test]
fn whiteouts_delete_lower_paths_and_their_subtrees() {
    let src = runtime_tars(&[
        (
            "base",
            &[
                T::File("a/keep", b"k", 0o644),
                T::File("a/drop", b"d", 0o644),
                T::File("tree/deep/file", b"f", 0o644),
                T::File("opq/old", b"o", 0o644),
                T::File("opq/sub/old2", b"o", 0o644),
            ],
        ),
        (
            "patch",
            &[
                T::File("a/.wh.drop", b"", 0o644),
                T::File(".wh.tree", b"", 0o644),
                // Added before the opaque marker in the same layer: must survive it.
                T::File("opq/new", b"n", 0o644),
                T::File("opq/.wh..wh..opq", b"", 0o644),
            ],
        ),
    ]);
    let p = pack_ok(src.path());
    assert_eq!(
        listing(&p.manifest),
        ["a/ 755", "a/keep 644", "opq/ 755", "opq/new 644"]
    );
    // A whiteout of something absent is harmless; an unsafe one is not.
    let src = runtime_tars(&[("p", &[T::File(".wh.nothing", b"", 0o644)])]);
    assert!(pack_ok(src.path()).manifest.entries.is_empty());
    let src = runtime_tars(&[("p", &[T::File("a/.wh...", b"", 0o644)])]);
    assert!(super::pack_err(src.path()).to_string().contains("whiteout"));
}

#[test]
fn parents_are_synthesised_and_modes_masked() {
    let src = runtime_tars(&[("l", &[T::File("x/y/z", b"z", 0o4755), T::Dir("d/", 0o1777)])]);
    let p = pack_ok(src.path());
    assert_eq!(
        listing(&p.manifest),
        ["d/ 777", "x/ 755", "x/y/ 755", "x/y/z 755"]
    );
}

#[test]
fn every_compression_gives_the_same_tree_and_the_key_covers_archives() {
    let tar = tar_bytes(&[
        T::Dir("./", 0o755),
        T::File("./lib/a.py", b"print('a')\n", 0o644),
        T::Symlink("./bin", "lib"),
    ]);
    let long = "lib/".to_string() + &"n".repeat(150);
    let long_tar = tar_bytes(&[T::File(&long, b"long name", 0o644)]);
    let mut trees = Vec::new();
    for (ext, bytes) in [
        ("tar", tar.clone()),
        ("tar.gz", gz(&tar)),
        ("tgz", gz(&tar)),
        ("tar.zst", zst(&tar)),
    ] {
        let src = runtime(&[
            ("base", ext, bytes.clone()),
            ("more", "tar", long_tar.clone()),
        ]);
        let p = pack_ok(src.path());
        assert_eq!(
            p.manifest.pack_key.as_deref(),
            Some(pack_key(&[Digest::of(&bytes), Digest::of(&long_tar)]).as_str()),
            "{ext}"
        );
        assert_eq!(
            p.manifest.meta.as_ref().map(|m| m.prefix.as_str()),
            Some("/opt/t")
        );
        assert_eq!(file_bytes(&p, &long), b"long name");
        trees.push(p.manifest.entries);
    }
    assert!(trees.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn lock_json_is_optional_and_recorded() {
    let src = runtime_tars(&[("numpy", &[T::File("np.py", b"", 0o644)])]);
    assert_eq!(pack_ok(src.path()).manifest.lock, None);
    std::fs::write(
        src.path().join("lock.json"),
        r#"{"packages":[{"name":"numpy","version":"2.1.3","layer":"numpy"}]}"#,
    )
    .unwrap();
    let lock = pack_ok(src.path()).manifest.lock.unwrap();
    assert_eq!(lock.packages[0].version, "2.1.3");
}

#[test]
fn same_tree_in_any_archive_order_gives_the_same_entries() {
    let a = [
        T::File("z/last", b"zz", 0o644),
        T::File("a/first", b"aa", 0o644),
        T::Symlink("m", "a/first"),
        T::Dir("empty/", 0o700),
    ];
    let b = [
        T::Dir("empty/", 0o700),
        T::Symlink("m", "a/first"),
        T::File("a/first", b"aa", 0o644),
        T::File("z/last", b"zz", 0o644),
    ];
    let mut pa = pack_ok(runtime_tars(&[("l", &a)]).path()).manifest;
    let mut pb = pack_ok(runtime_tars(&[("l", &b)]).path()).manifest;
    // The archives differ, so the pack keys do; the trees must not.
    assert_ne!(pa.pack_key, pb.pack_key);
    pa.pack_key = None;
    pb.pack_key = None;
    assert_eq!(pa.digest(), pb.digest());
}
