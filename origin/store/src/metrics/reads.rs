//! Prometheus series of the tiered read path: latency by tier and result, bytes served by tier.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The tier name of the in-process cache of verified small objects.
pub const MEMORY_TIER: &str = "memory";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabels {
    tier: String,
    /// `hit`, `miss` or `error` (failed, or bytes with the wrong hash).
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabel {
    tier: String,
}

/// What one tier read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadResult {
    Hit,
    Miss,
    Error,
}

/// Read latency and bytes served per tier. Cheap to clone; the server registers it.
#[derive(Debug, Clone)]
pub struct ReadMetrics {
    seconds: Family<ReadLabels, Histogram, fn() -> Histogram>,
    served: Family<TierLabel, Counter>,
}

impl Default for ReadMetrics {
    fn default() -> Self {
        Self {
            // 10 µs (memory) to 10 s (a slow S3 read of a large block).
            seconds: Family::new_with_constructor(|| {
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    1e-5, 2.5, 16,
                ))
            }),
            served: Family::default(),
        }
    }
}

impl ReadMetrics {
    /// Adds these series to the server's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tier_read_seconds",
            "Object reads per tier (memory, disk, redis, s3) by result (hit, miss, error)",
            self.seconds.clone(),
        );
        registry.register(
            "tier_served_bytes",
            "Bytes each tier supplied to reads (a range read counts the range)",
            self.served.clone(),
        );
    }

    /// Bytes `tier` has served so far (for `/ui`).
    pub fn served_bytes(&self, tier: &str) -> u64 {
        self.served
            .get_or_create(&TierLabel {
                tier: tier.to_owned(),
            })
            .get()
    }

    /// Records one read of `tier` that began at `since`.
    pub(crate) fn read(&self, tier: &str, result: ReadResult, since: Instant) {
        let result = match result {
            ReadResult::Hit => "hit",
            ReadResult::Miss => "miss",
            ReadResult::Error => "error",
        };
        self.seconds
            .get_or_create(&ReadLabels {
                tier: tier.to_owned(),
                result,
            })
            .observe(since.elapsed().as_secs_f64());
    }

    /// Records a hit of `tier` that supplied `bytes`.
    pub(crate) fn hit(&self, tier: &str, bytes: u64, since: Instant) {
        self.read(tier, ReadResult::Hit, since);
        self.served
            .get_or_create(&TierLabel {
                tier: tier.to_owned(),
            })
            .inc_by(bytes);
    }
}
