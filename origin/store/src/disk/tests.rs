//! Disk store tests: conformance, a full filesystem, `kill -9` at every step of a write, damage found on read and by `verify`.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use futures::StreamExt;

use super::write::Step;
use super::*;
use crate::conformance::{self, faults};
use crate::StoreExt;

#[tokio::test]
async fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path()).await.unwrap();
    conformance::run_all(&store).await;
    conformance::tags(&store).await;
    conformance::records(&store).await;
}

#[tokio::test]
async fn interrupted_write_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path()).await.unwrap();
    let d = Digest::of(b"abcdef");
    // A body that fails half-way, like a client that hangs up mid-upload.
    let body = futures::stream::iter(vec![
        Ok(bytes::Bytes::from_static(b"abc")),
        Err(StoreError::other("test", "connection reset")),
    ])
    .boxed();
    assert!(store.put(Kind::Block, &d, body).await.is_err());
    assert!(store.head(Kind::Block, &d).await.unwrap().is_none());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    // A crash leaves a temp file; reopening clears it.
    std::fs::write(dir.path().join("tmp/leftover"), b"abc").unwrap();
    DiskStore::open(dir.path()).await.unwrap();
    assert!(!dir.path().join("tmp/leftover").exists());
}

/// The report of issue 8: on a full filesystem puts fail, and no short or empty file is left
/// under a digest. Every put that failed is missing, every one that succeeded reads back.
#[tokio::test]
async fn full_filesystem_stores_nothing_wrong() {
    let Some(fs) = faults::Tmpfs::mount(256 << 10) else {
        return;
    };
    let store = DiskStore::open(fs.sub("data")).await.unwrap();
    // 40 kB blocks in 1 to 5 pieces: the disk fills during a block's first, middle or last write.
    let tried = faults::fill_until_full(&store, 40_000, 5, 10, 100).await;
    assert!(tried.iter().any(|a| a.stored) && tried.iter().any(|a| !a.stored));
    faults::nothing_wrong_is_visible(&store, &tried).await;
    for a in tried.iter().filter(|a| !a.stored) {
        assert!(!store.object_path(Kind::Block, &a.digest).exists());
    }
    assert_eq!(std::fs::read_dir(fs.sub("data/tmp")).unwrap().count(), 0);
    // Space freed: failed blocks go in whole.
    for a in tried.iter().filter(|a| a.stored) {
        store.delete(Kind::Block, &a.digest).await.unwrap();
    }
    for a in tried.iter().filter(|a| !a.stored).take(3) {
        store
            .put_bytes(Kind::Block, &a.digest, a.bytes.clone())
            .await
            .unwrap();
        assert_eq!(
            store
                .get_bytes(Kind::Block, &a.digest)
                .await
                .unwrap()
                .unwrap(),
            a.bytes
        );
    }
}

/// A disk that fails on write-back: every `write` succeeds, `fsync` reports the loss. A put
/// whose data did not reach the disk fails and leaves nothing under its digest.
#[tokio::test]
async fn failed_writeback_stores_nothing_wrong() {
    let Some(fs) = faults::FailingWriteback::mount(3 << 20, 16 << 20) else {
        return;
    };
    let store = DiskStore::open(fs.sub("data")).await.unwrap();
    let tried = faults::fill_until_full(&store, 500_000, 3, 4, 40).await;
    faults::nothing_wrong_is_visible(&store, &tried).await;
    // The page cache still holds what failed to reach the disk; what counts is the device.
    // Its lost metadata writes may make some names unreadable (an error, never wrong bytes);
    // every object file that can be read holds its digest's bytes.
    fs.remount();
    for a in &tried {
        let path = store.object_path(Kind::Block, &a.digest);
        if let Ok(b) = std::fs::read(&path) {
            assert!(
                b == a.bytes,
                "{} bytes under {} after remount",
                b.len(),
                a.digest
            );
        }
    }
}

/// The bytes the crash test's child writes: three pieces, so it stops mid-write too.
fn crash_bytes() -> Bytes {
    (0..300_000u32)
        .map(|i| (i % 241) as u8)
        .collect::<Vec<_>>()
        .into()
}

const CRASH_AT: &str = "PREWARM_TEST_CRASH_AT";
const CRASH_DIR: &str = "PREWARM_TEST_CRASH_DIR";

/// Called at every [`Step`] of a write. In the crash test's child, at the chosen step, it tells
/// the parent (a marker file) and waits to be killed.
pub(super) fn crash_point(s: Step) {
    let (Ok(at), Ok(dir)) = (std::env::var(CRASH_AT), std::env::var(CRASH_DIR)) else {
        return;
    };
    if at == format!("{s:?}") {
        std::fs::write(Path::new(&dir).join("at-step"), at).unwrap();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

/// The child of [`kill_9_at_every_step`]: does nothing unless it is that child.
#[tokio::test]
#[ignore = "run by kill_9_at_every_step in a child process"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let store = DiskStore::open(Path::new(&dir).join("data")).await.unwrap();
    let bytes = crash_bytes();
    let pieces: Vec<_> = bytes
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    store
        .put(
            Kind::Block,
            &Digest::of(&bytes),
            futures::stream::iter(pieces).boxed(),
        )
        .await
        .unwrap();
}

/// `kill -9` of a process at each step of a put: after reopening, the object is either missing
/// or whole, never partial; from the rename on it is there.
#[tokio::test]
async fn kill_9_at_every_step() {
    let exe = std::env::current_exe().unwrap();
    let bytes = crash_bytes();
    let d = Digest::of(&bytes);
    for step in Step::ALL {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(&exe)
            .args(["disk::tests::crash_child", "--exact", "--ignored"])
            .args(["--test-threads=1", "--nocapture"])
            .env(CRASH_AT, format!("{step:?}"))
            .env(CRASH_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let marker = dir.path().join("at-step");
        while !marker.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("child exited ({status}) before reaching {step:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let store = DiskStore::open(dir.path().join("data")).await.unwrap();
        let got = store.get_bytes(Kind::Block, &d).await.unwrap();
        let head = store.head(Kind::Block, &d).await.unwrap();
        match step {
            Step::Renamed | Step::DirSynced => {
                assert_eq!(got.as_ref(), Some(&bytes), "{step:?}: object not whole");
                assert_eq!(head, Some(bytes.len() as u64));
            }
            _ => {
                assert!(
                    got.is_none() && head.is_none(),
                    "{step:?}: partial object visible"
                );
            }
        }
        let tmp = std::fs::read_dir(dir.path().join("data/tmp"))
            .unwrap()
            .count();
        assert_eq!(tmp, 0, "{step:?}: temp files left after reopen");
    }
}

/// Puts `bytes` and then overwrites the stored file in place with `damaged`.
async fn stored_then_damaged(store: &DiskStore, bytes: &Bytes, damaged: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    store
        .put_bytes(Kind::Block, &d, bytes.clone())
        .await
        .unwrap();
    std::fs::write(store.object_path(Kind::Block, &d), damaged).unwrap();
    d
}

fn quarantine_count(store: &DiskStore) -> usize {
    std::fs::read_dir(store.root().join(QUARANTINE_DIR))
        .unwrap()
        .count()
}

#[tokio::test]
async fn damaged_object_is_quarantined_reported_missing_and_repaired_by_a_put() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path()).await.unwrap();
    let bytes = Bytes::from(vec![7u8; 5000]);
    let mut flipped = bytes.to_vec();
    flipped[4000] ^= 1;
    let d = stored_then_damaged(&store, &bytes, &flipped).await;
    // Same size: `head` cannot tell; the first whole read finds it.
    assert_eq!(store.head(Kind::Block, &d).await.unwrap(), Some(5000));
    assert!(store.get(Kind::Block, &d).await.unwrap().is_none());
    assert_eq!(store.head(Kind::Block, &d).await.unwrap(), None);
    assert_eq!((store.quarantined(), quarantine_count(&store)), (1, 1));
    // The next push repairs it.
    store
        .put_bytes(Kind::Block, &d, bytes.clone())
        .await
        .unwrap();
    assert_eq!(
        store.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
        bytes
    );

    // Short, as a lost write leaves it: the size shows it, `head` says missing.
    let short = Bytes::from(vec![8u8; 5000]);
    let d = stored_then_damaged(&store, &short, b"").await;
    assert_eq!(store.head(Kind::Block, &d).await.unwrap(), None);
    assert_eq!(quarantine_count(&store), 2);
}

#[tokio::test]
async fn damage_in_a_big_object_ends_its_stream_with_an_error_and_quarantines_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path()).await.unwrap();
    let len = VERIFY_BEFORE_SERVING as usize + 100_000;
    let bytes: Bytes = (0..len).map(|i| (i % 239) as u8).collect::<Vec<_>>().into();
    let mut flipped = bytes.to_vec();
    flipped[len - 10] ^= 0xff;
    let d = stored_then_damaged(&store, &bytes, &flipped).await;
    let o = store.get(Kind::Block, &d).await.unwrap().unwrap();
    let e = o.into_bytes().await.unwrap_err();
    assert!(matches!(e, StoreError::Integrity { .. }), "{e}");
    assert!(store.get(Kind::Block, &d).await.unwrap().is_none());
    assert_eq!(store.quarantined(), 1);
}

#[tokio::test]
async fn verify_quarantines_exactly_the_damaged_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path()).await.unwrap();
    let good = Bytes::from_static(b"good bytes");
    let gd = Digest::of(&good);
    store
        .put_bytes(Kind::Block, &gd, good.clone())
        .await
        .unwrap();
    store
        .put_bytes(Kind::Manifest, &gd, good.clone())
        .await
        .unwrap();
    let bad = stored_then_damaged(&store, &Bytes::from_static(b"bad bytes"), b"bad bytez").await;
    let empty = stored_then_damaged(&store, &Bytes::from_static(b"was here"), b"").await;
    let stray = store.root().join("blocks-v1/00/00/not-a-digest");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"?").unwrap();

    let r = store.verify().unwrap();
    assert_eq!(r.objects_checked, 5);
    assert_eq!(r.quarantined, 3);
    let problems: Vec<_> = r.damaged.iter().map(|d| (d.digest, d.problem)).collect();
    assert!(problems.contains(&(Some(bad), Damage::HashMismatch)));
    assert!(problems.contains(&(Some(empty), Damage::ImpossibleSize)));
    assert!(problems.contains(&(None, Damage::Stray)));
    assert!(r
        .damaged
        .iter()
        .all(|d| store.root().join(&d.moved_to).exists()));
    assert_eq!(
        store.get_bytes(Kind::Block, &gd).await.unwrap().unwrap(),
        good
    );
    assert_eq!(store.head(Kind::Block, &bad).await.unwrap(), None);
    // Run again: all intact now.
    let again = store.verify().unwrap();
    assert_eq!((again.objects_checked, again.quarantined), (2, 0));
}
