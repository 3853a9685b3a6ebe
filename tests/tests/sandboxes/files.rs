//! The files API on a real sandbox: round trips, Range, listings, tar in and out, atomic writes, the size limit, and symlinks planted by the sandbox that must never lead outside its workspace.

use std::io::Read;

use prewarm_tests::http;
use serde_json::{json, Value};

use crate::support::Node;

/// `…/files/PATH` of sandbox `id` (PATH as given: the test encodes what it must).
fn url(node: &Node, id: &str, path: &str) -> String {
    match path {
        "" => format!("{}/v1/sandboxes/{id}/files", node.origin.url),
        p => format!("{}/v1/sandboxes/{id}/files/{p}", node.origin.url),
    }
}

/// Percent-encodes each component of a path (UTF-8, spaces, `%`), keeping the `/`s.
fn enc(path: &str) -> String {
    path.split('/')
        .map(|c| {
            c.bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    b => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn put(node: &Node, id: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let r = http()
        .put(url(node, id, &enc(path)))
        .body(body)
        .send()
        .expect("put");
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn get(node: &Node, id: &str, path: &str) -> (u16, Vec<u8>) {
    let r = http().get(url(node, id, &enc(path))).send().expect("get");
    (r.status().as_u16(), r.bytes().expect("body").to_vec())
}

/// The error code of a JSON error body.
fn code_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or("").to_string()
}

fn list(node: &Node, id: &str, dir: &str) -> (u16, Value) {
    let u = format!("{}?list", url(node, id, &enc(dir)));
    let r = http().get(u).send().expect("list");
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn names(listing: &Value) -> Vec<String> {
    listing["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_string())
        .collect()
}

/// A ready sandbox on a fresh node, with `limits` (JSON) on its create request.
fn sandbox(limits: Value) -> (Node, String) {
    let node = Node::start(&[]);
    node.push_data("files", b"x", json!([]));
    let body = json!({"runtime": "files:v1", "user_id": "u", "limits": limits});
    let (code, info) = node.create(body);
    assert!(code == 201 || code == 202, "{code}");
    let done = node.settled(&info.sandbox_id);
    assert_eq!(done.state.status, prewarm_shared::sandbox::Status::Ready);
    (node, info.sandbox_id)
}

#[test]
fn files_round_trip_with_modes_owners_ranges_listings_and_deletes() {
    let (node, sb) = sandbox(json!({}));
    // Binary (every byte value), large (over the pipe size many times), unicode names.
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let large: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases = [
        ("bin.dat", binary.clone()),
        ("deep/er/large.bin", large.clone()),
        ("données/日本語 ✓ 100%.txt", "héllo\n".as_bytes().to_vec()),
        ("empty", Vec::new()),
    ];
    for (path, body) in &cases {
        let (code, r) = put(&node, &sb, path, body.clone());
        assert_eq!(code, 201, "{path}: {r}");
        assert_eq!(r["size"], body.len(), "{r}");
        let (code, back) = get(&node, &sb, path);
        assert_eq!(code, 200, "{path}");
        assert!(
            back == *body,
            "{path}: {} bytes back of {}",
            back.len(),
            body.len()
        );
    }
    // The sandbox sees the same bytes, owns them, and can change them.
    let r = node.exec(&sb, &["sh", "-c", "wc -c < deep/er/large.bin && stat -c '%a %u' 'données/日本語 ✓ 100%.txt' deep deep/er && id -u && echo more >> bin.dat && rm empty"]);
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], large.len().to_string(), "{r:?}");
    let uid = lines[4];
    assert_ne!(uid, "0");
    for l in &lines[1..4] {
        assert!(
            l.ends_with(&format!(" {uid}")),
            "owned by the sandbox user: {r:?}"
        );
    }
    assert!(lines[1].starts_with("644 "), "{r:?}");
    assert!(lines[2].starts_with("755 "), "{r:?}");
    // Modes as asked; a bad one is refused with its reason.
    let u = format!("{}?mode=0750", url(&node, &sb, "run.sh"));
    let resp = http()
        .put(u)
        .body("#!/bin/sh\necho ran\n")
        .send()
        .expect("put");
    assert_eq!(resp.status(), 201);
    let r = node.exec(&sb, &["./run.sh"]);
    assert_eq!(r.stdout, "ran\n", "{r:?}");
    let u = format!("{}?mode=4755", url(&node, &sb, "x"));
    let resp = http().put(u).body("x").send().expect("put");
    assert_eq!(resp.status(), 400);
    assert_eq!(code_of(&resp.bytes().expect("body")), "bad_mode");

    // Range: a middle slice, a suffix, past the end.
    let ranged = |spec: &str| {
        let r = http()
            .get(url(&node, &sb, "deep/er/large.bin"))
            .header("range", spec)
            .send()
            .expect("range get");
        let cr = r
            .headers()
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), cr, r.bytes().expect("body").to_vec())
    };
    let (code, cr, body) = ranged("bytes=1000-1999");
    assert_eq!(
        (code, cr.as_deref()),
        (206, Some(&*format!("bytes 1000-1999/{}", large.len())))
    );
    assert!(body == large[1000..2000]);
    let (code, _, body) = ranged("bytes=-7");
    assert_eq!(code, 206);
    assert!(body == large[large.len() - 7..]);
    assert_eq!(ranged(&format!("bytes={}-", large.len())).0, 416);

    // Listing: name, type, size, mode, mtime, sorted; the root is `…/files?list`.
    let (code, l) = list(&node, &sb, "deep/er");
    assert_eq!(code, 200, "{l}");
    let e = &l["entries"][0];
    assert_eq!(
        (e["name"].as_str(), e["type"].as_str()),
        (Some("large.bin"), Some("file"))
    );
    assert_eq!(e["size"], large.len());
    assert_eq!(e["mode"], 0o644);
    assert!(e["mtime"].as_i64().unwrap() > 1_600_000_000, "{e}");
    let root = http()
        .get(format!("{}/v1/sandboxes/{sb}/files?list", node.origin.url))
        .send()
        .expect("list root")
        .json::<Value>()
        .expect("json");
    assert_eq!(
        names(&root),
        ["bin.dat", "deep", "données", "run.sh"],
        "{root}"
    );
    assert_eq!(root["entries"][1]["type"], "dir");

    // What is not a file or not there says so.
    assert_eq!(code_of(&get(&node, &sb, "deep").1), "is_a_directory");
    assert_eq!(get(&node, &sb, "nope").0, 404);
    assert_eq!(list(&node, &sb, "bin.dat").0, 409);
    assert_eq!(put(&node, &sb, "deep", b"x".to_vec()).0, 409);
    assert_eq!(put(&node, &sb, "bin.dat/x", b"x".to_vec()).0, 409);
    for bad in ["a//b", "a/%00"] {
        let r = http().get(url(&node, &sb, bad)).send().expect("get");
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(code_of(&r.bytes().unwrap()), "bad_path", "{bad}");
    }
    let r = http()
        .get(format!("{}?lsit", url(&node, &sb, "deep")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // Delete a file, then a whole directory.
    let del = |p: &str| {
        http()
            .delete(url(&node, &sb, &enc(p)))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(del("bin.dat"), 204);
    assert_eq!(get(&node, &sb, "bin.dat").0, 404);
    assert_eq!(del("deep"), 204);
    assert_eq!(list(&node, &sb, "deep").0, 404);
    assert_eq!(del("deep"), 404);

    // A deleted sandbox has no files.
    node.delete(&sb);
    assert_eq!(get(&node, &sb, "run.sh").0, 404);
    assert_eq!(put(&node, &sb, "x", b"x".to_vec()).0, 404);
}

/// A tar of `(path, body)` files and `(dir/)` directories, as a client would upload.
fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, body) in entries {
        let mut h = tar::Header::new_gnu();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, path, std::io::empty()).unwrap();
        } else {
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            b.append_data(&mut h, path, *body).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn upload(node: &Node, id: &str, dir: &str, tar: Vec<u8>) -> (u16, Value) {
    let u = format!(
        "{}/v1/sandboxes/{id}/files:upload?dir={}",
        node.origin.url,
        enc(dir)
    );
    let r = http().post(u).body(tar).send().expect("upload");
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

#[test]
fn tar_in_and_out_and_hostile_archives_are_refused() {
    let (node, sb) = sandbox(json!({}));
    let long = format!("{}/f", "n".repeat(200));
    let big: Vec<u8> = (0..3u32 << 20).map(|i| i as u8).collect();
    let t = tar_of(&[
        ("./src/", b""),
        ("src/main.py", b"print('hi')\n"),
        ("src/ünï.txt", "ü\n".as_bytes()),
        (&long, b"long name\n"),
        ("data/big.bin", &big),
    ]);
    let (code, r) = upload(&node, &sb, "proj", t);
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["entries"], 5);
    let r = node.exec(
        &sb,
        &[
            "sh",
            "-c",
            "cd proj && python3 src/main.py && cat src/ünï.txt && stat -c %u data/big.bin && id -u",
        ],
    );
    let out: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(&out[..2], ["hi", "ü"], "{r:?}");
    assert_eq!(
        out[2], out[3],
        "uploaded files belong to the sandbox user: {r:?}"
    );

    // Out again: the same names and bytes, and the whole stream is a valid archive.
    let resp = http()
        .get(format!("{}?archive=tar", url(&node, &sb, "proj")))
        .send()
        .expect("archive");
    assert_eq!(resp.status(), 200);
    let mut seen = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(resp);
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        seen.insert(name, body);
    }
    assert!(seen["data/big.bin"] == big);
    assert_eq!(seen["src/main.py"], b"print('hi')\n");
    assert_eq!(seen[&long], b"long name\n");
    assert!(
        seen.keys().any(|k| k.trim_end_matches('/') == "src"),
        "{:?}",
        seen.keys()
    );
    // `..` in the target directory is refused like any path.
    let (code, r) = upload(&node, &sb, "..", tar_of(&[("f", b"x")]));
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (400, Some("bad_path")),
        "{r}"
    );

    // Hostile members: refused naming the entry; nothing lands outside.
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    let evil_path = {
        // `tar` refuses to build `..` names itself: write the name bytes directly.
        let mut b = tar::Builder::new(Vec::new());
        let name = b"../../escaped";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"evil"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let (code, r) = upload(&node, &sb, "x", evil_path);
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (400, Some("bad_archive")),
        "{r}"
    );
    let hard = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        h.set_mode(0o644);
        b.append_link(&mut h, "hl", "/etc/shadow").unwrap();
        b.into_inner().unwrap()
    };
    let (code, r) = upload(&node, &sb, "x", hard);
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (400, Some("bad_archive")),
        "{r}"
    );
    // A symlink out, then a file through it: the link is kept, the write refused.
    let outside = tempfile::tempdir().unwrap();
    let through = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "out", outside.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        b.append_data(&mut h, "out/planted", &b"evil"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let (code, r) = upload(&node, &sb, "", through);
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (400, Some("path_escapes_workspace")),
        "{r}"
    );
    assert!(!outside.path().join("planted").exists());
    // Not a tar at all.
    let (code, r) = upload(&node, &sb, "y", b"definitely not a tar archive".repeat(40));
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (400, Some("bad_archive")),
        "{r}"
    );
}

#[test]
fn writes_are_atomic_and_bounded_by_the_file_size_limit() {
    let (node, sb) = sandbox(json!({"file_bytes": 1 << 20}));
    let old = b"the old content\n".to_vec();
    assert_eq!(put(&node, &sb, "keep.txt", old.clone()).0, 201);

    // A body that breaks half-way (the client dies): the old file stays whole, no temp left.
    struct Breaks(usize);
    impl Read for Breaks {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("client died"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(b'n');
            self.0 -= n;
            Ok(n)
        }
    }
    let r = http()
        .put(url(&node, &sb, "keep.txt"))
        .body(reqwest::blocking::Body::new(Breaks(300_000)))
        .send();
    assert!(r.is_err() || r.unwrap().status() != 201);
    node.wait("the broken upload cleaned up", || {
        let (_, l) = list(&node, &sb, "");
        names(&l) == ["keep.txt"]
    });
    assert_eq!(get(&node, &sb, "keep.txt").1, old);

    // Over the sandbox's file size limit: refused up front (Content-Length) or while
    // streaming (chunked); the old content stays either way.
    // (The server answers 413 without reading the rest of the body, so the client may see
    // the connection close before it reads the answer.)
    let over = vec![7u8; (1 << 20) + 1];
    if let Ok(r) = http()
        .put(url(&node, &sb, "keep.txt"))
        .body(over.clone())
        .send()
    {
        assert_eq!(r.status(), 413);
        let body: Value = r.json().expect("error body");
        assert_eq!(body["error"]["code"], "too_large", "{body}");
    }
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(over));
    if let Ok(r) = http().put(url(&node, &sb, "keep.txt")).body(chunked).send() {
        assert_eq!(r.status(), 413);
    }
    assert_eq!(get(&node, &sb, "keep.txt").1, old);
    // Exactly at the limit is fine; an archive member over it is not.
    assert_eq!(put(&node, &sb, "max", vec![1u8; 1 << 20]).0, 201);
    let (code, _) = upload(
        &node,
        &sb,
        "t",
        tar_of(&[("big", &vec![0u8; (1 << 20) + 1])]),
    );
    assert_eq!(code, 413);
    let (_, l) = list(&node, &sb, "");
    assert_eq!(names(&l), ["keep.txt", "max", "t"], "{l}");
}

#[test]
fn symlinks_planted_in_the_sandbox_never_lead_outside_the_workspace() {
    let (node, sb) = sandbox(json!({}));
    // A host directory outside the workspace, with a secret the sandbox must not reach.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "host secret").unwrap();
    let out = outside.path().to_str().unwrap();
    // The sandbox plants links: absolute, relative `..`, a link to a link, a directory link
    // in the middle of a path, and one that stays inside (which works).
    let script = format!(
        "ln -s {out} abs && ln -s ../../../../../../../.. rel && ln -s {out}/secret file \
         && mkdir -p d/e && ln -s ../../.. d/e/up && ln -s abs chain && ln -s / root \
         && mkdir real && echo inside > real/f && ln -s real ok && mkfifo fifo"
    );
    let r = node.exec(&sb, &["sh", "-c", &script]);
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    let rel_secret = format!("rel{out}/secret");
    for path in [
        "abs/secret",
        "file",
        "chain/secret",
        "root/etc/hostname",
        &rel_secret,
        "d/e/up/../../../x",
    ] {
        let (code, body) = get(&node, &sb, path);
        assert!(code == 400 || code == 404, "{path}: {code}");
        assert_ne!(body, b"host secret", "{path}");
    }
    let (code, body) = get(&node, &sb, "abs/secret");
    assert_eq!(
        (code, code_of(&body).as_str()),
        (400, "path_escapes_workspace")
    );
    // Writes through them are refused and nothing appears outside.
    for path in [
        "abs/planted",
        "chain/planted",
        &format!("rel{out}/planted"),
        "abs/new/dir/planted",
        "d/e/up/x",
    ] {
        let (code, r) = put(&node, &sb, path, b"evil".to_vec());
        assert!(code == 400 || code == 409, "{path}: {code} {r}");
    }
    // `file` is a link to the secret: a PUT there replaces the link, never the target.
    assert_eq!(put(&node, &sb, "file", b"evil".to_vec()).0, 201);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "host secret"
    );
    let names_outside: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names_outside.len(), 1, "{names_outside:?}");
    // Listing or archiving through a link out is refused; links inside list as links.
    assert_eq!(list(&node, &sb, "abs").0, 400);
    let archive = http()
        .get(format!("{}?archive=tar", url(&node, &sb, "abs")))
        .send()
        .unwrap();
    assert_eq!(archive.status(), 400);
    let (_, l) = list(&node, &sb, "");
    let abs = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "abs")
        .unwrap()
        .clone();
    assert_eq!(
        (abs["type"].as_str(), abs["target"].as_str()),
        (Some("symlink"), Some(out))
    );
    // A FIFO is not read (nor waited on).
    assert_eq!(code_of(&get(&node, &sb, "fifo").1), "not_a_regular_file");
    // Links that stay inside work.
    assert_eq!(get(&node, &sb, "ok/f").1, b"inside\n");
    assert_eq!(put(&node, &sb, "ok/g", b"via link".to_vec()).0, 201);
    assert_eq!(node.exec(&sb, &["cat", "real/g"]).stdout, "via link");
    // Deleting a link to a directory outside removes the link only.
    let r = http().delete(url(&node, &sb, "abs")).send().unwrap();
    assert_eq!(r.status(), 204);
    assert!(outside.path().join("secret").exists());
    // A whole-tree archive sends links as links, never what is behind them.
    let resp = http()
        .get(format!(
            "{}/v1/sandboxes/{sb}/files?archive=tar",
            node.origin.url
        ))
        .send()
        .unwrap();
    let mut archive = tar::Archive::new(resp);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        assert_ne!(body, b"host secret");
    }
}

#[test]
fn a_directory_swapped_for_a_link_mid_request_never_leads_outside() {
    let (node, sb) = sandbox(json!({}));
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "host secret").unwrap();
    let out = outside.path().to_str().unwrap();
    // The sandbox swaps `swap` between a real directory and a link out, as fast as it can,
    // while the test reads and writes through it.
    // (Its own steps may fail when a write of the test lands in between: it carries on.)
    let script = format!(
        "i=0; while [ $i -lt 1000 ]; do rm -rf swap; mkdir swap && echo inside > swap/secret; \
         rm -rf swap; ln -s {out} swap; i=$((i+1)); done 2>/dev/null; echo done"
    );
    std::thread::scope(|s| {
        let racer = s.spawn(|| node.exec(&sb, &["sh", "-c", &script]));
        let mut tries = 0;
        while !racer.is_finished() && tries < 2000 {
            tries += 1;
            let (code, body) = get(&node, &sb, "swap/secret");
            assert_ne!(body, b"host secret", "read outside after {tries} tries");
            if code == 200 {
                assert!(b"inside\n".starts_with(&body), "{body:?}");
            }
            let _ = put(&node, &sb, "swap/planted", b"evil".to_vec());
        }
        let r = racer.join().unwrap();
        assert_eq!(r.stdout, "done\n", "{r:?}");
    });
    assert!(!outside.path().join("planted").exists());
}
