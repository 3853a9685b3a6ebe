//! `FileCache::verify`: damaged cache files are found, removed and fetched again.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use prewarm_shared::Digest;

use super::fixture::{expected_tree, read_tree, Built};
use super::*;

/// Overwrites a read-only cache file in place with `bytes`, keeping its mode, as a disk that
/// lost a write would.
fn damage(path: &Path, bytes: &[u8]) {
    let mode = fs::metadata(path).unwrap().permissions().mode();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn cached(cache: &FileCache, built: &Built, path: &str) -> (Digest, u32, PathBuf) {
    let (_, mode, digest, _) = built
        .manifest
        .files()
        .find(|f| f.0.as_str() == path)
        .unwrap();
    (*digest, mode, cache.path_for(digest, mode))
}

#[tokio::test]
async fn verify_removes_a_file_with_wrong_bytes_and_the_next_pull_fetches_it_again() {
    let (source, v1, _) = published();
    let (dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut opts = options(dir.path(), cache_dir.path(), LinkMode::Auto);
    let pulled = pull(&source, &tagged("v1"), &opts).await.unwrap();
    source.take_fetched();
    let cache = FileCache::open(cache_dir.path()).unwrap();

    let intact = cache.verify().unwrap();
    assert_eq!(
        intact,
        VerifyReport {
            files_checked: 7,
            bytes_checked: pulled.bytes_total,
            ..VerifyReport::default()
        }
    );

    // Same size, other bytes: `holds` (the size check pulls trust) cannot tell.
    let (digest, mode, path) = cached(&cache, &v1, "bin/python");
    let wrong = vec![0x5a; 200];
    damage(&path, &wrong);
    assert!(cache.holds(&digest, mode, 200));

    let report = cache.verify().unwrap();
    assert_eq!(
        report.damaged,
        vec![Damaged {
            path: format!("files-v1/{}/{}.555", &digest.hex()[..2], digest.hex()),
            digest: Some(digest),
            problem: Problem::HashMismatch,
            actual: Some(Digest::of(&wrong)),
            links: 2,
            bytes: 200,
        }]
    );
    assert_eq!(
        (report.files_checked, report.bytes_checked),
        (7, pulled.bytes_total)
    );
    assert_eq!(
        (
            report.files_removed,
            report.bytes_removed,
            report.still_linked
        ),
        (1, 200, 1)
    );
    assert!(!cache.contains(&digest, mode) && !cache.holds(&digest, mode, 200));
    for (p, mode, d, _) in v1.manifest.files() {
        assert_eq!(cache.contains(d, mode), p.as_str() != "bin/python", "{p:?}");
    }
    // The tree hard-linked to it still holds the wrong bytes: verify does not look for it.
    assert_eq!(fs::read(opts.into.join("bin/python")).unwrap(), wrong);

    let again = cache.verify().unwrap();
    assert!(again.damaged.is_empty(), "{again:?}");
    assert_eq!(
        (again.files_checked, again.bytes_checked),
        (6, pulled.bytes_total - 200)
    );

    // Pulling again with --replace fetches just that file and puts the tree right.
    opts.replace = true;
    pull(&source, &tagged("v1"), &opts).await.unwrap();
    let mut python = v1.blocks_of("bin/python");
    python.sort();
    assert_eq!(source.take_fetched(), python);
    assert_eq!(read_tree(&opts.into), expected_tree(&v1_nodes(), false));
    assert!(cache.verify().unwrap().damaged.is_empty());
}

#[tokio::test]
async fn verify_removes_bad_names_wrong_modes_and_non_files_and_keeps_good_files() {
    let (source, v1, _) = published();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(cache_dir.path()).unwrap();
    fetch_missing(&source, &v1.manifest, &cache, 2, &|_| {})
        .await
        .unwrap();
    let files = cache_dir.path().join("files-v1");

    // Someone chmod-ed it: readable, same bytes, but not the mode its name says.
    let (tool_digest, _, tool) = cached(&cache, &v1, "bin/tool");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    let (a_digest, _, a_py) = cached(&cache, &v1, "lib/a.py");
    let a_hex = a_digest.hex();
    let a_fan = &a_hex[..2];
    let other_fan = if a_fan == "00" { "01" } else { "00" };
    fs::create_dir_all(files.join(other_fan)).unwrap();
    // The right bytes where no lookup finds them: another fan-out dir, a mode the rule
    // never produces, a name that is no digest.
    fs::copy(&a_py, files.join(other_fan).join(format!("{a_hex}.444"))).unwrap();
    fs::copy(&a_py, files.join(a_fan).join(format!("{a_hex}.644"))).unwrap();
    fs::write(files.join(a_fan).join("notes.txt"), b"hello").unwrap();
    fs::write(files.join("README"), b"stray").unwrap();
    // Not regular files where cached files belong.
    let x = Digest::of(b"x").hex();
    fs::create_dir_all(files.join(&x[..2]).join(format!("{x}.444/sub"))).unwrap();
    let y = Digest::of(b"y").hex();
    fs::create_dir_all(files.join(&y[..2])).unwrap();
    std::os::unix::fs::symlink(&a_py, files.join(&y[..2]).join(format!("{y}.444"))).unwrap();

    let report = cache.verify().unwrap();
    let found: Vec<(String, Problem, Option<Digest>)> = report
        .damaged
        .iter()
        .map(|d| (d.path.clone(), d.problem, d.digest))
        .collect();
    let rel = |p: &Path| {
        p.strip_prefix(cache_dir.path())
            .unwrap()
            .display()
            .to_string()
    };
    // A digest is named only where the name is where a pull would look for it.
    let mut expected = vec![
        (rel(&tool), Problem::WrongMode, Some(tool_digest)),
        (
            format!("files-v1/{other_fan}/{a_hex}.444"),
            Problem::BadName,
            None,
        ),
        (
            format!("files-v1/{a_fan}/{a_hex}.644"),
            Problem::BadName,
            None,
        ),
        (
            format!("files-v1/{a_fan}/notes.txt"),
            Problem::BadName,
            None,
        ),
        ("files-v1/README".to_string(), Problem::BadName, None),
        (
            format!("files-v1/{}/{x}.444", &x[..2]),
            Problem::NotAFile,
            Some(Digest::of(b"x")),
        ),
        (
            format!("files-v1/{}/{y}.444", &y[..2]),
            Problem::NotAFile,
            Some(Digest::of(b"y")),
        ),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(found, expected);
    assert_eq!(report.files_checked, 7 + 6);
    assert_eq!(report.still_linked, 0, "nothing was materialised");
    for (p, _, _) in &expected {
        assert!(
            fs::symlink_metadata(cache_dir.path().join(p)).is_err(),
            "{p} is still there"
        );
    }
    for (p, mode, d, _) in v1.manifest.files() {
        assert_eq!(cache.contains(d, mode), p.as_str() != "bin/tool", "{p:?}");
    }
    let again = cache.verify().unwrap();
    assert!(again.damaged.is_empty(), "{again:?}");
    assert_eq!(again.files_checked, 6);
}

#[test]
fn verify_of_an_empty_cache_checks_nothing() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(cache_dir.path()).unwrap();
    assert_eq!(cache.verify().unwrap(), VerifyReport::default());
}

#[test]
fn the_exclusive_lock_is_refused_at_once_while_a_pull_holds_the_cache() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(cache_dir.path()).unwrap();
    let pulling = cache.lock(false).unwrap();
    let err = cache.lock(true).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
    drop(pulling);
    let exclusive = cache.lock(true).unwrap();
    assert!(cache.lock(true).is_err(), "a second prune or verify");
    drop(exclusive);
}
