//! End-to-end: the distribution spine through the real binary — push, the origin's HTTP API, pull.

mod api {
    use prewarm_shared::Digest;
    use prewarm_tests::{http, Origin};

    fn error_code(resp: reqwest::blocking::Response) -> (u16, String) {
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().expect("error body is JSON");
        let code = body["error"]["code"]
            .as_str()
            .expect("error.code")
            .to_string();
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error.message present"
        );
        (status, code)
    }

    #[test]
    fn blocks_round_trip_with_caching_headers_and_ranges() {
        let data = tempfile::tempdir().unwrap();
        let origin = Origin::start(data.path(), &[]);
        let c = http();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(&bytes);
        let url = format!("{}/v1/blocks/{d}", origin.url);
        assert_eq!(
            c.put(&url).body(bytes.clone()).send().unwrap().status(),
            201
        );

        let r = c.get(&url).send().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["etag"], format!("\"{d}\"").as_str());
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());

        let r = c.head(&url).send().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], "100000");

        let r = c.get(&url).header("range", "bytes=10-19").send().unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 10-19/100000");
        assert_eq!(r.bytes().unwrap().as_ref(), &bytes[10..20]);

        let r = c.get(&url).header("range", "bytes=200000-").send().unwrap();
        assert_eq!(r.status(), 416);

        let r = c
            .get(&url)
            .header("if-none-match", format!("\"{d}\""))
            .send()
            .unwrap();
        assert_eq!(r.status(), 304);
    }

    #[test]
    fn bad_input_gets_clear_errors_and_stores_nothing() {
        let data = tempfile::tempdir().unwrap();
        let origin = Origin::start(data.path(), &[]);
        let c = http();
        let claimed = Digest::of(b"the real bytes");
        let url = format!("{}/v1/blocks/{claimed}", origin.url);
        assert_eq!(
            error_code(c.put(&url).body("other bytes").send().unwrap()),
            (422, "digest_mismatch".into())
        );
        assert_eq!(
            error_code(c.get(&url).send().unwrap()),
            (404, "not_found".into())
        );

        for bad in [
            "sha256:abc",
            "md5:0000",
            "sha256:ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
        ] {
            let (status, code) = error_code(
                c.get(format!("{}/v1/blocks/{bad}", origin.url))
                    .send()
                    .unwrap(),
            );
            assert_eq!((status, code.as_str()), (400, "bad_digest"), "{bad}");
        }
        // Too large: the origin refuses before storing anything.
        let big = vec![7u8; (8 << 20) + 1];
        let big_d = Digest::of(&big);
        assert_eq!(
            error_code(
                c.put(format!("{}/v1/blocks/{big_d}", origin.url))
                    .body(big)
                    .send()
                    .unwrap()
            )
            .0,
            413
        );
        assert_eq!(
            c.head(format!("{}/v1/blocks/{big_d}", origin.url))
                .send()
                .unwrap()
                .status(),
            404
        );

        // A manifest whose blocks are missing is refused.
        let m = prewarm_shared::Manifest::new(vec![prewarm_shared::Entry::File {
            path: "a".parse().unwrap(),
            mode: 0o644,
            size: 3,
            digest: Digest::of(b"abc"),
            chunks: vec![prewarm_shared::Chunk {
                block: Digest::of(b"abc"),
                offset: 0,
                size: 3,
            }],
        }]);
        let bytes = m.to_canonical_json();
        let r = c
            .put(format!("{}/v1/manifests/{}", origin.url, m.digest()))
            .body(bytes)
            .send()
            .unwrap();
        assert_eq!(error_code(r), (409, "missing_blocks".into()));
        // A tag cannot point at a manifest that is not there.
        let r = c
            .put(format!("{}/v1/runtimes/x/tags/v1", origin.url))
            .body(format!("{{\"digest\":\"{}\"}}", m.digest()))
            .send()
            .unwrap();
        assert_eq!(error_code(r).0, 404);
        assert_eq!(
            error_code(
                c.get(format!("{}/v1/runtimes/x/tags/v1", origin.url))
                    .send()
                    .unwrap()
            )
            .0,
            404
        );
        assert_eq!(
            error_code(
                c.get(format!("{}/v1/runtimes/X!/tags/v1", origin.url))
                    .send()
                    .unwrap()
            )
            .0,
            400
        );
        let r = c
            .post(format!("{}/v1/blocks/missing", origin.url))
            .body("{\"digests\":[\"nope\"]}")
            .send()
            .unwrap();
        assert_eq!(error_code(r).0, 400);
        assert_eq!(
            error_code(c.get(format!("{}/v2/whatever", origin.url)).send().unwrap()).0,
            404
        );
    }

    #[test]
    fn writes_need_the_token_when_one_is_configured() {
        let data = tempfile::tempdir().unwrap();
        let token_file = data.path().join("token");
        std::fs::write(&token_file, "s3cret\n").unwrap();
        let origin = Origin::start(
            &data.path().join("store"),
            &["--token-file", token_file.to_str().unwrap()],
        );
        let c = http();
        let d = Digest::of(b"x");
        let url = format!("{}/v1/blocks/{d}", origin.url);
        assert_eq!(
            error_code(c.put(&url).body("x").send().unwrap()),
            (401, "unauthorized".into())
        );
        assert_eq!(
            error_code(c.put(&url).bearer_auth("wrong").body("x").send().unwrap()),
            (401, "unauthorized".into())
        );
        let r = c
            .post(format!("{}/v1/blocks/missing", origin.url))
            .body(format!("{{\"digests\":[\"{d}\"]}}"))
            .send()
            .unwrap();
        assert_eq!(error_code(r).0, 401);
        assert_eq!(
            c.put(&url)
                .bearer_auth("s3cret")
                .body("x")
                .send()
                .unwrap()
                .status(),
            201
        );
        // Reads stay public.
        assert_eq!(c.get(&url).send().unwrap().status(), 200);
    }
}

mod push_pull {
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use prewarm_tests::{cli, cli_json, http, write_pack, Origin};

    /// What a user sees of a tree: kind, permission bits, bytes or link target.
    fn snapshot(root: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
            let mut names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for p in names {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let mode = m.permissions().mode() & 0o777;
                if m.file_type().is_symlink() {
                    out.insert(
                        rel,
                        format!("link -> {}", std::fs::read_link(&p).unwrap().display()),
                    );
                } else if m.is_dir() {
                    out.insert(rel.clone(), format!("dir {mode:o}"));
                    walk(root, &p, out);
                } else {
                    let bytes = std::fs::read(&p).unwrap();
                    out.insert(
                        rel,
                        format!(
                            "file {mode:o} {} {}",
                            bytes.len(),
                            prewarm_shared::Digest::of(&bytes)
                        ),
                    );
                }
            }
        }
        walk(root, root, &mut out);
        out
    }

    /// Hard-linked files lose their write bits (the cache inode is shared and read-only).
    fn without_write_bits(mut s: BTreeMap<String, String>) -> BTreeMap<String, String> {
        for v in s.values_mut() {
            if let Some(rest) = v.strip_prefix("file ") {
                let (mode, tail) = rest.split_once(' ').unwrap();
                let m = u32::from_str_radix(mode, 8).unwrap() & !0o222;
                *v = format!("file {m:o} {tail}");
            }
        }
        s
    }

    fn make_tree(root: &Path) {
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("lib/pkg")).unwrap();
        std::fs::create_dir_all(root.join("empty/nested")).unwrap();
        std::fs::write(root.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
        std::fs::set_permissions(
            root.join("bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("tool", root.join("bin/tool-alias")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("bin/outside")).unwrap();
        for i in 0..300 {
            std::fs::write(
                root.join(format!("lib/pkg/mod{i:03}.py")),
                format!("# module {i}\nVALUE = {i}\n").repeat(i % 7 + 1),
            )
            .unwrap();
        }
        std::fs::write(root.join("lib/pkg/empty.txt"), b"").unwrap();
        std::fs::write(root.join("lib/dup-a"), b"same bytes").unwrap();
        std::fs::write(root.join("lib/dup-b"), b"same bytes").unwrap();
        // A big file spans several content-defined blocks.
        let mut big = Vec::with_capacity(5 << 20);
        let mut x: u64 = 0x9E3779B97F4A7C15;
        while big.len() < (5 << 20) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            big.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(root.join("lib/libbig.so"), &big).unwrap();
        std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
    }

    #[test]
    fn a_directory_round_trips_exactly_by_hard_links() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        make_tree(&src);
        let origin = Origin::start(&work.path().join("data"), &[]);
        let pushed = cli_json(&[
            "push",
            src.to_str().unwrap(),
            "--name",
            "tree:v1",
            "--to",
            &origin.url,
            "--json",
        ]);
        assert_eq!(pushed["files"], 305);
        assert!(
            pushed["blocks_total"].as_u64().unwrap() < 100,
            "small files are bundled: {pushed}"
        );
        assert_eq!(pushed["blocks_uploaded"], pushed["blocks_total"]);

        let into = work.path().join("rt");
        let cache = work.path().join("cache");
        let pulled = cli_json(&[
            "pull",
            "tree:v1",
            "--from",
            &origin.url,
            "--into",
            into.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(pulled["digest"], pushed["digest"]);
        assert_eq!(pulled["link_mode"], "hardlink");
        assert_eq!(pulled["blocks_downloaded"], pushed["blocks_total"]);
        assert_eq!(without_write_bits(snapshot(&src)), snapshot(&into));
        let tool = std::fs::metadata(into.join("bin/tool")).unwrap();
        assert!(
            tool.nlink() >= 2,
            "materialised files are hard links into the cache"
        );
        assert_eq!(
            tool.permissions().mode() & 0o222,
            0,
            "linked files are read-only"
        );

        // A second pull into a new directory downloads nothing.
        let into2 = work.path().join("rt2");
        let again = cli_json(&[
            "pull",
            pushed["digest"].as_str().unwrap(),
            "--from",
            &origin.url,
            "--into",
            into2.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(again["bytes_downloaded"], 0);
        assert_eq!(again["blocks_downloaded"], 0);
        assert_eq!(snapshot(&into), snapshot(&into2));

        // Copy mode gives exact permission bits.
        let into3 = work.path().join("rt3");
        let copied = cli_json(&[
            "pull",
            "tree:v1",
            "--from",
            &origin.url,
            "--into",
            into3.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--link-mode",
            "copy",
            "--json",
        ]);
        assert_eq!(copied["link_mode"], "copy");
        assert_eq!(snapshot(&src), snapshot(&into3));

        // The destination is never half-replaced: an existing DIR is refused without --replace.
        let out = cli(&[
            "pull",
            "tree:v1",
            "--from",
            &origin.url,
            "--into",
            into.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        assert_eq!(without_write_bits(snapshot(&src)), snapshot(&into));
    }

    #[test]
    fn a_new_version_moves_only_the_changed_content() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        make_tree(&src);
        let origin = Origin::start(&work.path().join("data"), &[]);
        cli_json(&[
            "push",
            src.to_str().unwrap(),
            "--name",
            "tree:v1",
            "--to",
            &origin.url,
            "--json",
        ]);
        let cache = work.path().join("cache");
        cli_json(&[
            "pull",
            "tree:v1",
            "--from",
            &origin.url,
            "--into",
            work.path().join("v1").to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ]);

        let changed = vec![b'z'; 300_000];
        std::fs::write(src.join("lib/changed.bin"), &changed).unwrap();
        let v2 = cli_json(&[
            "push",
            src.to_str().unwrap(),
            "--name",
            "tree:v2",
            "--to",
            &origin.url,
            "--json",
        ]);
        assert_eq!(
            v2["bytes_uploaded"], 300_000,
            "push uploads only the new content: {v2}"
        );
        let pulled = cli_json(&[
            "pull",
            "tree:v2",
            "--from",
            &origin.url,
            "--into",
            work.path().join("v2").to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(
            pulled["bytes_downloaded"], 300_000,
            "pull downloads only the new content: {pulled}"
        );
        assert!(pulled["blocks_reused"].as_u64().unwrap() > 0);
        assert_eq!(
            std::fs::read(work.path().join("v2/lib/changed.bin")).unwrap(),
            changed
        );
    }

    #[test]
    fn a_runtime_pack_applies_layers_in_order_with_whiteouts() {
        let work = tempfile::tempdir().unwrap();
        let pack = work.path().join("pack");
        write_pack(
            &pack,
            "demo",
            &[
                (
                    "base",
                    vec![
                        ("bin/", b"", 0o755),
                        ("bin/run", b"base", 0o755),
                        ("share/", b"", 0o755),
                        ("share/old.txt", b"old", 0o644),
                    ],
                ),
                (
                    "extra",
                    vec![
                        ("bin/run", b"extra wins", 0o755),
                        ("share/.wh.old.txt", b"", 0o644),
                        ("share/new.txt", b"new", 0o600),
                    ],
                ),
            ],
            serde_json::json!({"prefix": "/opt/demo"}),
        );
        let store = work.path().join("store");
        // push --to DIR writes a local store; an origin can then serve it.
        let pushed = cli_json(&[
            "push",
            pack.to_str().unwrap(),
            "--name",
            "demo:v1",
            "--to",
            store.to_str().unwrap(),
            "--json",
        ]);
        assert!(pushed["pack_key"]
            .as_str()
            .unwrap()
            .starts_with("runtime-pack:v1:"));
        let origin = Origin::start(&store, &[]);
        let into = work.path().join("rt");
        cli_json(&[
            "pull",
            "demo:v1",
            "--from",
            &origin.url,
            "--into",
            into.to_str().unwrap(),
            "--cache-dir",
            work.path().join("c").to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(std::fs::read(into.join("bin/run")).unwrap(), b"extra wins");
        assert!(
            !into.join("share/old.txt").exists(),
            "whiteout deleted the earlier file"
        );
        assert!(
            !into.join("share/.wh.old.txt").exists(),
            "whiteout markers are not materialised"
        );
        assert_eq!(std::fs::read(into.join("share/new.txt")).unwrap(), b"new");
        let m: serde_json::Value = http()
            .get(format!(
                "{}/v1/manifests/{}",
                origin.url,
                pushed["digest"].as_str().unwrap()
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(m["meta"]["prefix"], "/opt/demo");
        assert_eq!(m["lock"]["packages"][1]["layer"], "extra");
    }
}

mod hostile {
    use std::io::Write;
    use std::path::Path;

    use prewarm_tests::{cli, http, Origin};

    /// A raw tar entry: name bytes, type, link target bytes, contents.
    type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

    /// Writes a one-layer pack whose layer holds raw tar headers, bypassing the tar crate's checks.
    fn raw_pack(dir: &Path, entries: &[RawEntry]) {
        std::fs::create_dir_all(dir.join("layers")).unwrap();
        std::fs::write(
            dir.join("meta.json"),
            br#"{"name":"evil","version":"1","layers":["l"]}"#,
        )
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            {
                let g = h.as_gnu_mut().unwrap();
                g.name[..name.len()].copy_from_slice(name);
                g.linkname[..link.len()].copy_from_slice(link);
            }
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut f = std::fs::File::create(dir.join("layers/l.tar")).unwrap();
        f.write_all(&tar).unwrap();
    }

    #[test]
    fn hostile_layers_are_refused_naming_the_entry_and_nothing_lands() {
        let work = tempfile::tempdir().unwrap();
        let origin = Origin::start(&work.path().join("data"), &[]);
        let cases: Vec<(&str, Vec<RawEntry>, &str)> = vec![
            (
                "dotdot",
                vec![(b"../escape", tar::EntryType::Regular, b"", b"x")],
                "../escape",
            ),
            (
                "absolute",
                vec![(b"/etc/evil", tar::EntryType::Regular, b"", b"x")],
                "/etc/evil",
            ),
            (
                "through-symlink",
                vec![
                    (b"lnk", tar::EntryType::Symlink, b"/etc", b""),
                    (b"lnk/passwd", tar::EntryType::Regular, b"", b"x"),
                ],
                "lnk/passwd",
            ),
            (
                "hardlink-outside",
                vec![(b"h", tar::EntryType::Link, b"../../etc/shadow", b"")],
                "h",
            ),
            (
                "device",
                vec![(b"dev", tar::EntryType::Char, b"", b"")],
                "dev",
            ),
            (
                "fifo",
                vec![(b"pipe", tar::EntryType::Fifo, b"", b"")],
                "pipe",
            ),
        ];
        for (label, entries, named) in cases {
            let pack = work.path().join(label);
            raw_pack(&pack, &entries);
            let out = cli(&[
                "push",
                pack.to_str().unwrap(),
                "--name",
                "evil:v1",
                "--to",
                &origin.url,
            ]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{label}: push must fail");
            assert!(
                stderr.contains(named),
                "{label}: error must name {named:?}: {stderr}"
            );
        }
        assert_eq!(
            http()
                .get(format!("{}/v1/runtimes/evil/tags/v1", origin.url))
                .send()
                .unwrap()
                .status(),
            404
        );
        let manifests = walkdir_count(&work.path().join("data/manifests-v1"));
        assert_eq!(manifests, 0, "no manifest was stored");
        assert!(!Path::new("/etc/evil").exists());
    }

    #[test]
    fn decompression_bombs_hit_the_limits() {
        let work = tempfile::tempdir().unwrap();
        let pack = work.path().join("bomb");
        let zeros = vec![0u8; 4 << 20];
        raw_pack(&pack, &[(b"zeros", tar::EntryType::Regular, b"", &zeros)]);
        let out = cli(&[
            "push",
            pack.to_str().unwrap(),
            "--name",
            "bomb:v1",
            "--to",
            work.path().join("store").to_str().unwrap(),
            "--max-unpacked-bytes",
            "1000000",
        ]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("zeros"), "names the entry: {stderr}");
        let many: Vec<RawEntry> = vec![
            (b"a", tar::EntryType::Regular, b"", b""),
            (b"b", tar::EntryType::Regular, b"", b""),
            (b"c", tar::EntryType::Regular, b"", b""),
        ];
        let pack2 = work.path().join("many");
        raw_pack(&pack2, &many);
        let out = cli(&[
            "push",
            pack2.to_str().unwrap(),
            "--name",
            "bomb:v1",
            "--to",
            work.path().join("store").to_str().unwrap(),
            "--max-entries",
            "2",
        ]);
        assert!(!out.status.success());
    }

    #[test]
    fn a_corrupt_block_on_the_origin_fails_the_pull_and_leaves_nothing() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f"), vec![1u8; 200_000]).unwrap();
        let data = work.path().join("data");
        let out = cli(&[
            "push",
            src.to_str().unwrap(),
            "--name",
            "c:v1",
            "--to",
            data.to_str().unwrap(),
        ]);
        assert!(out.status.success());
        // Flip bytes of every stored block behind the store's back.
        for e in walk(&data.join("blocks-v1")) {
            std::fs::write(&e, vec![2u8; 200_000]).unwrap();
        }
        let origin = Origin::start(&data, &[]);
        let into = work.path().join("rt");
        let out = cli(&[
            "pull",
            "c:v1",
            "--from",
            &origin.url,
            "--into",
            into.to_str().unwrap(),
            "--cache-dir",
            work.path().join("cache").to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("sha256:"), "names the block: {stderr}");
        assert!(!into.exists(), "no half runtime at DIR");
        let leftovers: Vec<_> = std::fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !leftovers.iter().any(|n| n.contains("rt") && n != "rt"),
            "no temp tree left beside DIR: {leftovers:?}"
        );
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(walk(&p));
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    fn walkdir_count(dir: &Path) -> usize {
        walk(dir).len()
    }
}
