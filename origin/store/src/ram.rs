//! Verified bytes of hot small objects kept in this process's memory, in front of every tier.
//!
//! Only bytes the tiered store already trusts enter it: bytes read from the local disk tier
//! (written there only after verification) and bytes from Redis or S3 after their hash was
//! checked. So a hit is served without a hash, a syscall or a network hop — the per-request
//! SHA-256 and Redis round trip were what held a stateless origin to a fifth of nginx's rate
//! (docs/BENCHMARKS.md). Objects are immutable (content-addressed), so nothing goes stale; a
//! `delete` through the tiered store evicts the entry too.
//!
//! Bounded by bytes (moka's weigher) and by object size; moka's TinyLFU admission keeps a scan
//! of cold blocks (a full pull) from flushing the blocks that are really hot.

use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use moka::sync::Cache;
use prewarm_shared::Digest;

use super::metrics::{inc, RamMetrics};
use super::Kind;

/// Defaults of `[memory]` in the config.
pub struct RamCacheDefaults;

impl RamCacheDefaults {
    pub const MAX_BYTES: u64 = 256 << 20;
    pub const MAX_OBJECT_BYTES: u64 = 1 << 20;
}

/// An in-process cache of verified objects. Cheap to clone (shared).
#[derive(Clone)]
pub struct RamCache {
    cache: Cache<(Kind, Digest), Bytes>,
    max_object_bytes: u64,
    counters: std::sync::Arc<RamCounters>,
}

#[derive(Debug, Default)]
struct RamCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
}

impl RamCache {
    /// A cache of at most `max_bytes`, holding objects of at most `max_object_bytes` each.
    pub fn new(max_bytes: u64, max_object_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .build();
        Self {
            cache,
            max_object_bytes,
            counters: Default::default(),
        }
    }

    /// The object's bytes, if held.
    pub(crate) fn get(&self, kind: Kind, digest: &Digest) -> Option<Bytes> {
        let got = self.cache.get(&(kind, *digest));
        inc(if got.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        });
        got
    }

    /// The object's size, if held (does not count as a hit or a miss).
    pub(crate) fn len_of(&self, kind: Kind, digest: &Digest) -> Option<u64> {
        self.cache.get(&(kind, *digest)).map(|b| b.len() as u64)
    }

    /// Keeps `bytes`, which the caller has verified (or read from the trusted local tier), if
    /// they are small enough.
    pub(crate) fn insert_verified(&self, kind: Kind, digest: &Digest, bytes: &Bytes) {
        if bytes.len() as u64 > self.max_object_bytes {
            return;
        }
        // Callers pass whole objects (never a slice of a bigger buffer), so a clone is exact.
        self.cache.insert((kind, *digest), bytes.clone());
        inc(&self.counters.inserts);
    }

    pub(crate) fn remove(&self, kind: Kind, digest: &Digest) {
        self.cache.invalidate(&(kind, *digest));
    }

    pub(crate) fn metrics(&self) -> RamMetrics {
        use std::sync::atomic::Ordering::Relaxed;
        RamMetrics {
            hits: self.counters.hits.load(Relaxed),
            misses: self.counters.misses.load(Relaxed),
            inserts: self.counters.inserts.load(Relaxed),
            bytes: self.cache.weighted_size(),
            max_bytes: self.cache.policy().max_capacity().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_small_objects_and_refuses_big_ones() {
        let c = RamCache::new(1 << 20, 10);
        let (small, big) = (
            Bytes::from_static(b"0123456789"),
            Bytes::from(vec![7u8; 11]),
        );
        let (ds, db) = (Digest::of(&small), Digest::of(&big));
        c.insert_verified(Kind::Block, &ds, &small);
        c.insert_verified(Kind::Block, &db, &big);
        assert_eq!(c.get(Kind::Block, &ds), Some(small.clone()));
        assert_eq!(c.get(Kind::Block, &db), None, "over max_object_bytes");
        assert_eq!(
            c.get(Kind::Manifest, &ds),
            None,
            "kinds are separate key spaces"
        );
        assert_eq!(c.len_of(Kind::Block, &ds), Some(10));
        c.remove(Kind::Block, &ds);
        assert_eq!(c.get(Kind::Block, &ds), None);
        let m = c.metrics();
        assert_eq!((m.hits, m.misses, m.inserts), (1, 3, 1));
    }

    #[test]
    fn is_bounded_by_bytes() {
        let c = RamCache::new(64 << 10, 64 << 10);
        for i in 0..64u32 {
            let b = Bytes::from(vec![i as u8; 4 << 10]);
            c.insert_verified(Kind::Block, &Digest::of(&b), &b);
        }
        c.cache.run_pending_tasks();
        assert!(
            c.cache.weighted_size() <= 64 << 10,
            "held {} bytes",
            c.cache.weighted_size()
        );
    }
}
