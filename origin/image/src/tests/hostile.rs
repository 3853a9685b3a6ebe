//! Hostile images: refused by name, with nothing kept.

use serde_json::json;

use super::*;

fn one_layer(records: &[T<'_>]) -> Image {
    Image::new(vec![Layer::gzip(tar_bytes(records))], json!({}))
}

fn refuses(img: &Image, code: &str, names: &[&str]) {
    let dir = layout(img);
    let e = err(&request(dir.path(), prefix("/opt/rt")));
    let msg = e.to_string();
    assert_eq!(e.code(), code, "{msg}");
    for n in names {
        assert!(msg.contains(n), "{n:?} not in: {msg}");
    }
}

#[test]
fn layer_entries_that_escape_are_refused_by_name() {
    refuses(
        &one_layer(&[T::File("opt/rt/../../etc/evil", b"x")]),
        "bad_entry",
        &["layer #1 sha256:", "opt/rt/../../etc/evil"],
    );
    refuses(
        &one_layer(&[T::File("/etc/evil", b"x")]),
        "bad_entry",
        &["/etc/evil"],
    );
    // A symlink, then a write beneath it in a later layer.
    let img = Image::new(
        vec![
            Layer::tar(tar_bytes(&[T::Symlink("opt/rt/lnk", "/etc")])),
            Layer::zstd(tar_bytes(&[T::File("opt/rt/lnk/evil", b"x")])),
        ],
        json!({}),
    );
    refuses(
        &img,
        "bad_entry",
        &["layer #2", "opt/rt/lnk/evil", "beneath symlink"],
    );
    // Whiteouts that point outside the tree.
    refuses(
        &one_layer(&[T::File("opt/rt/.wh...", b"")]),
        "bad_entry",
        &["opt/rt/.wh...", "unsafe"],
    );
    refuses(
        &one_layer(&[T::File(".wh...", b"")]),
        "bad_entry",
        &[".wh..."],
    );
}

#[test]
fn digests_that_do_not_match_are_refused() {
    let good = Image::new(
        vec![Layer::tar(tar_bytes(&[T::File("opt/rt/f", b"good")]))],
        json!({}),
    );
    // A layer blob whose bytes are not the digest it is filed and described under.
    let dir = layout(&good);
    let blob = dir
        .path()
        .join("blobs/sha256")
        .join(Digest::of(&good.layers[0].stored).hex());
    // Same size, so the descriptor's size check passes and the digest is what catches it.
    std::fs::write(&blob, tar_bytes(&[T::File("opt/rt/f", b"evil")])).unwrap();
    let mut req = request(dir.path(), prefix("/opt/rt"));
    let e = err(&req);
    assert_eq!(e.code(), "digest_mismatch", "{e}");
    assert!(
        e.to_string().contains("layer #1") && e.to_string().contains("archive has digest"),
        "{e}"
    );
    // Right blob, wrong diff_id in the config.
    let mut bad_diff = good.clone();
    bad_diff.layers[0].diff_id = Digest::of(b"not this tar");
    let dir = layout(&bad_diff);
    req.image = dir.path().to_path_buf();
    let e = err(&req);
    assert_eq!(e.code(), "digest_mismatch");
    assert!(e.to_string().contains("diff_id"), "{e}");

    // A tampered config and a tampered manifest: the blob no longer hashes to its name.
    for what in ["config", "manifest"] {
        let dir = layout(&good);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        let manifest_digest: Digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let mpath = dir.path().join("blobs/sha256").join(manifest_digest.hex());
        let target = if what == "manifest" {
            mpath
        } else {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
            let c: Digest = m["config"]["digest"].as_str().unwrap().parse().unwrap();
            dir.path().join("blobs/sha256").join(c.hex())
        };
        let mut bytes = std::fs::read(&target).unwrap();
        let at = bytes.iter().position(|b| *b == b'"').unwrap();
        bytes[at] = b' ';
        std::fs::write(&target, &bytes).unwrap();
        req.image = dir.path().to_path_buf();
        let e = err(&req);
        assert_eq!(e.code(), "digest_mismatch", "{what}: {e}");
        assert!(e.to_string().starts_with(what), "{e}");
    }
}

#[test]
fn bombs_stop_at_the_limits() {
    // 64 MiB of zeros in a layer of a few KiB.
    let zeros = vec![0u8; 64 << 20];
    let img = one_layer(&[T::File("opt/rt/zeros", &zeros)]);
    assert!(img.layers[0].stored.len() < 1 << 20);
    let dir = layout(&img);
    let mut req = request(dir.path(), prefix("/opt/rt"));
    req.limits.max_total_bytes = 16 << 20;
    let e = err(&req);
    assert_eq!(e.code(), "limit_exceeded", "{e}");
    assert!(e.to_string().contains("opt/rt/zeros"), "{e}");
    // A compressed archive that decompresses past the limit stops there too.
    let saved = docker_save(
        &Image::new(
            vec![Layer::tar(tar_bytes(&[T::File("opt/rt/zeros", &zeros)]))],
            json!({}),
        ),
        "b:1",
    );
    let gzipped = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(gzipped.path(), gz(&std::fs::read(saved.path()).unwrap())).unwrap();
    req.image = gzipped.path().to_path_buf();
    let e = err(&req);
    assert!(e.to_string().contains("decompresses to more than"), "{e}");
}

#[test]
fn archives_naming_outside_themselves_are_refused() {
    // A `docker save` manifest naming a layer outside the archive.
    let img = one_layer(&[T::File("opt/rt/f", b"x")]);
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut b = tar::Builder::new(f.reopen().unwrap());
    let config = img.config_bytes();
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add(&config_name, &config);
    add(
        "manifest.json",
        serde_json::to_string(&json!([{"Config": config_name, "Layers": ["../../etc/shadow"]}]))
            .unwrap()
            .as_bytes(),
    );
    b.finish().unwrap();
    let e = err(&request(f.path(), prefix("/opt/rt")));
    assert_eq!(e.code(), "bad_image", "{e}");
    assert!(e.to_string().contains("../../etc/shadow"), "{e}");

    // An archive member with an escaping name is refused while indexing.
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut b = tar::Builder::new(f.reopen().unwrap());
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
    h.set_size(1);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    b.finish().unwrap();
    let e = err(&request(f.path(), prefix("/opt/rt")));
    assert!(
        e.to_string().contains("\"../escape\"") && e.to_string().contains("unsafe name"),
        "{e}"
    );
}
