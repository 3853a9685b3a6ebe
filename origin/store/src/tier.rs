//! One tier of a [`super::Tiered`] store: its store, role, admission policy and health probe.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prewarm_shared::Digest;

use super::{DiskStore, Kind, MemoryStore, RedisStore, S3Store, Store, StoreError, TagStore};

/// Where a tier sits and how far its bytes are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// This machine's disk. Written only after verification (temp file, hash, rename); whole
    /// reads are verified again, and damage found is quarantined and reads as a miss.
    Local,
    /// A shared cache (Redis). Everything read from it is verified; it is never the durable tier.
    Hot,
    /// The durable regional store (S3). Reads are verified.
    Remote,
}

/// Answers "is this tier reachable?" for the start-up check and `/readyz`.
#[async_trait::async_trait]
pub trait Probe: Send + Sync + 'static {
    async fn probe(&self) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl Probe for RedisStore {
    async fn probe(&self) -> Result<(), StoreError> {
        RedisStore::probe(self).await
    }
}

#[async_trait::async_trait]
impl Probe for S3Store {
    async fn probe(&self) -> Result<(), StoreError> {
        S3Store::probe(self).await
    }
}

#[async_trait::async_trait]
impl Probe for DiskStore {
    async fn probe(&self) -> Result<(), StoreError> {
        self.head(Kind::Block, &Digest::of(b"")).await.map(|_| ())
    }
}

#[async_trait::async_trait]
impl Probe for MemoryStore {
    async fn probe(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A store in its place in the tier stack.
pub struct Tier {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tags: Option<Arc<dyn TagStore>>,
    /// Mutable records ([`crate::Records`]); the tiered stack uses the durable tier's only.
    pub(crate) records: Option<Arc<dyn crate::Records>>,
    pub(crate) probe: Arc<dyn Probe>,
    /// Objects bigger than this are never put here.
    pub(crate) max_object_bytes: Option<u64>,
    pub(crate) budget: Option<Budget>,
    /// `/readyz` fails while a required tier is down (the durable tier always is).
    pub(crate) required: bool,
    /// Set for a local disk tier: small objects are then read without the blocking-pool hop.
    pub(crate) files: Option<DiskStore>,
}

impl Tier {
    pub fn new<S: Store + TagStore + crate::Records + Probe>(role: Role, store: Arc<S>) -> Self {
        Self {
            name: store.name().to_string(),
            role,
            store: store.clone(),
            tags: Some(store.clone()),
            records: Some(store.clone()),
            probe: store,
            max_object_bytes: None,
            budget: None,
            required: false,
            files: None,
        }
    }

    /// The local disk tier, with the small-object fast path (see [`Tier::read_small`]).
    pub fn local_disk(disk: DiskStore) -> Self {
        let files = disk.clone();
        Self {
            files: Some(files),
            ..Self::new(Role::Local, Arc::new(disk))
        }
    }

    /// A tier built from separate parts (tests wrap stores to inject faults).
    pub fn from_parts(
        role: Role,
        store: Arc<dyn Store>,
        tags: Option<Arc<dyn TagStore>>,
        probe: Arc<dyn Probe>,
    ) -> Self {
        Self {
            name: store.name().to_string(),
            role,
            store,
            tags,
            records: None,
            probe,
            max_object_bytes: None,
            budget: None,
            required: false,
            files: None,
        }
    }

    /// Only objects up to `max` bytes, and only `budget` bytes per `window`, are put here.
    pub fn with_limits(mut self, max: u64, budget: u64, window: Duration) -> Self {
        self.max_object_bytes = Some(max);
        self.budget = Some(Budget::new(budget, window));
        self
    }

    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// For a local disk tier: the object's size, or (up to [`SMALL_READ`]) its verified bytes,
    /// read with plain syscalls on the calling thread. From the page cache that takes
    /// microseconds, far less than a hop through tokio's blocking pool, which capped block GETs
    /// at a fifth of nginx's rate. `None`: not a disk tier (or a file the size shows damaged,
    /// or an unreadable one), use the store, whose own read quarantines it.
    pub(crate) fn read_small(
        &self,
        kind: Kind,
        digest: &Digest,
        want_bytes: bool,
    ) -> Option<Result<Option<Small>, StoreError>> {
        let disk = self.files.as_ref()?;
        let path = disk.object_path(kind, digest);
        let err = |e: std::io::Error| StoreError::other("disk", e);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Ok(None)),
            Err(e) => return Some(Err(err(e))),
        };
        if !meta.is_file() || !super::disk::plausible_size(kind, digest, meta.len()) {
            return None;
        }
        if !want_bytes {
            return Some(Ok(Some(Small::Size(meta.len()))));
        }
        if meta.len() > SMALL_READ {
            return None;
        }
        Some(match std::fs::read(&path) {
            // Verified like every whole read of the disk store: damage is quarantined, a miss.
            Ok(b) => Ok(disk
                .check_bytes(
                    digest,
                    &path,
                    Some(super::disk::identity(&meta)),
                    Bytes::from(b),
                )
                .map(Small::Bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if super::disk::is_eio(&e) => return None,
            Err(e) => Err(err(e)),
        })
    }

    pub(crate) fn fits(&self, len: u64) -> bool {
        self.max_object_bytes.is_none_or(|m| len <= m)
    }
}

/// Objects up to this size are read from the local disk in one syscall (see [`Tier::read_small`]).
pub(crate) const SMALL_READ: u64 = 256 << 10;

/// What [`Tier::read_small`] found.
pub(crate) enum Small {
    Size(u64),
    Bytes(Bytes),
}

/// A client-side byte budget over a sliding window (the TTL): what was added more than one window
/// ago has expired on the server and no longer counts.
pub struct Budget {
    limit: u64,
    window: Duration,
    state: Mutex<(VecDeque<(Instant, u64)>, u64)>,
}

impl Budget {
    pub fn new(limit: u64, window: Duration) -> Self {
        Self {
            limit,
            window,
            state: Mutex::new((VecDeque::new(), 0)),
        }
    }

    /// Reserves `len` bytes if they fit; `false` means skip this write.
    pub fn try_take(&self, len: u64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while s
            .0
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= self.window)
        {
            let (_, n) = s.0.pop_front().unwrap_or((now, 0));
            s.1 -= n;
        }
        if s.1 + len > self.limit {
            return false;
        }
        s.0.push_back((now, len));
        s.1 += len;
        true
    }

    pub fn used(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// Verified bytes a `head` fetched from the hot tier, handed to the `get` that follows it in the
/// same request, so the object is read and hashed once. Bounded; oldest entries go first.
pub(crate) struct Parked {
    cap: u64,
    bytes: u64,
    map: HashMap<(Kind, Digest), Bytes>,
    order: VecDeque<(Kind, Digest)>,
}

impl Parked {
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            cap,
            bytes: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn park(&mut self, kind: Kind, digest: Digest, b: Bytes) {
        if b.len() as u64 > self.cap || self.map.contains_key(&(kind, digest)) {
            return;
        }
        while self.bytes + b.len() as u64 > self.cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(v) = self.map.remove(&old) {
                self.bytes -= v.len() as u64;
            }
        }
        self.bytes += b.len() as u64;
        self.map.insert((kind, digest), b);
        self.order.push_back((kind, digest));
    }

    pub(crate) fn peek_len(&self, kind: Kind, digest: &Digest) -> Option<u64> {
        self.map.get(&(kind, *digest)).map(|b| b.len() as u64)
    }

    pub(crate) fn take(&mut self, kind: Kind, digest: &Digest) -> Option<Bytes> {
        let b = self.map.remove(&(kind, *digest))?;
        self.bytes -= b.len() as u64;
        self.order.retain(|k| k != &(kind, *digest));
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_past_the_limit_and_frees_after_the_window() {
        let b = Budget::new(100, Duration::from_millis(0));
        assert!(b.try_take(60));
        let b2 = Budget::new(100, Duration::from_secs(3600));
        assert!(b2.try_take(60) && !b2.try_take(50) && b2.try_take(40));
        assert_eq!(b2.used(), 100);
        // A zero window expires everything at once.
        assert!(b.try_take(100));
    }

    #[test]
    fn parked_is_bounded() {
        let mut p = Parked::new(10);
        let (a, c) = (Digest::of(b"a"), Digest::of(b"c"));
        p.park(Kind::Block, a, Bytes::from_static(b"123456"));
        p.park(Kind::Block, c, Bytes::from_static(b"123456"));
        assert_eq!(p.peek_len(Kind::Block, &a), None, "oldest evicted");
        assert_eq!(p.take(Kind::Block, &c).as_deref(), Some(&b"123456"[..]));
        assert_eq!(p.take(Kind::Block, &c), None);
    }
}
