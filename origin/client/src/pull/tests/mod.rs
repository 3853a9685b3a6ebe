//! Pull tests: exact trees, incremental versions, corruption, atomic replace, link modes.

mod fixture;
mod verify;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

use prewarm_shared::{Manifest, RuntimeRef};

use super::*;
use fixture::{build, expected_tree, read_tree, Built, FakeSource, Node};

fn big() -> Vec<u8> {
    (0..200u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn v1_nodes() -> Vec<Node> {
    vec![
        Node::Link("abs", "/etc/passwd"),
        Node::Dir("bin", 0o755),
        Node::Link("bin/py", "python"),
        Node::File("bin/python", big(), 0o755),
        Node::File("bin/tool", b"shared bytes\n".to_vec(), 0o755),
        Node::Dir("empty", 0o700),
        Node::Dir("lib", 0o755),
        Node::File("lib/__init__.py", Vec::new(), 0o644),
        Node::File("lib/a.py", b"print('a')\n".to_vec(), 0o644),
        Node::File("lib/b.py", b"print('b')\n".to_vec(), 0o600),
        Node::File("lib/tool.txt", b"shared bytes\n".to_vec(), 0o644),
        Node::Dir("ro", 0o555),
        Node::File("ro/data", b"in a read-only dir\n".to_vec(), 0o444),
    ]
}

/// v1 with `lib/a.py` changed and `lib/c.py` added (same bytes as `lib/b.py`, other mode).
fn v2_nodes() -> Vec<Node> {
    let mut nodes = v1_nodes();
    for n in &mut nodes {
        if let Node::File("lib/a.py", bytes, _) = n {
            *bytes = b"print('a, version 2')\n".to_vec();
        }
    }
    nodes.push(Node::File("lib/c.py", b"print('b')\n".to_vec(), 0o644));
    nodes
}

fn options(dir: &Path, cache: &Path, link_mode: LinkMode) -> PullOptions {
    PullOptions {
        into: dir.join("rt"),
        cache_dir: cache.to_path_buf(),
        concurrency: 4,
        link_mode,
        replace: false,
        progress: None,
        cancel: Default::default(),
    }
}

fn never() -> tokio_util::sync::CancellationToken {
    tokio_util::sync::CancellationToken::new()
}

fn tagged(tag: &str) -> RuntimeRef {
    format!("demo:{tag}").parse().unwrap()
}

fn published() -> (FakeSource, Built, Built) {
    let source = FakeSource::default();
    let (v1, v2) = (build(&v1_nodes()), build(&v2_nodes()));
    source.publish("v1", &v1);
    source.publish("v2", &v2);
    (source, v1, v2)
}

/// Everything in `dir` except `keep`: leftovers of staging or swaps would show here.
fn others_in(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[tokio::test]
async fn pull_materialises_the_exact_tree_by_hard_links() {
    let (source, v1, _) = published();
    let (dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = options(dir.path(), cache_dir.path(), LinkMode::Auto);
    let report = pull(&source, &tagged("v1"), &opts).await.unwrap();

    assert_eq!(read_tree(&opts.into), expected_tree(&v1_nodes(), false));
    assert_eq!(fs::metadata(&opts.into).unwrap().mode() & 0o777, 0o755);
    assert_eq!(report.digest, v1.digest);
    assert_eq!(
        (report.files, report.bytes_total),
        (7, 200 + 13 * 2 + 11 * 2 + 19)
    );
    assert_eq!(report.blocks_downloaded, v1.blocks.len() as u64);
    assert_eq!(report.blocks_reused, 0);
    let all: u64 = v1.blocks.values().map(|b| b.len() as u64).sum();
    assert_eq!(report.bytes_downloaded, all);
    assert_eq!((report.link_mode, report.links.hardlink), ("hardlink", 7));
    assert_eq!(others_in(dir.path(), &["rt"]), Vec::<String>::new());

    let cache = FileCache::open(cache_dir.path()).unwrap();
    for (path, mode, digest, _) in v1.manifest.files() {
        let placed = fs::metadata(opts.into.join(path.as_str())).unwrap();
        let cached = fs::metadata(cache.path_for(digest, mode)).unwrap();
        assert_eq!(
            placed.ino(),
            cached.ino(),
            "{path:?} is not a hard link to the cache"
        );
        assert!(placed.nlink() >= 2, "{path:?}");
        assert_eq!(
            placed.mode() & 0o222,
            0,
            "{path:?} is writable: it would corrupt the cache"
        );
    }
    // Same bytes under two modes are two cache files, so neither mode leaks into the other.
    let tool = v1
        .manifest
        .files()
        .find(|f| f.0.as_str() == "bin/tool")
        .unwrap();
    assert!(cache.contains(tool.2, 0o755) && cache.contains(tool.2, 0o644));
    assert_eq!(
        fs::read_dir(cache_dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn a_second_version_downloads_only_the_changed_content() {
    let (source, v1, v2) = published();
    let (dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut opts = options(dir.path(), cache_dir.path(), LinkMode::Auto);
    pull(&source, &tagged("v1"), &opts).await.unwrap();
    source.take_fetched();

    opts.into = dir.path().join("rt2");
    let report = pull(&source, &tagged("v2"), &opts).await.unwrap();
    assert_eq!(read_tree(&opts.into), expected_tree(&v2_nodes(), false));
    // Only `lib/a.py` changed; its bundle is the one new block.
    let new_bundle = v2.blocks_of("lib/a.py");
    assert!(!v1.blocks.contains_key(&new_bundle[0]));
    assert_eq!(source.take_fetched(), new_bundle);
    assert_eq!(report.blocks_downloaded, 1);
    assert_eq!(report.blocks_reused, v2.blocks.len() as u64 - 1);
    assert_eq!(
        report.bytes_downloaded,
        v2.blocks[&new_bundle[0]].len() as u64
    );

    // A cache file cut short (a power loss before the data reached the disk) is refetched.
    let cache = FileCache::open(cache_dir.path()).unwrap();
    let (_, mode, digest, _) = v2
        .manifest
        .files()
        .find(|f| f.0.as_str() == "bin/python")
        .unwrap();
    let cached = cache.path_for(digest, mode);
    fs::set_permissions(&cached, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&cached, b"").unwrap();
    fs::set_permissions(&cached, fs::Permissions::from_mode(0o400)).unwrap();
    opts.into = dir.path().join("rt-after-crash");
    pull(&source, &tagged("v2"), &opts).await.unwrap();
    assert_eq!(source.take_fetched(), {
        let mut b = v2.blocks_of("bin/python");
        b.sort();
        b
    });
    assert_eq!(read_tree(&opts.into), expected_tree(&v2_nodes(), false));

    // Everything cached: nothing is downloaded at all.
    opts.into = dir.path().join("rt3");
    let report = pull(&source, &tagged("v2"), &opts).await.unwrap();
    assert_eq!(source.take_fetched(), Vec::new());
    assert_eq!((report.blocks_downloaded, report.bytes_downloaded), (0, 0));
    assert_eq!(report.blocks_reused, v2.blocks.len() as u64);
    assert_eq!(read_tree(&opts.into), expected_tree(&v2_nodes(), false));
}

#[tokio::test]
async fn fetch_and_materialise_work_as_separate_steps() {
    let (source, v1, _) = published();
    let (dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cache = FileCache::open(cache_dir.path()).unwrap();
    let (digest, manifest) = fetch_manifest(&source, &RuntimeRef::Digest(v1.digest))
        .await
        .unwrap();
    assert_eq!((digest, &manifest), (v1.digest, &v1.manifest));

    let seen = Mutex::new(Vec::new());
    let record = |p: FetchProgress| seen.lock().unwrap().push(p);
    let stats = fetch_missing(&source, &manifest, &cache, 2, &record)
        .await
        .unwrap();
    let seen = seen.into_inner().unwrap();
    let all: u64 = v1.blocks.values().map(|b| b.len() as u64).sum();
    assert_eq!(seen[0].blocks_needed, v1.blocks.len() as u64);
    assert_eq!(seen[0].bytes_expected, all);
    assert_eq!(seen.last().unwrap().bytes_done, stats.bytes_downloaded);
    assert_eq!(
        stats.files_cached, 7,
        "one cache file per (digest, cache mode)"
    );

    let dest = dir.path().join("rt");
    let links = materialise(
        &manifest,
        &cache,
        &dest,
        LinkMode::Hardlink,
        false,
        &never(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(links.hardlink, 7);
    assert_eq!(read_tree(&dest), expected_tree(&v1_nodes(), false));
    let again = materialise(
        &manifest,
        &cache,
        &dest,
        LinkMode::Hardlink,
        false,
        &never(),
        &|_| {},
    );
    assert!(matches!(again, Err(PullError::DestExists(_))), "{again:?}");

    // Nothing fetched for this one: materialising it names the file that is missing.
    let other: Manifest = build(&[Node::File("x", b"not cached".to_vec(), 0o644)]).manifest;
    let err = materialise(
        &other,
        &cache,
        &dir.path().join("x"),
        LinkMode::Auto,
        false,
        &never(),
        &|_| {},
    );
    assert!(matches!(&err, Err(PullError::NotCached { path, .. }) if path.as_str() == "x"));
    assert_eq!(others_in(dir.path(), &["rt"]), Vec::<String>::new());
}

#[tokio::test]
async fn staging_trees_of_dead_pulls_are_swept_and_an_interrupted_one_leaves_nothing() {
    let (source, v1, _) = published();
    let (dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cache = FileCache::open(cache_dir.path()).unwrap();
    let (_, manifest) = fetch_manifest(&source, &RuntimeRef::Digest(v1.digest))
        .await
        .unwrap();
    fetch_missing(&source, &manifest, &cache, 2, &|_| {})
        .await
        .unwrap();

    // Cancelled: nothing at or beside the destination, and the cache does not record it.
    let cancelled = never();
    cancelled.cancel();
    let dest = dir.path().join("rt");
    let err = materialise(
        &manifest,
        &cache,
        &dest,
        LinkMode::Auto,
        false,
        &cancelled,
        &|_| {},
    );
    assert!(matches!(err, Err(PullError::Interrupted)), "{err:?}");
    assert_eq!(others_in(dir.path(), &[]), Vec::<String>::new());
    assert_eq!(
        fs::read_dir(cache_dir.path().join("staging"))
            .unwrap()
            .count(),
        0
    );

    // What a pull killed mid-materialise leaves: an unlocked staging tree pinning cache files,
    // recorded in the cache. A live pull's tree is locked and stays.
    materialise(
        &manifest,
        &cache,
        &dest,
        LinkMode::Hardlink,
        false,
        &never(),
        &|_| {},
    )
    .unwrap();
    let dead = dir.path().join(".rt.prewarm-tmp-0000000000000001");
    let live = dir.path().join(".rt.prewarm-tmp-0000000000000002");
    for d in [&dead, &live] {
        fs::create_dir(d).unwrap();
        fs::hard_link(dest.join("lib/a.py"), d.join("c.py")).unwrap();
    }
    let live_lock = fs::File::open(&live).unwrap();
    rustix::fs::flock(&live_lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    // The next pull into the same parent sweeps the dead one, not the live one.
    let next = dir.path().join("rt2");
    materialise(
        &manifest,
        &cache,
        &next,
        LinkMode::Auto,
        false,
        &never(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(
        others_in(dir.path(), &["rt", "rt2"]),
        [live.file_name().unwrap().to_str().unwrap()]
    );

    // Elsewhere, only the cache knows it: prune removes it and frees what it pinned.
    let away = tempfile::tempdir().unwrap();
    let dead = away.path().join(".rt.prewarm-tmp-0000000000000003");
    fs::create_dir(&dead).unwrap();
    let pinned = dead.join("c.py");
    fs::hard_link(dest.join("lib/a.py"), &pinned).unwrap();
    cache.register_staging(&dead).unwrap();
    for tree in [&dest, &next] {
        super::materialise::remove_tree(tree);
    }
    let (files, _) = cache.prune_unlinked().unwrap();
    assert!(!dead.exists(), "the dead pull's tree is removed");
    // Every cache file is freed but `lib/a.py`'s, which the live pull's tree links to.
    assert_eq!(files, v1.manifest.files().count() as u64 - 1);
    assert!(live.exists(), "a live pull's tree is not touched");
    assert_eq!(
        fs::read_dir(cache_dir.path().join("staging"))
            .unwrap()
            .count(),
        0
    );
}

/// A tree of `dirs` directories of `per_dir` small files each (distinct contents).
fn many_files(dirs: usize, per_dir: usize) -> Vec<Node> {
    // Node paths are `&'static str`; a test tree lives as long as the test process anyway.
    let name = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut nodes = Vec::new();
    for d in 0..dirs {
        nodes.push(Node::Dir(name(format!("d{d:02}")), 0o755));
        for f in 0..per_dir {
            let bytes = format!("file {f} of dir {d}\n").into_bytes();
            nodes.push(Node::File(name(format!("d{d:02}/f{f:03}")), bytes, 0o644));
        }
    }
    nodes
}

#[tokio::test]
async fn materialise_reports_progress_that_only_grows_and_ends_at_the_totals() {
    let source = FakeSource::default();
    let (small, large) = (build(&v1_nodes()), build(&many_files(10, 100)));
    source.publish("small", &small);
    source.publish("large", &large);
    let (dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cache = FileCache::open(cache_dir.path()).unwrap();
    for built in [&small, &large] {
        let manifest = &built.manifest;
        fetch_missing(&source, manifest, &cache, 4, &|_| {})
            .await
            .unwrap();
        let seen = Mutex::new(Vec::new());
        let record = |p: MaterialiseProgress| seen.lock().unwrap().push(p);
        let dest = dir.path().join(built.digest.hex());
        materialise(
            manifest,
            &cache,
            &dest,
            LinkMode::Auto,
            false,
            &never(),
            &record,
        )
        .unwrap();
        let seen = seen.into_inner().unwrap();

        let totals = MaterialiseProgress {
            entries_done: manifest.entries.len() as u64 + 1,
            entries_total: manifest.entries.len() as u64 + 1,
            bytes_done: manifest.bytes_total(),
            bytes_total: manifest.bytes_total(),
        };
        let start = MaterialiseProgress {
            entries_done: 0,
            bytes_done: 0,
            ..totals
        };
        assert_eq!(seen.first(), Some(&start), "the totals come first");
        assert_eq!(seen.last(), Some(&totals), "and are reached at the end");
        for w in seen.windows(2) {
            assert!(w[0].entries_done <= w[1].entries_done, "{w:?}");
            assert!(w[0].bytes_done <= w[1].bytes_done, "{w:?}");
            assert_eq!(w[0].entries_total, w[1].entries_total);
            assert_eq!(w[0].bytes_total, w[1].bytes_total);
        }
        let done = seen.iter().filter(|p| p.entries_done == p.entries_total);
        assert_eq!(done.count(), 1, "complete only once the tree is in place");
        assert!(seen
            .iter()
            .any(|p| p.fraction() > 0.0 && p.fraction() < 1.0));
        assert_eq!(seen.last().unwrap().fraction(), 1.0);
        assert!(dest.is_dir());
    }
    // 1011 entries with the root: throttled to about one report per 1% of entries or of bytes.
    assert_eq!(large.manifest.entries.len(), 1010);
    let seen = Mutex::new(0u64);
    let count = |_: MaterialiseProgress| *seen.lock().unwrap() += 1;
    let dest = dir.path().join("counted");
    materialise(
        &large.manifest,
        &cache,
        &dest,
        LinkMode::Auto,
        false,
        &never(),
        &count,
    )
    .unwrap();
    let calls = seen.into_inner().unwrap();
    assert!(
        (50..=202).contains(&calls),
        "{calls} reports for 1011 entries"
    );
}

#[tokio::test]
async fn corrupt_blocks_fail_the_pull_and_leave_nothing_behind() {
    // Each spoils one block: silently corrupt (multi-block file, then a bundle), silently
    // truncated, or refused with an integrity error as an honest source would.
    type Spoil = fn(&FakeSource, &Built);
    let cases: [Spoil; 4] = [
        |s, v| s.corrupt_block(&v.blocks_of("bin/python")[1]),
        |s, v| s.corrupt_block(&v.blocks_of("bin/tool")[0]),
        |s, v| s.truncate_block(&v.blocks_of("bin/python")[1], 10),
        |s, v| s.refuse_block(&v.blocks_of("bin/python")[2]),
    ];
    for (i, spoil) in cases.into_iter().enumerate() {
        let (source, v1, _) = published();
        spoil(&source, &v1);
        let (dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let opts = options(dir.path(), cache_dir.path(), LinkMode::Auto);
        let err = pull(&source, &tagged("v1"), &opts).await.unwrap_err();
        assert_eq!(err.code(), "integrity", "case {i}: {err}");
        assert!(!opts.into.exists(), "case {i}: half a runtime at DEST");
        assert_eq!(others_in(dir.path(), &[]), Vec::<String>::new(), "case {i}");
        let cache = FileCache::open(cache_dir.path()).unwrap();
        // Case 1 spoils the bundle's first bytes: `bin/tool`'s (and `lib/tool.txt`'s).
        let spoilt = if i == 1 { "bin/tool" } else { "bin/python" };
        let (_, mode, digest, _) = v1
            .manifest
            .files()
            .find(|f| f.0.as_str() == spoilt)
            .unwrap();
        assert!(
            !cache.contains(digest, mode),
            "case {i}: {spoilt} entered the cache"
        );
        assert_eq!(
            fs::read_dir(cache_dir.path().join("tmp")).unwrap().count(),
            0
        );
        match (i, &err) {
            (0 | 1, PullError::FileIntegrity { path, .. }) => assert_eq!(path.as_str(), spoilt),
            (2, PullError::BlockTooShort { path, .. }) => assert_eq!(path.as_str(), spoilt),
            (3, PullError::Fetch { what, .. }) => assert!(what.contains("bin/python"), "{what}"),
            _ => panic!("case {i}: unexpected error {err:?}"),
        }
    }
}

#[tokio::test]
async fn an_existing_destination_needs_replace_and_replace_swaps() {
    let (source, _, _) = published();
    let (dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut opts = options(dir.path(), cache_dir.path(), LinkMode::Auto);
    fs::create_dir(&opts.into).unwrap();
    fs::write(opts.into.join("marker"), b"old").unwrap();

    let err = pull(&source, &tagged("v1"), &opts).await.unwrap_err();
    assert!(matches!(err, PullError::DestExists(_)), "{err:?}");
    assert_eq!(fs::read(opts.into.join("marker")).unwrap(), b"old");
    assert_eq!(
        source.take_fetched(),
        Vec::new(),
        "refused before downloading"
    );

    opts.replace = true;
    pull(&source, &tagged("v1"), &opts).await.unwrap();
    assert_eq!(read_tree(&opts.into), expected_tree(&v1_nodes(), false));
    // Replacing a pulled tree (read-only dirs included) with the next version.
    pull(&source, &tagged("v2"), &opts).await.unwrap();
    assert_eq!(read_tree(&opts.into), expected_tree(&v2_nodes(), false));
    assert_eq!(others_in(dir.path(), &["rt"]), Vec::<String>::new());

    fs::remove_dir_all(&opts.into).unwrap();
    fs::write(&opts.into, b"a file").unwrap();
    let err = pull(&source, &tagged("v1"), &opts).await.unwrap_err();
    assert!(matches!(err, PullError::DestNotDir(_)), "{err:?}");
    assert_eq!(fs::read(&opts.into).unwrap(), b"a file");
}

#[tokio::test]
async fn copy_mode_gives_exact_modes_and_own_inodes() {
    let (source, v1, _) = published();
    let (dir, cache_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = options(dir.path(), cache_dir.path(), LinkMode::Copy);
    let report = pull(&source, &tagged("v1"), &opts).await.unwrap();
    assert_eq!(read_tree(&opts.into), expected_tree(&v1_nodes(), true));
    assert_eq!(
        (report.link_mode, report.links.copy, report.links.hardlink),
        ("copy", 7, 0)
    );
    let cache = FileCache::open(cache_dir.path()).unwrap();
    for (path, mode, digest, _) in v1.manifest.files() {
        let placed = fs::metadata(opts.into.join(path.as_str())).unwrap();
        let cached = fs::metadata(cache.path_for(digest, mode)).unwrap();
        assert_ne!(placed.ino(), cached.ino(), "{path:?}");
    }
}

#[tokio::test]
async fn a_wrong_or_non_canonical_manifest_is_refused() {
    let (source, v1, v2) = published();
    source.put_manifest_raw(v1.digest, v2.manifest.to_canonical_json());
    let err = fetch_manifest(&source, &RuntimeRef::Digest(v1.digest))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::ManifestDigest { expected, actual, .. } if expected == v1.digest && actual == v2.digest),
        "{err:?}"
    );

    let pretty = serde_json::to_vec_pretty(&v1.manifest).unwrap();
    let digest = prewarm_shared::Digest::of(&pretty);
    source.put_manifest_raw(digest, pretty);
    let err = fetch_manifest(&source, &RuntimeRef::Digest(digest))
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Manifest { .. }), "{err:?}");

    let err = fetch_manifest(&source, &tagged("nope")).await.unwrap_err();
    assert_eq!(err.code(), "not_found", "{err}");
}

/// Needs a second filesystem: /dev/shm (tmpfs) against the temp dir. Skipped where they match.
#[tokio::test]
async fn across_filesystems_hardlink_is_refused_and_auto_says_it_copied() {
    let Ok(cache_dir) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    if fs::metadata(dir.path()).unwrap().dev() == fs::metadata(cache_dir.path()).unwrap().dev() {
        return;
    }
    let (source, _, _) = published();
    let mut opts = options(dir.path(), cache_dir.path(), LinkMode::Hardlink);
    let err = pull(&source, &tagged("v1"), &opts).await.unwrap_err();
    assert!(
        matches!(
            err,
            PullError::LinkImpossible {
                mode: "hardlink",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!opts.into.exists());
    assert_eq!(others_in(dir.path(), &[]), Vec::<String>::new());

    opts.link_mode = LinkMode::Auto;
    let report = pull(&source, &tagged("v1"), &opts).await.unwrap();
    assert_eq!(report.links.hardlink, 0);
    assert_eq!(report.links.reflink + report.links.copy, 7);
    assert_ne!(report.link_mode, "hardlink");
    assert_eq!(read_tree(&opts.into), expected_tree(&v1_nodes(), true));
}
