//! The tiered store's read path: try slower tiers, verify, backfill faster ones, count everything.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use prewarm_shared::wire::MAX_BLOCK_SIZE;
use prewarm_shared::Digest;

use std::time::Instant;

use super::super::metrics::{inc, ReadResult, TierCounters};
use super::super::tier::Role;
use super::super::{Kind, Object, StoreError, StoreExt};
use super::Inner;

impl Inner {
    pub(super) fn cap(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Block => MAX_BLOCK_SIZE,
            Kind::Manifest => self.max_manifest_bytes,
        }
    }

    pub(super) fn c(&self, tier: usize) -> &TierCounters {
        &self.counters.tiers[tier]
    }

    /// Counts a tier error; returns it if the tier is durable (no fail-open past the durable tier).
    pub(super) fn tier_error(&self, tier: usize, e: StoreError) -> Result<(), StoreError> {
        inc(&self.c(tier).errors);
        if tier == self.durable {
            return Err(e);
        }
        tracing::warn!(tier = %self.tiers[tier].name, error = %e, "tier failed; trying the next one");
        Ok(())
    }

    /// Counts a miss of local tier `n` (a read that began at `since`).
    pub(super) fn local_miss(&self, n: usize, since: Instant) {
        inc(&self.c(n).misses);
        self.reads
            .read(&self.tiers[n].name, ReadResult::Miss, since);
    }

    /// Counts a failed read of local tier `n`; see [`Inner::tier_error`].
    pub(super) fn local_error(
        &self,
        n: usize,
        e: StoreError,
        since: Instant,
    ) -> Result<(), StoreError> {
        self.reads
            .read(&self.tiers[n].name, ReadResult::Error, since);
        self.tier_error(n, e)
    }

    /// Tries tiers `from..to` (all of them non-local): first verified hit wins and is backfilled.
    pub(super) async fn fetch(
        &self,
        kind: Kind,
        digest: &Digest,
        tiers: Range<usize>,
    ) -> Result<Option<Bytes>, StoreError> {
        let mut failure = None;
        for n in tiers {
            let tier = &self.tiers[n];
            let since = Instant::now();
            let got = match tier.store.get(kind, digest).await {
                Ok(Some(o)) => read_bounded(o, self.cap(kind), &tier.name).await,
                Ok(None) => {
                    inc(&self.c(n).misses);
                    self.reads.read(&tier.name, ReadResult::Miss, since);
                    continue;
                }
                Err(e) => Err(e),
            };
            let bytes = match got {
                Ok(b) => b,
                Err(e) => {
                    self.reads.read(&tier.name, ReadResult::Error, since);
                    if let Err(e) = self.tier_error(n, e) {
                        failure = Some(e);
                    }
                    continue;
                }
            };
            let actual = Digest::of(&bytes);
            let bytes = if actual == *digest {
                bytes
            } else {
                inc(&self.c(n).integrity_failures);
                self.reads.read(&tier.name, ReadResult::Error, since);
                tracing::error!(tier = %tier.name, kind = kind.as_str(), %digest, %actual, "tier returned bytes with the wrong hash; not serving them");
                if n != self.durable {
                    if let Err(e) = tier.store.delete(kind, digest).await {
                        inc(&self.c(n).errors);
                        tracing::warn!(tier = %tier.name, error = %e, "could not drop a corrupt cached object");
                    }
                    continue;
                }
                match self.durable_damaged(kind, digest, n).await {
                    Ok(Some(good)) => good,
                    Ok(None) => continue,
                    Err(e) => {
                        failure = Some(e);
                        continue;
                    }
                }
            };
            inc(&self.c(n).hits);
            self.reads.hit(&tier.name, bytes.len() as u64, since);
            self.ram_keep(kind, digest, &bytes);
            self.backfill(kind, digest, &bytes, 0..n).await;
            return Ok(Some(bytes));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// The durable tier `n` returned bytes with the wrong hash. Read once more (a body mangled
    /// in transit reads right the second time, and is served); wrong again, the durable copy is
    /// damaged: it is quarantined there and the object reads as missing (404, and
    /// `missing-blocks` asks for it, so the next push repairs it). No faster tier had a good
    /// copy, or the read would not have come this far. An error means the quarantine failed.
    async fn durable_damaged(
        &self,
        kind: Kind,
        digest: &Digest,
        n: usize,
    ) -> Result<Option<Bytes>, StoreError> {
        let tier = &self.tiers[n];
        let again = match tier.store.get(kind, digest).await? {
            Some(o) => read_bounded(o, self.cap(kind), &tier.name).await?,
            None => return Ok(None),
        };
        if Digest::of(&again) == *digest {
            tracing::warn!(tier = %tier.name, %digest, "a second read of the durable copy hashed right; serving it");
            return Ok(Some(again));
        }
        tier.store.quarantine(kind, digest).await.inspect_err(|_| {
            inc(&self.c(n).errors);
        })?;
        Ok(None)
    }

    /// Writes verified bytes into each tier of `tiers` that admits them; failures are counted only.
    pub(super) async fn backfill(
        &self,
        kind: Kind,
        digest: &Digest,
        bytes: &Bytes,
        tiers: Range<usize>,
    ) {
        for n in tiers {
            let tier = &self.tiers[n];
            let len = bytes.len() as u64;
            if !tier.fits(len) || tier.budget.as_ref().is_some_and(|b| !b.try_take(len)) {
                inc(&self.c(n).backfill_skips);
                continue;
            }
            match tier.store.put_bytes(kind, digest, bytes.clone()).await {
                Ok(()) => inc(&self.c(n).backfills),
                Err(e) => {
                    inc(&self.c(n).errors);
                    tracing::warn!(tier = %tier.name, error = %e, "backfill failed");
                }
            }
        }
    }

    /// Index of the first tier that is not local (everything from there on is verified on read).
    pub(super) fn first_remote(&self) -> usize {
        self.tiers
            .iter()
            .position(|t| t.role != Role::Local)
            .unwrap_or(self.tiers.len())
    }

    /// The object from the in-process cache, if there is one and it holds it.
    pub(super) fn ram_get(&self, kind: Kind, digest: &Digest) -> Option<Bytes> {
        self.ram.as_ref()?.get(kind, digest)
    }

    /// Keeps bytes that are verified (or came from the local tier) in the in-process cache.
    pub(super) fn ram_keep(&self, kind: Kind, digest: &Digest, bytes: &Bytes) {
        if let Some(r) = &self.ram {
            r.insert_verified(kind, digest, bytes);
        }
    }

    pub(super) fn take_parked(&self, kind: Kind, digest: &Digest) -> Option<Bytes> {
        self.parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(kind, digest)
    }
}

/// Collects an object's body, refusing more than `cap` bytes.
async fn read_bounded(mut o: Object, cap: u64, tier: &str) -> Result<Bytes, StoreError> {
    if o.size > cap {
        return Err(StoreError::other(
            tier,
            format!("object of {} bytes is over the limit of {cap}", o.size),
        ));
    }
    let mut buf = BytesMut::with_capacity(o.size as usize);
    while let Some(piece) = o.body.next().await {
        let piece = piece?;
        if (buf.len() + piece.len()) as u64 > cap {
            return Err(StoreError::other(
                tier,
                format!("object body is over the limit of {cap} bytes"),
            ));
        }
        buf.extend_from_slice(&piece);
    }
    Ok(buf.freeze())
}

pub(super) fn slice(b: Bytes, range: Range<u64>) -> Result<Object, StoreError> {
    crate::slice_range("tiered", b, range)
}
