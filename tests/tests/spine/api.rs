//! The origin HTTP API: headers, ranges, errors, auth. In-process, through `app(state)`: these
//! need no binary.

use prewarm_shared::Digest;
use prewarm_tests::in_process::InProcess as Origin;
use prewarm_tests::{error_code, http};

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
    // Weak comparison (RFC 9110), lists and `*`, decided by the rule the edge uses too.
    for field in [
        format!("W/\"{d}\""),
        format!("\"sha256:{}\", \"{d}\"", "0".repeat(64)),
        "*".into(),
    ] {
        let r = c.get(&url).header("if-none-match", &field).send().unwrap();
        assert_eq!(r.status(), 304, "{field}");
        assert!(r.bytes().unwrap().is_empty());
    }
    let other = format!("\"sha256:{}\"", "0".repeat(64));
    let r = c.get(&url).header("if-none-match", other).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), &bytes[..]);
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
    // Too large: refused from the declared length, before any body byte is read or stored.
    // (A raw request, so the test reads the answer instead of racing the server's early close.)
    let big_d = Digest::of(&vec![7u8; (8 << 20) + 1]);
    let status_line = {
        use std::io::{BufRead, Write};
        let addr = origin.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "PUT /v1/blocks/{big_d} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
            (8 << 20) + 1
        )
        .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        line
    };
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
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
