//! Hostile input: escaping layers, bombs, corrupt blocks on the origin.

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

/// A raw connection to the origin, with a generous read timeout so a broken server fails the
/// test instead of hanging it.
fn raw_connection(origin: &Origin) -> std::net::TcpStream {
    let addr = origin.url.trim_start_matches("http://");
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    s
}

/// Reads until the server closes the connection; what it sent.
fn read_until_closed(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server kept the connection: {e}"),
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn a_client_stalling_in_its_headers_is_cut_off_and_the_connection_cap_holds() {
    use std::io::Read;
    let work = tempfile::tempdir().unwrap();
    let origin = Origin::start(
        &work.path().join("data"),
        &[
            "--http-header-timeout-ms",
            "300",
            "--http-max-connections",
            "2",
        ],
    );
    // Half a request line, then nothing: disconnected after the header timeout.
    let mut half = raw_connection(&origin);
    half.write_all(b"GET /heal").unwrap();
    let said = read_until_closed(&mut half);
    assert!(
        said.is_empty() || said.starts_with("HTTP/1.1 408"),
        "{said}"
    );

    // Two requests in flight (headers sent, body awaited) hold both connections: a third is
    // not served until one of them closes; then it is, and the origin answers as before.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut s = raw_connection(&origin);
            s.write_all(
                b"POST /v1/blocks/missing HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
            )
            .unwrap();
            s
        })
        .collect();
    let mut third = raw_connection(&origin);
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(std::time::Duration::from_millis(1000)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = third.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "served past the cap: {early:?}"
    );
    drop(held);
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let answer = read_until_closed(&mut third);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let r = http()
        .get(format!("{}/healthz", origin.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn names_no_host_can_create_are_refused_at_push_and_at_the_origin_naming_the_path() {
    let work = tempfile::tempdir().unwrap();
    let origin = Origin::start(&work.path().join("data"), &[]);
    let long_name = format!("lib/{}", "n".repeat(300));
    let deep = vec!["d".repeat(250); 20].join("/") + "/f";
    for (label, path, limit) in [("component", &long_name, "255"), ("path", &deep, "4095")] {
        let pack = work.path().join(label);
        let files: prewarm_tests::LayerEntries = vec![(path.as_str(), b"x", 0o644)];
        prewarm_tests::write_pack(&pack, "long", &[("base", files)], serde_json::json!({}));
        let out = cli(&[
            "push",
            pack.to_str().unwrap(),
            "--name",
            "long:v1",
            "--to",
            &origin.url,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{label}: push must fail");
        assert!(
            stderr.contains(&path[..40]) && stderr.contains(limit),
            "{label}: error must name the path and the limit: {stderr}"
        );
    }
    // A hand-made manifest with such a path is refused by the origin too.
    let manifest = format!(
        r#"{{"schema":"prewarm.snapshot.v1","entries":[{{"type":"dir","path":"{}","mode":493}}]}}"#,
        "z".repeat(300)
    );
    let digest = prewarm_shared::Digest::of(manifest.as_bytes());
    let r = http()
        .put(format!("{}/v1/manifests/{digest}", origin.url))
        .body(manifest)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    assert!((400..500).contains(&status), "{status}: {body}");
    assert!(body.contains("255"), "{body}");
}

#[test]
fn a_connection_with_nothing_in_flight_is_closed_after_the_idle_timeout() {
    let work = tempfile::tempdir().unwrap();
    let origin = Origin::start(
        &work.path().join("data"),
        &["--http-idle-timeout-secs", "1"],
    );
    // An HTTP/2 (h2c) connection opened and then left silent: no header timeout applies to
    // it, only the idle timeout.
    let mut h2 = raw_connection(&origin);
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    read_until_closed(&mut h2);
    // The origin still serves.
    let r = http()
        .get(format!("{}/healthz", origin.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
