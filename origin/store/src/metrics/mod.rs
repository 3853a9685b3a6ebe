//! Counters of the tiered store (hits, integrity failures, errors per tier), its read series and its health report.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::tier::Role;

mod reads;
pub(crate) use reads::ReadResult;
pub use reads::{ReadMetrics, MEMORY_TIER};

/// Counters of one tier.
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) integrity_failures: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) backfills: AtomicU64,
    pub(crate) backfill_skips: AtomicU64,
}

/// Counters of the whole stack.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) tiers: Vec<TierCounters>,
    /// Objects found in no tier.
    pub(crate) not_found: AtomicU64,
    /// Reads that waited for another request's fetch instead of starting their own.
    pub(crate) coalesced: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// What `GET /metrics` reports of the cache.
#[derive(Debug, Clone, Serialize)]
pub struct RamMetrics {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    /// Bytes held now (moka settles its bookkeeping lazily, so this can lag by a few writes).
    pub bytes: u64,
    pub max_bytes: u64,
}

/// A snapshot of the counters, as `GET /metrics` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    pub tiers: Vec<TierMetrics>,
    /// The in-process cache of verified small objects, when configured.
    pub memory: Option<RamMetrics>,
    pub not_found: u64,
    pub coalesced: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TierMetrics {
    pub name: String,
    pub role: Role,
    pub hits: u64,
    pub misses: u64,
    pub integrity_failures: u64,
    pub errors: u64,
    pub backfills: u64,
    pub backfill_skips: u64,
    /// Damaged objects this tier found on its own reads and moved aside (the local disk's
    /// `quarantine-v1/`); they then read as missing.
    pub quarantined: u64,
    /// Bytes counted against the tier's budget in the current window, if it has one.
    pub budget_used_bytes: Option<u64>,
}

impl MetricsSnapshot {
    pub(crate) fn take(
        c: &Counters,
        tiers: &[super::tier::Tier],
        memory: Option<RamMetrics>,
    ) -> Self {
        let tiers = tiers
            .iter()
            .zip(&c.tiers)
            .map(|(t, c)| TierMetrics {
                name: t.name.clone(),
                role: t.role,
                hits: load(&c.hits),
                misses: load(&c.misses),
                integrity_failures: load(&c.integrity_failures),
                errors: load(&c.errors),
                backfills: load(&c.backfills),
                backfill_skips: load(&c.backfill_skips),
                quarantined: t.files.as_ref().map_or(0, super::DiskStore::quarantined),
                budget_used_bytes: t.budget.as_ref().map(|b| b.used()),
            })
            .collect();
        Self {
            tiers,
            memory,
            not_found: load(&c.not_found),
            coalesced: load(&c.coalesced),
        }
    }
}

/// Health of every tier, as `GET /readyz` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// False when a required tier is down.
    pub ready: bool,
    pub tiers: Vec<TierHealth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TierHealth {
    pub name: String,
    pub role: Role,
    /// Holds the only acknowledged copy of writes.
    pub durable: bool,
    pub required: bool,
    /// `ok`, or the failure kind (`unavailable`, `integrity`, `error`). Details go to the log.
    pub status: &'static str,
}
