//! `prewarm cache verify`: a cache file whose bytes went bad is found, removed and fetched again.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use prewarm_shared::Digest;
use prewarm_tests::{cli, pull_json, push_json, tree_snapshot, write_pack, Origin};

/// `prewarm cache verify --cache-dir CACHE EXTRA…`.
fn verify(cache: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["cache", "verify", "--cache-dir", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    cli(&args)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Where the cache keeps a file with these bytes and this manifest mode.
fn cache_file(cache: &Path, bytes: &[u8], mode: u32) -> PathBuf {
    let hex = Digest::of(bytes).hex();
    cache
        .join("files-v1")
        .join(&hex[..2])
        .join(format!("{hex}.{:03o}", (mode & 0o555) | 0o400))
}

/// Overwrites a read-only cache file in place, same size, as a disk that lost a write would.
fn corrupt(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    for b in &mut bytes {
        *b = !*b;
    }
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(path, &bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    bytes
}

#[test]
fn verify_removes_a_corrupted_cache_file_and_a_replace_pull_repairs_the_tree() {
    let work = tempfile::tempdir().unwrap();
    let pack = work.path().join("pack");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
    write_pack(
        &pack,
        "verify",
        &[(
            "base",
            vec![
                ("bin/", b"", 0o755),
                ("bin/run", b"#!/bin/sh\necho run\n", 0o755),
                ("share/", b"", 0o755),
                ("share/data.bin", &data, 0o644),
                ("share/note.txt", b"a note", 0o644),
            ],
        )],
        serde_json::json!({}),
    );
    let origin = Origin::start(&work.path().join("data"), &[]);
    push_json(&pack, "verify:v1", &origin.url);
    let (rt, cache) = (work.path().join("rt"), work.path().join("cache"));
    pull_json("verify:v1", &origin.url, &rt, &cache, &[]);
    let exact = tree_snapshot(&rt, 0o777);

    let intact = verify(&cache, &["--json"]);
    assert_eq!(intact.status.code(), Some(0), "{intact:?}");
    let intact = json(&intact);
    assert_eq!(intact["damaged"], serde_json::json!([]), "{intact}");
    assert!(intact["files_checked"].as_u64().unwrap() >= 3, "{intact}");
    assert!(
        intact["bytes_checked"].as_u64().unwrap() >= data.len() as u64,
        "{intact}"
    );

    let damaged_file = cache_file(&cache, &data, 0o644);
    let wrong = corrupt(&damaged_file);
    assert_eq!(
        std::fs::read(rt.join("share/data.bin")).unwrap(),
        wrong,
        "the tree shares the cache inode"
    );

    let found = verify(&cache, &["--json"]);
    assert_eq!(
        found.status.code(),
        Some(3),
        "damage found: {}",
        String::from_utf8_lossy(&found.stderr)
    );
    let found = json(&found);
    let digest = Digest::of(&data).to_string();
    assert_eq!(found["files_removed"], 1, "{found}");
    assert_eq!(found["damaged"][0]["digest"], digest.as_str());
    assert_eq!(found["damaged"][0]["problem"], "hash_mismatch");
    assert_eq!(
        found["damaged"][0]["actual"],
        Digest::of(&wrong).to_string()
    );
    assert_eq!(found["damaged"][0]["links"], 2, "the cache and `rt`");
    assert_eq!(found["still_linked"], 1);
    assert!(
        found["advice"].as_str().unwrap().contains("--replace"),
        "{found}"
    );
    assert!(!damaged_file.exists());

    let again = verify(&cache, &["--json"]);
    assert_eq!(again.status.code(), Some(0));
    let again = json(&again);
    assert_eq!(again["damaged"], serde_json::json!([]));
    assert_eq!(
        again["files_checked"],
        intact["files_checked"].as_u64().unwrap() - 1
    );

    // The tree still holds the wrong bytes until it is pulled again: then it is exact.
    let repaired = pull_json("verify:v1", &origin.url, &rt, &cache, &["--replace"]);
    assert!(
        repaired["bytes_downloaded"].as_u64().unwrap() > 0,
        "the damaged file is fetched again: {repaired}"
    );
    assert_eq!(tree_snapshot(&rt, 0o777), exact);
    let fresh = work.path().join("rt2");
    let second = pull_json("verify:v1", &origin.url, &fresh, &cache, &[]);
    assert_eq!(second["bytes_downloaded"], 0, "all cached again: {second}");
    assert_eq!(tree_snapshot(&fresh, 0o777), exact);

    // Without --json: one line per damaged digest, and what to do about the trees.
    corrupt(&cache_file(&cache, b"a note", 0o644));
    let human = verify(&cache, &[]);
    assert_eq!(human.status.code(), Some(3));
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains(&Digest::of(b"a note").to_string()), "{text}");
    assert!(text.contains("3 links"), "`rt` and `rt2` link it: {text}");
    assert!(text.contains("--replace"), "{text}");
}

#[test]
fn verify_exits_1_when_the_cache_cannot_be_read() {
    let work = tempfile::tempdir().unwrap();
    let not_a_dir = work.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let out = verify(&not_a_dir, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: "),
        "{out:?}"
    );
}
