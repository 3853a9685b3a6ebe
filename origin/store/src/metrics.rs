//! Counters of the tiered store (hits, integrity failures, errors per tier) and its health report.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::tier::Role;

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

    /// Prometheus text exposition of the same numbers.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let series: [(&str, Field); 7] = [
            ("hits", |t| t.hits),
            ("misses", |t| t.misses),
            ("integrity_failures", |t| t.integrity_failures),
            ("errors", |t| t.errors),
            ("backfills", |t| t.backfills),
            ("backfill_skips", |t| t.backfill_skips),
            ("quarantined", |t| t.quarantined),
        ];
        for (name, get) in series {
            out.push_str(&format!("# TYPE prewarm_tier_{name}_total counter\n"));
            for t in &self.tiers {
                out.push_str(&format!(
                    "prewarm_tier_{name}_total{{tier=\"{}\"}} {}\n",
                    t.name,
                    get(t)
                ));
            }
        }
        if let Some(m) = &self.memory {
            for (name, v) in [
                ("hits", m.hits),
                ("misses", m.misses),
                ("inserts", m.inserts),
            ] {
                prometheus_metric(&mut out, &format!("memory_{name}_total"), "counter", v);
            }
            prometheus_metric(&mut out, "memory_bytes", "gauge", m.bytes);
        }
        prometheus_metric(&mut out, "not_found_total", "counter", self.not_found);
        prometheus_metric(&mut out, "coalesced_reads_total", "counter", self.coalesced);
        out
    }
}

/// Appends one unlabelled `prewarm_<name>` series of `kind` (`counter`, `gauge`) to `out`.
pub fn prometheus_metric(out: &mut String, name: &str, kind: &str, value: u64) {
    out.push_str(&format!(
        "# TYPE prewarm_{name} {kind}\nprewarm_{name} {value}\n"
    ));
}

/// Reads one counter of a [`TierMetrics`].
type Field = fn(&TierMetrics) -> u64;

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
