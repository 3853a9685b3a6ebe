//! Push and pull round trips: exact trees, hard links, new versions, packs with layers.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use prewarm_tests::{cli, http, pull_json, push_json, tree_snapshot, write_pack, Origin};

/// The tree with exact permission bits.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    tree_snapshot(root, 0o777)
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
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn a_directory_round_trips_exactly_by_hard_links() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let origin = Origin::start(&work.path().join("data"), &[]);
    let pushed = push_json(&src, "tree:v1", &origin.url);
    assert_eq!(pushed["files"], 305);
    assert!(
        pushed["blocks_total"].as_u64().unwrap() < 100,
        "small files are bundled: {pushed}"
    );
    assert_eq!(pushed["blocks_uploaded"], pushed["blocks_total"]);

    let into = work.path().join("rt");
    let cache = work.path().join("cache");
    let pulled = pull_json("tree:v1", &origin.url, &into, &cache, &[]);
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
    let again = pull_json(
        pushed["digest"].as_str().unwrap(),
        &origin.url,
        &into2,
        &cache,
        &[],
    );
    assert_eq!(again["bytes_downloaded"], 0);
    assert_eq!(again["blocks_downloaded"], 0);
    assert_eq!(snapshot(&into), snapshot(&into2));

    // Copy mode gives exact permission bits.
    let into3 = work.path().join("rt3");
    let copied = pull_json(
        "tree:v1",
        &origin.url,
        &into3,
        &cache,
        &["--link-mode", "copy"],
    );
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
    push_json(&src, "tree:v1", &origin.url);
    let cache = work.path().join("cache");
    pull_json("tree:v1", &origin.url, &work.path().join("v1"), &cache, &[]);

    let changed = vec![b'z'; 300_000];
    std::fs::write(src.join("lib/changed.bin"), &changed).unwrap();
    let v2 = push_json(&src, "tree:v2", &origin.url);
    assert_eq!(
        v2["bytes_uploaded"], 300_000,
        "push uploads only the new content: {v2}"
    );
    let pulled = pull_json("tree:v2", &origin.url, &work.path().join("v2"), &cache, &[]);
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
    let pushed = push_json(&pack, "demo:v1", store.to_str().unwrap());
    assert!(pushed["pack_key"]
        .as_str()
        .unwrap()
        .starts_with("runtime-pack:v1:"));
    let origin = Origin::start(&store, &[]);
    let into = work.path().join("rt");
    pull_json("demo:v1", &origin.url, &into, &work.path().join("c"), &[]);
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

#[test]
fn cache_prune_frees_only_what_no_pulled_tree_links_to() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let origin = Origin::start(&work.path().join("data"), &[]);
    push_json(&src, "tree:v1", &origin.url);
    let cache = work.path().join("cache");
    let (one, two) = (work.path().join("one"), work.path().join("two"));
    let first = pull_json("tree:v1", &origin.url, &one, &cache, &[]);
    pull_json("tree:v1", &origin.url, &two, &cache, &[]);
    let prune = || {
        let out = cli(&[
            "cache",
            "prune",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    std::fs::remove_dir_all(&one).unwrap();
    assert_eq!(prune()["files_removed"], 0, "`two` still links every file");
    assert_eq!(without_write_bits(snapshot(&src)), snapshot(&two));
    std::fs::remove_dir_all(&two).unwrap();
    let freed = prune();
    assert!(freed["files_removed"].as_u64().unwrap() > 300, "{freed}");
    assert_eq!(
        freed["bytes_freed"],
        first["bytes_total"].as_u64().unwrap() - "same bytes".len() as u64
    );
    // The cache is empty again: the next pull downloads everything.
    let again = pull_json(
        "tree:v1",
        &origin.url,
        &work.path().join("three"),
        &cache,
        &[],
    );
    assert_eq!(again["bytes_downloaded"], first["bytes_downloaded"]);
}

/// Starts `prewarm pull tree:v1` into `into` and returns it once its staging tree exists
/// (materialising has begun), with the staging tree's path. The caller kills and waits for it.
#[allow(clippy::zombie_processes)]
fn pull_caught_materialising(
    origin: &Origin,
    into: &Path,
    cache: &Path,
) -> (std::process::Child, std::path::PathBuf) {
    let mut child = std::process::Command::new(prewarm_tests::prewarm_bin())
        .args(["pull", "tree:v1", "--from", &origin.url, "--into"])
        .args([into, Path::new("--cache-dir"), cache])
        .env("PREWARM_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let parent = into.parent().unwrap();
    loop {
        let staging = std::fs::read_dir(parent)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains(".prewarm-tmp-"));
        if let Some(s) = staging {
            return (child, s);
        }
        if into.exists() {
            let _ = child.wait();
            panic!("the pull finished before it could be caught");
        }
    }
}

fn staging_trees(parent: &Path) -> Vec<String> {
    std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".prewarm-"))
        .collect()
}

#[test]
fn a_pull_killed_or_stopped_mid_materialise_leaves_no_tree_pinning_the_cache() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    // Many files, so that materialising takes long enough to be caught in the middle.
    for d in 0..8 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("{d} {f}\n")).unwrap();
        }
    }
    let origin = Origin::start(&work.path().join("data"), &[]);
    push_json(&src, "tree:v1", &origin.url);
    let cache = work.path().join("cache");
    let parent = work.path().join("trees");
    std::fs::create_dir(&parent).unwrap();
    let into = parent.join("rt");
    // Everything cached first, so each pull below goes straight to materialising.
    pull_json(
        "tree:v1",
        &origin.url,
        &work.path().join("warm"),
        &cache,
        &[],
    );
    std::fs::remove_dir_all(work.path().join("warm")).unwrap();

    // SIGTERM (and Ctrl-C alike): the pull removes its staging tree and exits 128 + 15.
    let (mut child, staging) = pull_caught_materialising(&origin, &into, &cache);
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert!(!staging.exists() && !into.exists());
    assert_eq!(staging_trees(&parent), Vec::<String>::new());

    // kill -9 leaves it behind, pinning cache files; `cache prune` removes it and frees them.
    let (mut child, staging) = pull_caught_materialising(&origin, &into, &cache);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(staging.exists(), "nothing can clean up after kill -9");
    let out = cli(&[
        "cache",
        "prune",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pruned: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !staging.exists(),
        "prune removes a dead pull's staging tree"
    );
    assert_eq!(pruned["files_removed"], 8 * 500, "{pruned}");

    // Killed again: the next pull into the same parent sweeps it, and succeeds.
    pull_json(
        "tree:v1",
        &origin.url,
        &work.path().join("warm"),
        &cache,
        &[],
    );
    let (mut child, staging) = pull_caught_materialising(&origin, &into, &cache);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(staging.exists());
    pull_json("tree:v1", &origin.url, &into, &cache, &[]);
    assert!(
        !staging.exists(),
        "the next pull sweeps a dead pull's staging tree"
    );
    assert_eq!(staging_trees(&parent), Vec::<String>::new());
    assert_eq!(
        std::fs::read_to_string(into.join("d07/f123")).unwrap(),
        "7 123\n"
    );
}
