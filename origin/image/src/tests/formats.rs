//! Multi-layer images with whiteouts in all three formats, platform choice, config mapping.

use serde_json::json;

use super::*;
use crate::Format;

/// Three layers, one per compression: a whiteout, an opaque directory, a file outside the
/// runtime's root.
fn three_layers() -> Image {
    let l1 = tar_bytes(&[
        T::Dir("etc/"),
        T::File("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        T::Dir("opt/rt/bin/"),
        T::File("opt/rt/bin/tool", b"#!/bin/sh\necho tool\n"),
        T::File("opt/rt/lib/a.txt", b"a"),
        T::File("opt/rt/lib/b.txt", b"b"),
        T::File("opt/rt/share/old/1", b"1"),
    ]);
    let l2 = tar_bytes(&[
        T::File("opt/rt/lib/.wh.a.txt", b""),
        T::File("opt/rt/share/.wh..wh..opq", b""),
        T::File("opt/rt/share/new", b"new"),
    ]);
    let l3 = tar_bytes(&[
        T::File("./opt/rt/lib/c.txt", b"c"),
        T::Symlink("opt/rt/bin/link", "tool"),
    ]);
    Image::new(
        vec![Layer::gzip(l1), Layer::zstd(l2), Layer::tar(l3)],
        json!({"Env": ["PATH=/opt/rt/bin:/usr/bin:/bin", "LANG=C.UTF-8"], "WorkingDir": "/app",
               "User": "1000", "Cmd": ["tool"], "Labels": {}}),
    )
}

const EXPECTED: &[&str] = &[
    "bin/",
    "bin/link -> tool",
    "bin/tool",
    "lib/",
    "lib/b.txt",
    "lib/c.txt",
    "share/",
    "share/new",
];

#[test]
fn layers_apply_in_order_with_whiteouts_in_every_format() {
    let img = three_layers();
    let dir = layout(&img);
    let from_dir = ok(&request(dir.path(), prefix("/opt/rt")));
    assert_eq!(listing(&from_dir.packed.manifest), EXPECTED);
    assert_eq!(from_dir.image.format, Format::OciLayout);
    assert_eq!(from_dir.image.layers, 3);
    let meta = from_dir.packed.manifest.meta.as_ref().unwrap();
    assert_eq!(meta.prefix, "/opt/rt");
    assert_eq!(meta.env["PATH"], "/opt/rt/bin:/usr/bin:/bin");
    assert_eq!(meta.env["LANG"], "C.UTF-8");
    // Layer names carry the blobs' digests; the pack key is over them.
    assert!(
        meta.layers[0].starts_with("01-sha256-"),
        "{:?}",
        meta.layers
    );
    let unmapped = from_dir.unmapped.join("\n");
    for key in ["WorkingDir \"/app\"", "User \"1000\"", "Cmd [\"tool\"]"] {
        assert!(unmapped.contains(key), "{key} not reported: {unmapped}");
    }
    assert!(
        !unmapped.contains("Labels"),
        "empty fields are not noise: {unmapped}"
    );
    assert_eq!(from_dir.outside_root.top, ["etc"]);
    assert_eq!(from_dir.outside_root.entries, 2);

    // The same layout as an OCI archive: the same runtime, byte for byte.
    let archive = archive_of(dir.path());
    let from_archive = ok(&request(archive.path(), prefix("/opt/rt")));
    assert_eq!(from_archive.image.format, Format::OciArchive);
    assert_eq!(
        from_archive.packed.manifest.to_canonical_json(),
        from_dir.packed.manifest.to_canonical_json()
    );

    // `docker save` stores layers uncompressed: the same tree and files.
    let mut plain = img.clone();
    for l in &mut plain.layers {
        let tar = match l.media_type {
            m if m.ends_with("gzip") => {
                let mut v = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&l.stored[..]),
                    &mut v,
                )
                .unwrap();
                v
            }
            m if m.ends_with("zstd") => zstd::decode_all(&l.stored[..]).unwrap(),
            _ => l.stored.clone(),
        };
        *l = Layer::tar(tar);
    }
    let saved = docker_save(&plain, "example/rt:1");
    let from_docker = ok(&request(saved.path(), prefix("/opt/rt")));
    assert_eq!(from_docker.image.format, Format::DockerArchive);
    assert_eq!(from_docker.image.reference.as_deref(), Some("example/rt:1"));
    assert_eq!(
        from_docker.packed.manifest.entries,
        from_dir.packed.manifest.entries
    );

    // A gzip-compressed `docker save` archive (`docker save | gzip`) reads the same.
    let gzipped = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(gzipped.path(), gz(&std::fs::read(saved.path()).unwrap())).unwrap();
    let from_gz = ok(&request(gzipped.path(), prefix("/opt/rt")));
    assert_eq!(
        from_gz.packed.manifest.entries,
        from_dir.packed.manifest.entries
    );
}

#[test]
fn root_and_sidecar_shape_the_runtime() {
    let img = three_layers();
    let dir = layout(&img);
    // The whole filesystem, mounted at /runtime, with env and warm from the sidecar file.
    let side = tempfile::tempdir().unwrap();
    std::fs::write(
        side.path().join("lock.json"),
        br#"{"packages":[{"name":"tool","version":"1"}]}"#,
    )
    .unwrap();
    let toml = side.path().join("rt.prewarm.toml");
    std::fs::write(
        &toml,
        "root = \"/\"\nwarm = [[\"/runtime/opt/rt/bin/tool\"]]\nlock = \"lock.json\"\n[env]\nLANG = \"C\"\n",
    )
    .unwrap();
    let spec = Sidecar::read(&toml).unwrap().overlay(Sidecar::default());
    let p = ok(&request(dir.path(), spec));
    let l = listing(&p.packed.manifest);
    assert!(
        l.contains(&"etc/passwd".to_string()) && l.contains(&"opt/rt/lib/c.txt".to_string()),
        "{l:?}"
    );
    assert_eq!(p.root, "/");
    let meta = p.packed.manifest.meta.as_ref().unwrap();
    assert_eq!(meta.prefix, "/runtime");
    assert_eq!(meta.env["LANG"], "C", "the sidecar wins over the image");
    assert_eq!(meta.warm, [["/runtime/opt/rt/bin/tool"]]);
    assert_eq!(
        p.packed.manifest.lock.as_ref().unwrap().packages[0].name,
        "tool"
    );
    assert!(
        p.unmapped
            .iter()
            .any(|u| u.contains("PATH") && u.contains("not rewritten")),
        "{:?}",
        p.unmapped
    );

    // A root the image lacks, and a sidecar key that does not exist, are named.
    let e = err(&request(dir.path(), prefix("/opt/nothere")));
    assert!(
        e.to_string().contains("\"opt/nothere\" does not exist"),
        "{e}"
    );
    std::fs::write(&toml, "prefx = \"/x\"\n").unwrap();
    let e = Sidecar::read(&toml).unwrap_err();
    assert!(e.to_string().contains("prefx"), "{e}");
}

#[test]
fn platform_is_chosen_from_nested_indexes() {
    let amd = Image::new(
        vec![Layer::tar(tar_bytes(&[T::File("rt/arch", b"amd64")]))],
        json!({}),
    );
    let mut arm = Image::new(
        vec![Layer::tar(tar_bytes(&[T::File("rt/arch", b"arm64")]))],
        json!({}),
    );
    arm.arch = "arm64";
    // Docker 25's shape: index.json → an image index → per-platform manifests + an attestation.
    let dir = layout_with(|d| {
        let mut att = write_manifest(d, &amd);
        att["platform"] = json!({"os": "unknown", "architecture": "unknown"});
        let nested = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [write_manifest(d, &amd), write_manifest(d, &arm), att]});
        let (digest, size) = put_blob(d, &serde_json::to_vec(&nested).unwrap());
        vec![
            json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest.to_string(),
            "size": size, "annotations": {"io.containerd.image.name": "docker.io/library/rt:1"}}),
        ]
    });
    let arch_of = |p: &Prepared| {
        let (_, _, d, _) = p.packed.manifest.files().next().unwrap();
        *d
    };
    let mut req = request(dir.path(), prefix("/rt"));
    let amd64 = ok(&req);
    assert_eq!(arch_of(&amd64), Digest::of(b"amd64"));
    assert_eq!(
        amd64.image.reference.as_deref(),
        Some("docker.io/library/rt:1")
    );
    req.platform = "linux/arm64".parse().unwrap();
    req.reference = Some("rt:1".into());
    assert_eq!(arch_of(&ok(&req)), Digest::of(b"arm64"));
    req.platform = "linux/riscv64".parse().unwrap();
    let e = err(&req).to_string();
    assert!(
        e.contains("no manifest for platform linux/riscv64") && e.contains("linux/arm64"),
        "{e}"
    );
    req.platform = Platform::host();
    req.reference = Some("other:2".into());
    assert!(err(&req).to_string().contains("no image named \"other:2\""));

    // A single-platform image for another machine is refused, naming both platforms.
    let only_arm = layout_with(|d| {
        let mut m = write_manifest(d, &arm);
        m.as_object_mut().unwrap().remove("platform");
        vec![m]
    });
    let e = err(&request(only_arm.path(), prefix("/rt"))).to_string();
    assert!(
        e.contains("the image is for linux/arm64, not linux/amd64"),
        "{e}"
    );
}
