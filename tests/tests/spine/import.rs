//! `prewarm import` through the binary: a `docker save` archive becomes a runtime that pulls,
//! and a second image sharing a layer uploads only what is new.

use std::path::Path;

use prewarm_shared::Digest;
use prewarm_tests::{cli, cli_json, http, pull_json, Origin};
use serde_json::json;

/// A tar layer of `files` (path, bytes).
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        // Names written raw: the tar crate would refuse the hostile one itself.
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes a `docker save` archive (Docker before 25: `<config>.json`, `<id>/layer.tar`).
fn docker_save(path: &Path, tag: &str, layers: &[Vec<u8>], env: &[&str]) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": env, "Entrypoint": ["/opt/app/bin/run"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| Digest::of(l).to_string()).collect::<Vec<_>>()},
    }))
    .unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    let config_name = format!("{}.json", Digest::of(&config).hex());
    add(&config_name, &config);
    let mut names = Vec::new();
    for l in layers {
        let name = format!("{}/layer.tar", Digest::of(l).hex());
        add(&name, l);
        names.push(name);
    }
    add(
        "manifest.json",
        &serde_json::to_vec(&json!([{"Config": config_name, "RepoTags": [tag], "Layers": names}]))
            .unwrap(),
    );
    b.finish().unwrap();
}

#[test]
fn an_imported_image_pulls_and_a_second_one_uploads_only_its_new_layer() {
    let work = tempfile::tempdir().unwrap();
    // A 3 MiB "runtime" layer both images share, then a small app layer each.
    let big: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let base = layer(&[
        ("opt/app/lib/runtime.so", &big),
        ("etc/hostname", b"builder\n"),
    ]);
    let a = work.path().join("a.tar");
    docker_save(
        &a,
        "app:1",
        &[
            base.clone(),
            layer(&[("opt/app/bin/run", b"#!/bin/sh\necho one\n")]),
        ],
        &["PATH=/opt/app/bin:/usr/bin:/bin"],
    );
    let b = work.path().join("b.tar");
    docker_save(
        &b,
        "app:2",
        &[
            base,
            layer(&[("opt/app/bin/run", b"#!/bin/sh\necho two\n")]),
        ],
        &["PATH=/opt/app/bin:/usr/bin:/bin"],
    );
    let store = work.path().join("store");
    let to = store.to_str().unwrap();
    let first = cli_json(&[
        "import",
        a.to_str().unwrap(),
        "--name",
        "app:1",
        "--to",
        to,
        "--prefix",
        "/opt/app",
        "--json",
    ]);
    assert_eq!(first["image"]["format"], "docker_archive");
    assert_eq!(first["outside_root"]["top"], json!(["etc"]));
    assert!(
        first["unmapped"][0]
            .as_str()
            .unwrap()
            .starts_with("Entrypoint"),
        "{first}"
    );
    let second = cli_json(&[
        "import",
        b.to_str().unwrap(),
        "--name",
        "app:2",
        "--to",
        to,
        "--prefix",
        "/opt/app",
        "--json",
    ]);
    // Only the changed file's block travels: the shared layer's blocks are already stored.
    assert!(
        second["bytes_uploaded"].as_u64().unwrap() < 4096,
        "{second}"
    );
    assert!(second["bytes_total"].as_u64().unwrap() > 3 << 20);

    let origin = Origin::start(&store, &[]);
    let into = work.path().join("rt");
    pull_json("app:2", &origin.url, &into, &work.path().join("cache"), &[]);
    assert_eq!(
        std::fs::read(into.join("bin/run")).unwrap(),
        b"#!/bin/sh\necho two\n"
    );
    assert_eq!(
        std::fs::read(into.join("lib/runtime.so")).unwrap().len(),
        3 << 20
    );
    let m: serde_json::Value = http()
        .get(format!(
            "{}/v1/manifests/{}",
            origin.url,
            second["digest"].as_str().unwrap()
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(m["meta"]["prefix"], "/opt/app");
    assert_eq!(m["meta"]["env"]["PATH"], "/opt/app/bin:/usr/bin:/bin");

    // A hostile image fails with the entry named, and tags nothing.
    let evil = work.path().join("evil.tar");
    docker_save(
        &evil,
        "evil:1",
        &[layer(&[(
            "opt/app/../../../etc/cron.d/x",
            b"* * * * * root sh",
        )])],
        &[],
    );
    let out = cli(&[
        "import",
        evil.to_str().unwrap(),
        "--name",
        "evil:1",
        "--to",
        to,
        "--prefix",
        "/opt/app",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("opt/app/../../../etc/cron.d/x"), "{err}");
    assert_eq!(
        http()
            .get(format!("{}/v1/runtimes/evil/tags/1", origin.url))
            .send()
            .unwrap()
            .status(),
        404
    );
}
