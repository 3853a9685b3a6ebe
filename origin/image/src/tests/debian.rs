//! A real-shaped image: this machine's own Debian packages as layers, as a Debian base image is built.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::*;

/// A package's files as dpkg lists them, with merged-/usr aliases (`/bin/sh`) resolved to
/// where they are (`usr/bin/sh`), as Debian images store them.
fn package_paths(pkg: &str) -> Vec<String> {
    let list = ["", ":amd64", ":arm64"]
        .iter()
        .map(|a| format!("/var/lib/dpkg/info/{pkg}{a}.list"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("Debian package {pkg} is not installed"));
    let mut out = Vec::new();
    for line in std::fs::read_to_string(list).unwrap().lines() {
        let p = Path::new(line);
        let Some(parent) = p.parent().and_then(|d| std::fs::canonicalize(d).ok()) else {
            continue;
        };
        let real = parent.join(p.file_name().unwrap_or_default());
        if std::fs::symlink_metadata(&real).is_ok() && real != Path::new("/") {
            out.push(real.to_string_lossy().trim_start_matches('/').to_string());
        }
    }
    out
}

/// A layer of these packages' files read from this machine, and each regular file's digest.
fn layer_of(pkgs: &[&str], extra: &[T<'_>]) -> (Vec<u8>, BTreeMap<String, Digest>) {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut files = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut paths: Vec<String> = pkgs.iter().flat_map(|p| package_paths(p)).collect();
    paths.sort();
    for rel in paths {
        if !seen.insert(rel.clone()) {
            continue;
        }
        let host = Path::new("/").join(&rel);
        let md = std::fs::symlink_metadata(&host).unwrap();
        b.append_path_with_name(&host, &rel).unwrap();
        if md.is_file() {
            files.insert(rel, Digest::of(&std::fs::read(&host).unwrap()));
        }
    }
    let mut tar = b.into_inner().unwrap();
    // Drop the end-of-archive marker to append the extra records.
    tar.truncate(tar.len() - 1024);
    let extra = tar_bytes(extra);
    tar.extend_from_slice(&extra);
    (tar, files)
}

#[test]
fn debian_package_set_imports_file_for_file() {
    // Layer 1 as a Debian base image: merged-/usr links, small packages, many zoneinfo files.
    // All Essential or required on Debian; tzdata (many small files and links) where present.
    let mut pkgs = vec!["base-files", "dash", "sed", "grep", "mawk"];
    if Path::new("/var/lib/dpkg/info/tzdata.list").exists() {
        pkgs.push("tzdata");
    }
    let (base, mut files) = layer_of(
        &pkgs,
        &[
            T::Symlink("bin", "usr/bin"),
            T::Symlink("sbin", "usr/sbin"),
            T::Symlink("lib", "usr/lib"),
        ],
    );
    // Layer 2 like `apt-get install bash`; layer 3 like a slimming `rm -rf` step.
    let (bash, bash_files) = layer_of(&["bash"], &[]);
    files.extend(bash_files);
    let slim = tar_bytes(&[
        T::File("usr/share/doc/.wh..wh..opq", b""),
        T::File("usr/share/.wh.man", b""),
        T::File("etc/image-release", b"slim\n"),
    ]);
    files.retain(|p, _| !p.starts_with("usr/share/doc/") && !p.starts_with("usr/share/man/"));
    files.insert("etc/image-release".into(), Digest::of(b"slim\n"));
    let img = Image::new(
        vec![Layer::gzip(base), Layer::gzip(bash), Layer::tar(slim)],
        json!({"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["bash"]}),
    );
    let dir = layout(&img);
    let mut spec = prefix("/runtime");
    spec.root = Some("/".into());
    let p = ok(&request(dir.path(), spec));
    let m = &p.packed.manifest;
    let got: BTreeMap<String, Digest> = m
        .files()
        .map(|(path, _, d, _)| (path.to_string(), *d))
        .collect();
    assert_eq!(got.len(), files.len(), "file count");
    assert_eq!(got, files, "every file, byte for byte");
    let l = listing(m);
    assert!(l.contains(&"bin -> usr/bin".to_string()));
    assert!(
        l.contains(&"usr/share/doc/".to_string()),
        "the opaque dir stays, emptied"
    );
    assert!(!l
        .iter()
        .any(|e| e.starts_with("usr/share/doc/") && e != "usr/share/doc/"));
    assert!(!l.iter().any(|e| e.starts_with("usr/share/man")));
    // Symlinks the packages ship survive (grep's and sed's man-page and binary aliases, zoneinfo).
    assert!(
        l.iter().filter(|e| e.contains(" -> ")).count() > 3,
        "symlinks: {l:?}"
    );
    assert!(p.unmapped.iter().any(|u| u.starts_with("Cmd")));
    assert_eq!(
        m.meta.as_ref().unwrap().env["PATH"],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
}
