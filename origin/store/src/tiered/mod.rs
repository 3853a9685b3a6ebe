//! The tiered store: memory → local disk → Redis → S3 behind one [`Store`], read-through with verified backfill.
//!
//! # Policy
//! - **Reads** try the in-process [`RamCache`] of verified small objects first (when
//!   configured), then the tiers fastest first; bytes read whole from the local disk or verified
//!   from a slower tier are kept there.
//! - **Reads** try tiers fastest first. The local tier verifies its own whole reads (damage is
//!   quarantined there and reads as a miss, so a slower tier or the next push repairs it). A hit in a slower tier is read into memory (bounded by the object-size
//!   limit), hashed once, served, and backfilled into the faster tiers from those same bytes;
//!   the slow tier is never read twice. Bytes with the wrong hash are never served or
//!   backfilled: they are counted, dropped from the cache tier that held them, and the next tier
//!   is tried. Concurrent misses of one object share one fetch (single-flight).
//! - **Fail-open** is decided here, not in the backends: an error from a cache tier (Redis, or
//!   the local disk when S3 is durable) is counted and the next tier is tried. An error from the
//!   durable tier is returned (→ 503), because only it can say "this does not exist".
//! - **Writes** are verified, then acknowledged only once the durable tier (S3 when configured,
//!   else the local disk) has them; the cache tiers are then filled best-effort, subject to their
//!   size limit and byte budget.
//! - **Tags** are written to the durable tier, then to the hot tier. With S3 they are read from
//!   Redis, then S3 (backfilling Redis); they are never cached on local disk, where they would go
//!   stale. Without S3 the local disk holds them.
//! - `head` of an object that is only in the hot tier fetches and verifies it (the hot tier holds
//!   small objects only), so the size it reports is that of verified bytes; the bytes are parked
//!   for the `get` that follows in the same request.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use prewarm_shared::{Digest, Hasher};

use super::metrics::{inc, Counters, MetricsSnapshot, ReadMetrics, TierCounters, MEMORY_TIER};
use super::ram::RamCache;
use super::tier::{Parked, Role, Small, Tier};
use super::{ByteStream, Kind, Listed, Object, Store, StoreError, StoreExt};

/// Bytes parked between a `head` and its `get`, at most.
const PARKED_BYTES: u64 = 64 << 20;

/// A stack of tiers as one store. Cheap to clone.
#[derive(Clone)]
pub struct Tiered {
    inner: Arc<Inner>,
}

struct Inner {
    tiers: Vec<Tier>,
    durable: usize,
    max_manifest_bytes: u64,
    counters: Counters,
    /// Read latency and bytes served per tier (Prometheus series the server registers).
    reads: ReadMetrics,
    flights: Mutex<HashMap<(Kind, Digest), Flight>>,
    parked: Mutex<Parked>,
    ram: Option<RamCache>,
}

type Flight = Shared<BoxFuture<'static, Result<Option<Bytes>, FlightError>>>;

/// A fetch failure shared by every request that joined the fetch.
#[derive(Debug, Clone)]
struct FlightError {
    unavailable: bool,
    store: String,
    message: String,
}

impl From<FlightError> for StoreError {
    fn from(e: FlightError) -> Self {
        if e.unavailable {
            StoreError::unavailable(&e.store, e.message)
        } else {
            StoreError::other(&e.store, e.message)
        }
    }
}

impl From<&StoreError> for FlightError {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::Unavailable { store, source } => Self {
                unavailable: true,
                store: store.clone(),
                message: source.to_string(),
            },
            StoreError::Other { store, source } => Self {
                unavailable: false,
                store: store.clone(),
                message: source.to_string(),
            },
            StoreError::Integrity { .. } => Self {
                unavailable: false,
                store: "tiered".into(),
                message: e.to_string(),
            },
        }
    }
}

/// Why a tier stack was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid tier stack: {0}")]
pub struct TierStackError(&'static str);

impl Tiered {
    /// Stacks `local`, `hot` and `remote` (each optional, at least one of local/remote), with
    /// `ram` in front of them all. The remote tier is durable when present, else the local one.
    pub fn new(
        local: Option<Tier>,
        hot: Option<Tier>,
        remote: Option<Tier>,
        ram: Option<RamCache>,
        max_manifest_bytes: u64,
    ) -> Result<Self, TierStackError> {
        if local.as_ref().is_some_and(|t| t.role != Role::Local)
            || hot.as_ref().is_some_and(|t| t.role != Role::Hot)
            || remote.as_ref().is_some_and(|t| t.role != Role::Remote)
        {
            return Err(TierStackError(
                "each tier must be passed in the slot of its role",
            ));
        }
        let has_remote = remote.is_some();
        let mut tiers: Vec<Tier> = [local, hot, remote].into_iter().flatten().collect();
        let durable = if has_remote {
            tiers.len() - 1
        } else {
            tiers
                .iter()
                .position(|t| t.role == Role::Local)
                .ok_or(TierStackError("a local or a remote tier is needed"))?
        };
        tiers[durable].required = true;
        let counters = Counters {
            tiers: tiers.iter().map(|_| TierCounters::default()).collect(),
            ..Counters::default()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                tiers,
                durable,
                max_manifest_bytes,
                counters,
                reads: ReadMetrics::default(),
                flights: Mutex::new(HashMap::new()),
                parked: Mutex::new(Parked::new(PARKED_BYTES)),
                ram,
            }),
        })
    }

    /// Names of the tiers, fastest first, with the durable one marked.
    pub fn describe(&self) -> String {
        let i = &self.inner;
        let ram = i.ram.as_ref().map(|_| "memory".to_string());
        let tiers = i.tiers.iter().enumerate().map(|(n, t)| {
            if n == i.durable {
                format!("{} (durable)", t.name)
            } else {
                t.name.clone()
            }
        });
        ram.into_iter().chain(tiers).collect::<Vec<_>>().join(" → ")
    }

    /// The read series, for the server to register into its registry.
    pub fn read_metrics(&self) -> &ReadMetrics {
        &self.inner.reads
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        let i = &self.inner;
        MetricsSnapshot::take(&i.counters, &i.tiers, i.ram.as_ref().map(RamCache::metrics))
    }
}

impl Tiered {
    /// The full read-through fetch of everything past the local tier, shared by concurrent callers.
    async fn fetch_coalesced(
        &self,
        kind: Kind,
        digest: &Digest,
    ) -> Result<Option<Bytes>, StoreError> {
        let flight = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(&(kind, *digest)) {
                Some(f) => {
                    inc(&self.inner.counters.coalesced);
                    f.clone()
                }
                None => {
                    let inner = self.inner.clone();
                    let d = *digest;
                    let fut = async move {
                        let r = inner
                            .fetch(kind, &d, inner.first_remote()..inner.tiers.len())
                            .await
                            .map_err(|e| FlightError::from(&e));
                        inner
                            .flights
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&(kind, d));
                        r
                    }
                    .boxed()
                    .shared();
                    flights.insert((kind, *digest), fut.clone());
                    fut
                }
            }
        };
        let got = flight.await.map_err(StoreError::from)?;
        if got.is_none() {
            inc(&self.inner.counters.not_found);
        }
        Ok(got)
    }
}

#[async_trait::async_trait]
impl Store for Tiered {
    fn name(&self) -> &str {
        "tiered"
    }

    async fn get(&self, kind: Kind, digest: &Digest) -> Result<Option<Object>, StoreError> {
        let i = &self.inner;
        if let Some(b) = i.take_parked(kind, digest) {
            return Ok(Some(Object::from_bytes(b)));
        }
        let since = std::time::Instant::now();
        if let Some(b) = i.ram_get(kind, digest) {
            i.reads.hit(MEMORY_TIER, b.len() as u64, since);
            return Ok(Some(Object::from_bytes(b)));
        }
        for n in 0..i.first_remote() {
            let since = std::time::Instant::now();
            let fast = match i.tiers[n].read_small(kind, digest, true) {
                Some(Ok(Some(Small::Bytes(b)))) => {
                    i.ram_keep(kind, digest, &b);
                    Ok(Some(Object::from_bytes(b)))
                }
                Some(Ok(_)) => Ok(None),
                Some(Err(e)) => Err(e),
                None => i.tiers[n].store.get(kind, digest).await,
            };
            match fast {
                Ok(Some(o)) => {
                    inc(&i.c(n).hits);
                    i.reads.hit(&i.tiers[n].name, o.size, since);
                    return Ok(Some(o));
                }
                Ok(None) => i.local_miss(n, since),
                Err(e) => i.local_error(n, e, since)?,
            }
        }
        Ok(self
            .fetch_coalesced(kind, digest)
            .await?
            .map(Object::from_bytes))
    }

    async fn get_range(
        &self,
        kind: Kind,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<Option<Object>, StoreError> {
        let i = &self.inner;
        if let Some(b) = i.take_parked(kind, digest) {
            return slice(b, range).map(Some);
        }
        let since = std::time::Instant::now();
        if let Some(b) = i.ram_get(kind, digest) {
            let o = slice(b, range)?;
            i.reads.hit(MEMORY_TIER, o.size, since);
            return Ok(Some(o));
        }
        for n in 0..i.first_remote() {
            let since = std::time::Instant::now();
            match i.tiers[n]
                .store
                .get_range(kind, digest, range.clone())
                .await
            {
                Ok(Some(o)) => {
                    inc(&i.c(n).hits);
                    i.reads.hit(&i.tiers[n].name, o.size, since);
                    return Ok(Some(o));
                }
                Ok(None) => i.local_miss(n, since),
                Err(e) => i.local_error(n, e, since)?,
            }
        }
        match self.fetch_coalesced(kind, digest).await? {
            Some(b) => slice(b, range).map(Some),
            None => Ok(None),
        }
    }

    async fn head(&self, kind: Kind, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let i = &self.inner;
        if let Some(n) = i
            .parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .peek_len(kind, digest)
        {
            return Ok(Some(n));
        }
        if let Some(n) = i.ram.as_ref().and_then(|r| r.len_of(kind, digest)) {
            return Ok(Some(n));
        }
        let mut failure = None;
        for n in 0..i.tiers.len() {
            let tier = &i.tiers[n];
            let found = match tier.role {
                // Small and close: fetch and verify now, so the size is that of good bytes.
                Role::Hot => match i.fetch(kind, digest, n..n + 1).await {
                    Ok(Some(b)) => {
                        let len = b.len() as u64;
                        // `fetch` kept them in memory when it could; park only what it did not.
                        if i.ram
                            .as_ref()
                            .and_then(|r| r.len_of(kind, digest))
                            .is_none()
                        {
                            i.parked
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .park(kind, *digest, b);
                        }
                        Ok(Some(len))
                    }
                    other => other.map(|_| None),
                },
                Role::Local => match tier.read_small(kind, digest, false) {
                    Some(Ok(Some(Small::Size(n)))) => Ok(Some(n)),
                    Some(Ok(_)) => Ok(None),
                    Some(Err(e)) => Err(e),
                    None => tier.store.head(kind, digest).await,
                },
                Role::Remote => tier.store.head(kind, digest).await,
            };
            match found {
                Ok(Some(len)) => return Ok(Some(len)),
                Ok(None) => {}
                Err(e) => {
                    if let Err(e) = i.tier_error(n, e) {
                        failure = Some(e);
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        kind: Kind,
        digest: &Digest,
        mut body: ByteStream,
    ) -> Result<(), StoreError> {
        let i = &self.inner;
        if i.tiers.len() == 1 {
            return i.tiers[0].store.put(kind, digest, body).await;
        }
        let cap = i.cap(kind);
        let mut h = Hasher::new();
        let mut buf = BytesMut::new();
        while let Some(piece) = body.next().await {
            let piece = piece?;
            if (buf.len() + piece.len()) as u64 > cap {
                return Err(StoreError::other(
                    "tiered",
                    format!("{} over the limit of {cap} bytes", kind.as_str()),
                ));
            }
            h.update(&piece);
            buf.extend_from_slice(&piece);
        }
        let actual = h.finish();
        if actual != *digest {
            return Err(StoreError::Integrity {
                kind: kind.as_str(),
                expected: *digest,
                actual,
            });
        }
        let bytes = buf.freeze();
        if let Err(e) = i.tiers[i.durable]
            .store
            .put_bytes(kind, digest, bytes.clone())
            .await
        {
            inc(&i.c(i.durable).errors);
            return Err(e);
        }
        i.backfill(kind, digest, &bytes, 0..i.durable).await;
        i.backfill(kind, digest, &bytes, i.durable + 1..i.tiers.len())
            .await;
        Ok(())
    }

    async fn delete(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError> {
        let i = &self.inner;
        i.take_parked(kind, digest);
        if let Some(r) = &i.ram {
            r.remove(kind, digest);
        }
        let mut first_err = None;
        for (n, t) in i.tiers.iter().enumerate() {
            if let Err(e) = t.store.delete(kind, digest).await {
                inc(&i.c(n).errors);
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Listed>, StoreError> {
        self.list_all(kind).await
    }

    async fn quarantine(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError> {
        self.quarantine_all(kind, digest).await
    }

    /// Asks the durable tier alone (see [`Store::head_durable`]): a block still on the local
    /// disk but gone from S3 is missing, so a re-push uploads it again.
    async fn head_durable(&self, kind: Kind, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let i = &self.inner;
        match i.tiers[i.durable].store.head(kind, digest).await {
            Ok(found) => Ok(found),
            Err(e) => {
                inc(&i.c(i.durable).errors);
                Err(e)
            }
        }
    }
}

mod listing;
mod read;
use read::slice;

mod records;
mod tags;

#[cfg(test)]
mod tests;
