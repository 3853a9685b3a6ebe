//! The store contract from outside `prewarm-store` (its `testing` feature): every backend and
//! the tiered stack with and without its memory cache pass the same conformance suite.

use std::sync::Arc;

use prewarm_store::{
    conformance, DiskStore, MemoryStore, RamCache, Records, RedisOptions, RedisStore, RedisTls,
    Role, S3Credentials, S3Options, S3Store, Secret, SecretUrl, Store, TagStore, Tier, Tiered,
};
use prewarm_tests::services::{Moto, Redis};

/// Runs the object, tag and record suites against `store`.
async fn suite<S: Store + TagStore + Records>(store: &S) {
    conformance::run_all(store).await;
    conformance::tags(store).await;
    conformance::records(store).await;
}

#[test]
fn every_backend_and_the_tiered_stack_keep_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, redis) = (Moto::start(), Redis::start());
    moto.create_bucket("conformance");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        suite(&MemoryStore::new()).await;
        let disk = DiskStore::open(dir.path().join("disk")).await.unwrap();
        suite(&disk).await;
        let redis = Arc::new(
            RedisStore::new(RedisOptions {
                url: SecretUrl::new(redis.url()),
                namespace: "conformance".into(),
                ttl: std::time::Duration::from_secs(60),
                max_object_bytes: 4 << 20,
                timeout: std::time::Duration::from_secs(2),
                tls: RedisTls::default(),
            })
            .unwrap(),
        );
        suite(&*redis).await;
        let s3 = Arc::new(
            S3Store::new(&S3Options {
                endpoint: Some(moto.endpoint()),
                region: Some("us-east-1".into()),
                bucket: "conformance".into(),
                prefix: "t/".into(),
                credentials: Some(S3Credentials {
                    access_key_id: "test".into(),
                    secret_access_key: Secret::new("test"),
                    session_token: None,
                }),
                connect_timeout: std::time::Duration::from_secs(2),
                timeout: std::time::Duration::from_secs(30),
            })
            .await,
        );
        suite(&*s3).await;
        // The whole stack, local → Redis → S3, with and without the memory decorator.
        for ram in [None, Some(RamCache::new(1 << 20, 64 << 10))] {
            let local = DiskStore::open(dir.path().join(format!("local-{}", ram.is_some())))
                .await
                .unwrap();
            let tiered = Tiered::new(
                Some(Tier::local_disk(local)),
                Some(Tier::new(Role::Hot, redis.clone())),
                Some(Tier::new(Role::Remote, s3.clone())),
                ram,
                1 << 20,
            )
            .unwrap();
            suite(&tiered).await;
        }
    });
}
