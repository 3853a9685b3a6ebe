//! Faults injected under the stores: a Redis of our own that runs out of memory, the tiered stack on a full disk, a damaged local copy.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::conformance::faults;
use super::{RedisOptions, RedisStore, RedisTls, StoreExt};
use crate::SecretUrl;

/// A `redis-server` of our own on a free port, with a tiny `maxmemory` and no eviction, so
/// writes start failing with `OOM`. Killed on drop (only this process).
struct TinyRedis {
    child: Child,
    port: u16,
}

impl TinyRedis {
    fn start(maxmemory: &str) -> Option<TinyRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let spawned = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxmemory", maxmemory, "--maxmemory-policy", "noeviction"])
            .stdout(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => Some(TinyRedis { child, port }),
            Err(e) => {
                assert!(
                    std::env::var("PREWARM_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "cannot start redis-server ({e}) but PREWARM_REQUIRE_SERVICES=1"
                );
                None
            }
        }
    }
}

impl Drop for TinyRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis refusing writes (`OOM command not allowed`) part-way through a run of puts: each
/// put fails whole, nothing wrong or partial is visible, acknowledged puts read back.
#[tokio::test]
async fn redis_out_of_memory_stores_nothing_wrong() {
    let Some(redis) = TinyRedis::start("3mb") else {
        return;
    };
    let store = RedisStore::new(RedisOptions {
        url: SecretUrl::new(format!("redis://127.0.0.1:{}", redis.port)),
        namespace: "faults".into(),
        ttl: Duration::from_secs(600),
        max_object_bytes: 8 << 20,
        timeout: Duration::from_secs(5),
        tls: RedisTls::default(),
    })
    .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if store.probe().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "our redis-server on {} never answered", redis.port);
    let tried = faults::fill_until_full(&store, 100_000, 4, 8, 200).await;
    assert!(tried.iter().any(|a| a.stored), "some puts fit first");
    faults::nothing_wrong_is_visible(&store, &tried).await;
}

/// The tiered stack the server runs (memory in front of the local disk) on a full disk: the
/// same guarantee through the decorators, and nothing wrong kept in memory either.
#[tokio::test]
async fn tiered_on_a_full_disk_stores_nothing_wrong() {
    let Some(fs) = faults::Tmpfs::mount(256 << 10) else {
        return;
    };
    let disk = super::DiskStore::open(fs.sub("data")).await.unwrap();
    let ram = super::RamCache::new(1 << 20, 64 << 10);
    let stack = super::Tiered::new(
        Some(super::Tier::local_disk(disk)),
        None,
        None,
        Some(ram),
        1 << 20,
    )
    .unwrap();
    let tried = faults::fill_until_full(&stack, 40_000, 5, 10, 100).await;
    faults::nothing_wrong_is_visible(&stack, &tried).await;
}

/// A damaged file in a local disk tier that caches a durable one: the read quarantines it,
/// serves the durable copy (verified), and the backfill puts good bytes back on disk. Small
/// objects (the fast path) and bigger ones (the store's own read) alike.
#[tokio::test]
async fn damaged_local_copy_is_served_from_the_durable_tier_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let disk = super::DiskStore::open(dir.path()).await.unwrap();
    let remote = std::sync::Arc::new(super::MemoryStore::new());
    let stack = super::Tiered::new(
        Some(super::Tier::local_disk(disk.clone())),
        None,
        Some(super::Tier::new(super::Role::Remote, remote)),
        None,
        1 << 20,
    )
    .unwrap();
    for len in [10_000usize, 600_000] {
        let bytes: bytes::Bytes = (0..len).map(|i| (i % 247) as u8).collect::<Vec<_>>().into();
        let d = prewarm_shared::Digest::of(&bytes);
        stack
            .put_bytes(super::Kind::Block, &d, bytes.clone())
            .await
            .unwrap();
        let path = disk.object_path(super::Kind::Block, &d);
        let mut wrong = bytes.to_vec();
        wrong[len / 2] ^= 1;
        std::fs::write(&path, &wrong).unwrap();
        let got = stack.get_bytes(super::Kind::Block, &d).await.unwrap();
        assert_eq!(
            got.as_ref(),
            Some(&bytes),
            "{len} bytes: served the durable copy"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{len} bytes: disk repaired"
        );
    }
    assert_eq!(stack.metrics().tiers[0].quarantined, 2);
}
