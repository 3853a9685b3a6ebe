//! gc's mark and sweep rules on the in-memory store: roots, parents, grace, dry run, and a push landing mid-run.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prewarm_shared::manifest::{Chunk, Entry};
use prewarm_shared::{Digest, Manifest};
use prewarm_store::{
    ByteStream, Kind, Listed, MemoryStore, Object, Records, Store, StoreError, StoreExt, TagStore,
};

use super::{collect, GcOptions, GcReport, GcStores};

/// A stored block and its digest.
async fn block(s: &MemoryStore, label: &str) -> Digest {
    let b = Bytes::from(format!("block {label} {}", rand::random::<u64>()));
    let d = Digest::of(&b);
    s.put_bytes(Kind::Block, &d, b).await.unwrap();
    d
}

/// A stored manifest of one file per block, with optional parent and runtime.
async fn manifest(
    s: &MemoryStore,
    blocks: &[Digest],
    parent: Option<Digest>,
    runtime: Option<Digest>,
) -> Digest {
    let entries = blocks
        .iter()
        .enumerate()
        .map(|(n, b)| Entry::File {
            path: format!("f{n}").parse().unwrap(),
            mode: 0o644,
            size: 1,
            digest: *b,
            chunks: vec![Chunk {
                block: *b,
                offset: 0,
                size: 1,
            }],
        })
        .collect();
    let mut m = Manifest::new(entries);
    m.parent = parent;
    m.runtime = runtime;
    let bytes = Bytes::from(m.to_canonical_json());
    let d = Digest::of(&bytes);
    s.put_bytes(Kind::Manifest, &d, bytes).await.unwrap();
    d
}

async fn run(s: &MemoryStore, grace: Duration, dry_run: bool) -> GcReport {
    let stores = GcStores {
        objects: s,
        tags: s,
        records: s,
    };
    collect(&stores, GcOptions { grace, dry_run })
        .await
        .unwrap()
}

async fn has(s: &dyn Store, kind: Kind, d: &Digest) -> bool {
    s.head(kind, d).await.unwrap().is_some()
}

#[tokio::test]
async fn unreferenced_objects_go_and_everything_reachable_stays() {
    let s = MemoryStore::new();
    let (shared, only_old, only_new) = (
        block(&s, "shared").await,
        block(&s, "old").await,
        block(&s, "new").await,
    );
    let old = manifest(&s, &[shared, only_old], None, None).await;
    let base = manifest(&s, &[shared], None, None).await;
    let new = manifest(&s, &[shared, only_new], Some(base), None).await;
    let snap_runtime_block = block(&s, "snap").await;
    let snap = manifest(&s, &[snap_runtime_block], None, Some(base)).await;
    let paused_block = block(&s, "paused").await;
    let paused = manifest(&s, &[paused_block], None, None).await;
    let stray = block(&s, "stray").await;
    s.set_tag(&"py".parse().unwrap(), &"v2".parse().unwrap(), &new)
        .await
        .unwrap();
    let record = serde_json::json!({
        "snapshot": snap, "runtime": base, "files": 1, "bytes_total": 1, "owners": {}
    });
    s.put_record(
        &format!("snapshots/{}", snap.hex()).parse().unwrap(),
        Bytes::from(record.to_string()),
    )
    .await
    .unwrap();
    let p = serde_json::json!({
        "sandbox_id": "sb-1", "snapshot": paused, "request": {"runtime": "py:v2", "user_id": "u"}, "paused_ms": 1
    });
    s.put_record(&"paused/sb-1".parse().unwrap(), Bytes::from(p.to_string()))
        .await
        .unwrap();

    let dry = run(&s, Duration::ZERO, true).await;
    assert!(dry.failed.is_empty(), "{:?}", dry.failed);
    assert_eq!(
        (dry.manifests.deleted, dry.blocks.deleted),
        (1, 2),
        "{dry:?}"
    );
    assert!(
        has(&s, Kind::Manifest, &old).await && has(&s, Kind::Block, &stray).await,
        "a dry run deletes nothing"
    );

    let r = run(&s, Duration::ZERO, false).await;
    assert_eq!((r.manifests.deleted, r.blocks.deleted), (1, 2), "{r:?}");
    assert_eq!(
        (
            r.roots.tags,
            r.roots.snapshot_records,
            r.roots.paused_records
        ),
        (1, 1, 1)
    );
    assert!(r.dangling.is_empty(), "{:?}", r.dangling);
    assert!(!has(&s, Kind::Manifest, &old).await);
    assert!(!has(&s, Kind::Block, &only_old).await && !has(&s, Kind::Block, &stray).await);
    for m in [new, base, snap, paused] {
        assert!(
            has(&s, Kind::Manifest, &m).await,
            "reachable manifest {m} deleted"
        );
    }
    for b in [shared, only_new, snap_runtime_block, paused_block] {
        assert!(
            has(&s, Kind::Block, &b).await,
            "reachable block {b} deleted"
        );
    }
    let again = run(&s, Duration::ZERO, false).await;
    assert_eq!((again.manifests.deleted, again.blocks.deleted), (0, 0));
}

#[tokio::test]
async fn young_objects_survive_the_grace_period_and_deleting_a_tag_frees_its_tree() {
    let s = MemoryStore::new();
    let b = block(&s, "b").await;
    let m = manifest(&s, &[b], None, None).await;
    let (name, tag) = ("py".parse().unwrap(), "v1".parse().unwrap());
    s.set_tag(&name, &tag, &m).await.unwrap();
    s.delete_tag(&name, &tag).await.unwrap();
    let r = run(&s, Duration::from_secs(3600), false).await;
    assert_eq!((r.manifests.deleted, r.blocks.deleted), (0, 0));
    assert_eq!(
        r.roots.young_manifests, 1,
        "an untagged young manifest is a root"
    );
    assert!(has(&s, Kind::Block, &b).await);
    let r = run(&s, Duration::ZERO, false).await;
    assert_eq!((r.manifests.deleted, r.blocks.deleted), (1, 1), "{r:?}");
}

#[tokio::test]
async fn a_missing_parent_is_reported_dangling_not_fatal() {
    let s = MemoryStore::new();
    let b = block(&s, "b").await;
    let ghost = Digest::of(b"never stored");
    let m = manifest(&s, &[b], Some(ghost), None).await;
    s.set_tag(&"py".parse().unwrap(), &"v1".parse().unwrap(), &m)
        .await
        .unwrap();
    let r = run(&s, Duration::ZERO, false).await;
    assert_eq!(r.dangling.len(), 1);
    assert_eq!(r.dangling[0].missing, ghost);
    assert!(has(&s, Kind::Block, &b).await);
}

/// A store that receives a push just before gc's last look at the manifests (its third
/// listing, after the blocks to delete were picked): a new manifest that reuses an old
/// unreferenced block. The re-check must spare that block.
struct PushMidRun {
    inner: MemoryStore,
    reuse: Digest,
    manifest_listings: AtomicUsize,
    pushed: AtomicBool,
}

#[async_trait::async_trait]
impl Store for PushMidRun {
    fn name(&self) -> &str {
        "push-mid-run"
    }
    async fn get(&self, k: Kind, d: &Digest) -> Result<Option<Object>, StoreError> {
        self.inner.get(k, d).await
    }
    async fn get_range(
        &self,
        k: Kind,
        d: &Digest,
        r: Range<u64>,
    ) -> Result<Option<Object>, StoreError> {
        self.inner.get_range(k, d, r).await
    }
    async fn head(&self, k: Kind, d: &Digest) -> Result<Option<u64>, StoreError> {
        self.inner.head(k, d).await
    }
    async fn put(&self, k: Kind, d: &Digest, b: ByteStream) -> Result<(), StoreError> {
        self.inner.put(k, d, b).await
    }
    async fn delete(&self, k: Kind, d: &Digest) -> Result<(), StoreError> {
        self.inner.delete(k, d).await
    }
    async fn list(&self, k: Kind) -> Result<Vec<Listed>, StoreError> {
        if k == Kind::Manifest && self.manifest_listings.fetch_add(1, Ordering::SeqCst) == 2 {
            manifest(&self.inner, &[self.reuse], None, None).await;
            self.pushed.store(true, Ordering::SeqCst);
        }
        self.inner.list(k).await
    }
    async fn quarantine(&self, k: Kind, d: &Digest) -> Result<(), StoreError> {
        self.inner.quarantine(k, d).await
    }
}

#[tokio::test]
async fn a_manifest_pushed_after_the_mark_keeps_the_old_block_it_reuses() {
    let inner = MemoryStore::new();
    let reuse = block(&inner, "reused").await;
    let garbage = block(&inner, "garbage").await;
    let s = Arc::new(PushMidRun {
        inner,
        reuse,
        manifest_listings: AtomicUsize::new(0),
        pushed: AtomicBool::new(false),
    });
    let stores = GcStores {
        objects: s.as_ref(),
        tags: &s.inner,
        records: &s.inner,
    };
    // Everything so far is older than the cutoff (grace zero): only the re-check saves `reuse`.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = collect(
        &stores,
        GcOptions {
            grace: Duration::ZERO,
            dry_run: false,
        },
    )
    .await
    .unwrap();
    assert!(s.pushed.load(Ordering::SeqCst));
    assert_eq!(r.rescued, 1, "{r:?}");
    assert!(
        has(s.as_ref(), Kind::Block, &reuse).await,
        "the reused block was swept"
    );
    assert!(!has(s.as_ref(), Kind::Block, &garbage).await);
}
