//! Content coding: blocks and manifests travel zstd-compressed when asked, and a pull refuses a
//! body in a coding it cannot trust.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use prewarm_shared::Digest;
use prewarm_tests::{cli, http, pull_json, push_json, tree_snapshot, Origin};

/// Compressible text files (Python-like sources) and one incompressible file, whose block
/// goes out as it is.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("lib/pkg")).unwrap();
    for i in 0..200 {
        std::fs::write(
            root.join(format!("lib/pkg/mod{i:03}.py")),
            format!("def f{i}(x):\n    return x * {i}  # prewarm\n").repeat(40 + i % 9),
        )
        .unwrap();
    }
    let mut noise = Vec::with_capacity(300 << 10);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    while noise.len() < (300 << 10) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(root.join("lib/noise.bin"), &noise).unwrap();
    std::fs::set_permissions(root.join("lib"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The distinct blocks a manifest references.
fn blocks_of(manifest: &serde_json::Value) -> Vec<String> {
    let mut blocks: Vec<String> = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["chunks"].as_array())
        .flatten()
        .map(|c| c["block"].as_str().unwrap().to_string())
        .collect();
    blocks.sort();
    blocks.dedup();
    blocks
}

/// Pushes the tree; returns (manifest digest, manifest JSON).
fn publish(work: &Path, origin: &Origin) -> (String, serde_json::Value) {
    let src = work.join("src");
    make_tree(&src);
    let pushed = push_json(&src, "zt:v1", &origin.url);
    let digest = pushed["digest"].as_str().unwrap().to_string();
    let manifest = http()
        .get(format!("{}/v1/manifests/{digest}", origin.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    (digest, manifest)
}

#[test]
fn objects_travel_zstd_encoded_when_asked_and_identity_otherwise() {
    let work = tempfile::tempdir().unwrap();
    let origin = Origin::start(&work.path().join("data"), &[]);
    let (manifest_digest, manifest) = publish(work.path(), &origin);
    let c = http();
    let mut encoded_blocks = 0;
    for block in blocks_of(&manifest) {
        let url = format!("{}/v1/blocks/{block}", origin.url);
        let plain = c.get(&url).send().unwrap();
        assert_eq!(plain.headers()["vary"], "accept-encoding");
        assert!(plain.headers().get("content-encoding").is_none());
        let plain = plain.bytes().unwrap();

        let r = c
            .get(&url)
            .header("accept-encoding", "zstd")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["vary"], "accept-encoding");
        let coded = r.headers().get("content-encoding").is_some();
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let length: usize = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = r.bytes().unwrap();
        assert_eq!(body.len(), length);
        let decoded = if coded {
            encoded_blocks += 1;
            assert_eq!(
                etag,
                format!("W/\"{block}\""),
                "encoded bodies carry a weak ETag"
            );
            assert!(body.len() < plain.len());
            zstd::decode_all(&body[..]).unwrap()
        } else {
            assert_eq!(etag, format!("\"{block}\""));
            body.to_vec()
        };
        assert_eq!(Digest::of(&decoded).to_string(), block);
        assert_eq!(decoded, plain);

        // `zstd;q=0` is a no; a range is always identity; HEAD reports identity.
        let r = c
            .get(&url)
            .header("accept-encoding", "gzip, zstd;q=0")
            .send()
            .unwrap();
        assert!(r.headers().get("content-encoding").is_none());
        let r = c
            .get(&url)
            .header("accept-encoding", "zstd")
            .header("range", "bytes=0-99")
            .send()
            .unwrap();
        assert_eq!(r.status(), 206);
        assert!(r.headers().get("content-encoding").is_none());
        assert_eq!(r.headers()["vary"], "accept-encoding");
        assert_eq!(r.bytes().unwrap().as_ref(), &plain[..100]);
        let r = c
            .head(&url)
            .header("accept-encoding", "zstd")
            .send()
            .unwrap();
        assert!(r.headers().get("content-encoding").is_none());
        assert_eq!(
            r.headers()["content-length"],
            plain.len().to_string().as_str()
        );
        assert_eq!(r.headers()["vary"], "accept-encoding");
        // The weak ETag revalidates.
        let r = c
            .get(&url)
            .header("accept-encoding", "zstd")
            .header("if-none-match", format!("W/\"{block}\""))
            .send()
            .unwrap();
        assert_eq!(r.status(), 304);
        assert_eq!(r.headers()["vary"], "accept-encoding");
    }
    assert!(encoded_blocks > 0, "the text blocks compress");

    // The manifest is JSON full of paths: it compresses too.
    let url = format!("{}/v1/manifests/{manifest_digest}", origin.url);
    let r = c
        .get(&url)
        .header("accept-encoding", "zstd")
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "zstd");
    let decoded = zstd::decode_all(&r.bytes().unwrap()[..]).unwrap();
    assert_eq!(Digest::of(&decoded).to_string(), manifest_digest);
}

#[test]
fn pulls_with_zstd_get_the_exact_tree_for_fewer_wire_bytes() {
    let work = tempfile::tempdir().unwrap();
    let origin = Origin::start(&work.path().join("data"), &[]);
    let (digest, _) = publish(work.path(), &origin);
    let zstd_into = work.path().join("zstd");
    let zstd = pull_json(
        &digest,
        &origin.url,
        &zstd_into,
        &work.path().join("cache-zstd"),
        &["--compress", "zstd"],
    );
    let plain_into = work.path().join("plain");
    let plain = pull_json(
        &digest,
        &origin.url,
        &plain_into,
        &work.path().join("cache-plain"),
        &["--compress", "never"],
    );
    assert_eq!(
        tree_snapshot(&zstd_into, 0o777),
        tree_snapshot(&plain_into, 0o777)
    );
    let (wire, content) = (
        zstd["bytes_on_wire"].as_u64().unwrap(),
        zstd["bytes_downloaded"].as_u64().unwrap(),
    );
    assert!(wire < content / 2, "zstd: {wire} on the wire for {content}");
    assert_eq!(content, plain["bytes_downloaded"].as_u64().unwrap());
    assert_eq!(plain["bytes_on_wire"], plain["bytes_downloaded"]);
    // `auto` on a loopback origin does not ask.
    let auto = pull_json(
        &digest,
        &origin.url,
        &work.path().join("auto"),
        &work.path().join("cache-auto"),
        &[],
    );
    assert_eq!(auto["bytes_on_wire"], auto["bytes_downloaded"]);
}

/// What the misbehaving upstream sends for a block.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// `Content-Encoding: zstd` with a body that decodes to 64 MiB of zeros.
    Bomb,
    /// The right bytes, labelled with a coding nobody asked for.
    Brotli,
}

/// A canned upstream: manifests from the real origin, blocks as `how` says. One request per
/// connection.
fn misbehaving_upstream(origin: &str, how: Misbehaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let origin = origin.to_string();
    let zeros = std::io::Read::take(std::io::repeat(0), 64 << 20);
    let bomb = zstd::stream::encode_all(zeros, 19).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
            let real = http().get(format!("{origin}{path}")).send().unwrap();
            let status = real.status().as_u16();
            let real = real.bytes().unwrap().to_vec();
            let (coding, body) = match (path.starts_with("/v1/blocks/"), how) {
                (false, _) => (None, real),
                (true, Misbehaviour::Bomb) => (Some("zstd"), bomb.clone()),
                (true, Misbehaviour::Brotli) => (Some("br"), real),
            };
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            if let Some(c) = coding {
                head.push_str(&format!("content-encoding: {c}\r\n"));
            }
            head.push_str("\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    url
}

/// Regular files anywhere under `dir`.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn bombs_and_unknown_codings_are_refused_naming_the_block_and_nothing_is_cached() {
    let work = tempfile::tempdir().unwrap();
    let origin = Origin::start(&work.path().join("data"), &[]);
    let (digest, _) = publish(work.path(), &origin);
    for (how, says) in [
        (Misbehaviour::Bomb, "zstd bomb"),
        (Misbehaviour::Brotli, "unsupported Content-Encoding \"br\""),
    ] {
        let upstream = misbehaving_upstream(&origin.url, how);
        let cache = work.path().join(format!("cache-{says}"));
        let into = work.path().join(format!("rt-{says}"));
        let out = cli(&[
            "pull",
            &digest,
            "--from",
            &upstream,
            "--into",
            into.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--compress",
            "zstd",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{says}: pull succeeded");
        assert!(stderr.contains(says), "{says}: {stderr}");
        assert!(
            stderr.contains("could not fetch block sha256:"),
            "the error names the block: {stderr}"
        );
        assert!(!into.exists());
        assert_eq!(
            files_under(&cache.join("files-v1")),
            Vec::<String>::new(),
            "{says}: nothing cached"
        );
    }
}

/// A fleet of hosts asks for the same blocks: each is compressed once per origin, and an
/// object that does not compress is not tried again. Same bytes either way.
#[test]
fn each_object_is_compressed_once_and_reused() {
    let work = tempfile::tempdir().unwrap();
    let origin = Origin::start(&work.path().join("data"), &[]);
    let (_, manifest) = publish(work.path(), &origin);
    let blocks = blocks_of(&manifest);
    let c = http();
    let zstd_get = |block: &str| {
        let r = c
            .get(format!("{}/v1/blocks/{block}", origin.url))
            .header("accept-encoding", "zstd")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let coding = r
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        (coding, r.bytes().unwrap())
    };
    let zstd_counters = || {
        let m: serde_json::Value = c
            .get(format!("{}/metrics", origin.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        (
            m["zstd"]["compressed"].as_u64().unwrap(),
            m["zstd"]["reused"].as_u64().unwrap(),
        )
    };
    let first: Vec<_> = blocks.iter().map(|b| zstd_get(b)).collect();
    assert!(first
        .iter()
        .any(|(coding, _)| coding.as_deref() == Some("zstd")));
    assert!(
        first.iter().any(|(coding, _)| coding.is_none()),
        "the noise block stays identity"
    );
    assert_eq!(zstd_counters(), (blocks.len() as u64, 0));
    for (block, before) in blocks.iter().zip(&first) {
        assert_eq!(
            &zstd_get(block),
            before,
            "block {block}: same answer from the kept result"
        );
    }
    assert_eq!(zstd_counters(), (blocks.len() as u64, blocks.len() as u64));
}

/// Blocks that compress extremely well (4 MiB of zeros, 4 MiB of JSON schemas: exact multiples
/// of zstd's 128 KiB block), blocks that don't, and mixes, in every size class, pull zstd-coded
/// and land byte-exact. A pull once failed on the first kind with "ends in the middle of a frame".
#[test]
fn zstd_pulls_of_blocks_of_every_kind_and_size_are_exact() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    prewarm_tests::blocks::write_awkward_tree(&src);
    let origin = Origin::start(&work.path().join("data"), &[]);
    let pushed = push_json(&src, "awkward:v1", &origin.url);
    let into = work.path().join("rt");
    let pulled = pull_json(
        "awkward:v1",
        &origin.url,
        &into,
        &work.path().join("cache"),
        &["--compress", "zstd"],
    );
    assert_eq!(pulled["digest"], pushed["digest"]);
    assert_eq!(tree_snapshot(&src, 0o555), tree_snapshot(&into, 0o555));
    let (wire, content) = (
        pulled["bytes_on_wire"].as_u64().unwrap(),
        pulled["bytes_downloaded"].as_u64().unwrap(),
    );
    assert!(wire < content / 2, "zstd: {wire} on the wire for {content}");
}
