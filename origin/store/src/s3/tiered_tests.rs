//! The tiered stack on real tiers (a disk directory, Redis, S3 on moto): conformance, a bucket emptied under it, a damaged durable copy.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prewarm_shared::Digest;

use super::tests::test_store;
use super::S3Store;
use crate::secret::SecretUrl;
use crate::{
    conformance, DiskStore, Kind, RedisOptions, RedisStore, RedisTls, Role, Store, StoreExt, Tier,
    Tiered,
};

struct Real {
    tiered: Tiered,
    disk: DiskStore,
    s3: S3Store,
    _dir: tempfile::TempDir,
}

/// disk → Redis → S3, each on a fresh directory, namespace and bucket (`None`: skip).
async fn real_stack() -> Option<Real> {
    let s3 = test_store().await?;
    let url = crate::test_service_env("PREWARM_TEST_REDIS_URL")?;
    let redis = RedisStore::new(RedisOptions {
        url: SecretUrl::new(url),
        namespace: format!("prewarm-tiered-{:08x}", rand::random::<u32>()),
        ttl: Duration::from_secs(600),
        max_object_bytes: 1 << 20,
        timeout: Duration::from_secs(2),
        tls: RedisTls::default(),
    })
    .unwrap();
    redis.probe().await.expect("Redis answers PING");
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskStore::open(dir.path()).await.unwrap();
    let tiered = Tiered::new(
        Some(Tier::local_disk(disk.clone())),
        Some(Tier::new(Role::Hot, Arc::new(redis))),
        Some(Tier::new(Role::Remote, Arc::new(s3.clone()))),
        None,
        1 << 20,
    )
    .unwrap();
    Some(Real {
        tiered,
        disk,
        s3,
        _dir: dir,
    })
}

#[tokio::test]
async fn conformance_suite_on_real_tiers() {
    let Some(r) = real_stack().await else { return };
    conformance::run_all(&r.tiered).await;
    conformance::tags(&r.tiered).await;
    conformance::records(&r.tiered).await;
}

/// Finding 11: with the durable copy gone but the local disk still holding the block, the
/// durable answer says missing (so a re-push uploads it), and the upload reaches S3.
#[tokio::test]
async fn durable_answer_sees_a_bucket_emptied_under_the_stack() {
    let Some(r) = real_stack().await else { return };
    let bytes = Bytes::from(format!("emptied-{}", rand::random::<u64>()));
    let d = Digest::of(&bytes);
    r.tiered
        .put_bytes(Kind::Block, &d, bytes.clone())
        .await
        .unwrap();
    r.s3.delete(Kind::Block, &d).await.unwrap();
    assert!(r.disk.head(Kind::Block, &d).await.unwrap().is_some());
    assert!(r.tiered.head(Kind::Block, &d).await.unwrap().is_some());
    assert_eq!(r.tiered.head_durable(Kind::Block, &d).await.unwrap(), None);
    r.tiered
        .put_bytes(Kind::Block, &d, bytes.clone())
        .await
        .unwrap();
    assert_eq!(
        r.s3.get_bytes(Kind::Block, &d).await.unwrap(),
        Some(bytes.clone())
    );
    assert_eq!(
        r.tiered.head_durable(Kind::Block, &d).await.unwrap(),
        Some(bytes.len() as u64)
    );
}

/// A damaged durable copy is never served: it is quarantined in S3 (moved under
/// `quarantine-v1/`), reads as missing, and the next put repairs it.
#[tokio::test]
async fn damaged_durable_copy_is_quarantined_and_reads_missing() {
    let Some(r) = real_stack().await else { return };
    let bytes = Bytes::from(format!("damaged-{}", rand::random::<u64>()));
    let d = Digest::of(&bytes);
    let key = r.s3.object_key(Kind::Block, &d);
    r.s3.put_small(&key, Bytes::from_static(b"not these bytes"))
        .await
        .unwrap();
    assert!(r.tiered.get(Kind::Block, &d).await.unwrap().is_none());
    assert!(r
        .tiered
        .get_range(Kind::Block, &d, 0..3)
        .await
        .unwrap()
        .is_none());
    assert_eq!(r.s3.head(Kind::Block, &d).await.unwrap(), None);
    assert_eq!(r.tiered.head_durable(Kind::Block, &d).await.unwrap(), None);
    let aside =
        r.s3.list_keys(&format!("t/quarantine-v1/block/{}", d.hex()))
            .await
            .unwrap();
    assert_eq!(aside.len(), 1, "the damaged copy is kept aside: {aside:?}");
    assert!(
        r.disk.head(Kind::Block, &d).await.unwrap().is_none(),
        "never backfilled"
    );
    r.tiered
        .put_bytes(Kind::Block, &d, bytes.clone())
        .await
        .unwrap();
    assert_eq!(
        r.tiered.get_bytes(Kind::Block, &d).await.unwrap(),
        Some(bytes)
    );
}
