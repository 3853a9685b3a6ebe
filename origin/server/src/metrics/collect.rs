//! Series read at scrape time from numbers that live elsewhere: tier counters, zstd, the warm queue, live sandboxes.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;

use crate::AppState;

type Labelled<M> = Family<Vec<(&'static str, String)>, M>;

/// Reads the state's counters on every scrape.
pub(super) struct Scrape {
    tiers: Option<prewarm_store::Tiered>,
    encoded: crate::EncodedCache,
    sandboxes: Option<prewarm_node::sandbox::SandboxService>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl Scrape {
    pub(super) fn new(state: &AppState) -> Self {
        Self {
            tiers: state.tiers.clone(),
            encoded: state.encoded.clone(),
            sandboxes: state.sandboxes.clone(),
        }
    }
}

/// Writes one family (`name` without the `prewarm_` prefix or `_total`).
fn emit<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    fam: &M,
) -> Result<(), std::fmt::Error> {
    fam.encode(enc.encode_descriptor(name, help, None, kind)?)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    emit(enc, name, help, MetricType::Counter, &c)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    emit(enc, name, help, MetricType::Gauge, &g)
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(t) = &self.tiers {
            let snap = t.metrics();
            type Field = fn(&prewarm_store::TierMetrics) -> u64;
            let series: [(&str, &str, Field); 8] = [
                ("tier_hits", "Reads a tier answered with verified bytes", |t| t.hits),
                ("tier_misses", "Reads a tier did not have the object for", |t| t.misses),
                ("tier_integrity_failures", "Bytes from a tier with the wrong hash (not served)", |t| t.integrity_failures),
                ("tier_errors", "Tier operations that failed", |t| t.errors),
                ("tier_backfills", "Objects written into a faster tier after a slower one served them", |t| t.backfills),
                ("tier_backfill_skips", "Backfills skipped (over the tier's size limit or budget)", |t| t.backfill_skips),
                ("tier_quarantined", "Damaged objects the local disk found on its own reads and moved aside", |t| t.quarantined),
                (
                    "tier_verification_failures",
                    "Everything verification caught in a tier: wrong-hash bytes plus quarantined damage",
                    |t| t.integrity_failures + t.quarantined,
                ),
            ];
            for (name, help, get) in series {
                let fam = Labelled::<Counter>::default();
                for tier in &snap.tiers {
                    fam.get_or_create(&vec![("tier", tier.name.clone())])
                        .inc_by(get(tier));
                }
                emit(&mut enc, name, help, MetricType::Counter, &fam)?;
            }
            if let Some(m) = &snap.memory {
                counter(
                    &mut enc,
                    "memory_hits",
                    "Reads the in-process cache answered",
                    m.hits,
                )?;
                counter(
                    &mut enc,
                    "memory_misses",
                    "Reads the in-process cache did not have",
                    m.misses,
                )?;
                counter(
                    &mut enc,
                    "memory_inserts",
                    "Objects kept in the in-process cache",
                    m.inserts,
                )?;
                gauge(
                    &mut enc,
                    "memory_bytes",
                    "Bytes the in-process cache holds now",
                    m.bytes,
                )?;
            }
            counter(
                &mut enc,
                "not_found",
                "Objects found in no tier",
                snap.not_found,
            )?;
            counter(
                &mut enc,
                "coalesced_reads",
                "Reads that joined another request's fetch",
                snap.coalesced,
            )?;
        }
        let z = self.encoded.counters();
        counter(
            &mut enc,
            "zstd_compressed",
            "Bodies compressed with zstd (once each)",
            z.compressed.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            "zstd_reused",
            "Answers that reused a kept zstd result",
            z.reused.load(Ordering::Relaxed),
        )?;
        if let Some(s) = &self.sandboxes {
            let w = s.warmer().stats();
            gauge(
                &mut enc,
                "warm_queue_depth",
                "Warms waiting for a worker",
                w.queued,
            )?;
            gauge(&mut enc, "warms_running", "Warms running now", w.running)?;
            gauge(
                &mut enc,
                "warm_runtimes",
                "Runtimes warm on this node",
                w.warm_runtimes,
            )?;
            let fam = Labelled::<Counter>::default();
            for (outcome, v) in [
                ("started", w.warms_started),
                ("succeeded", w.warms_succeeded),
                ("failed", w.warms_failed),
            ] {
                fam.get_or_create(&vec![("outcome", outcome.to_owned())])
                    .inc_by(v);
            }
            emit(
                &mut enc,
                "warms",
                "Warms started, and how they ended",
                MetricType::Counter,
                &fam,
            )?;
            counter(
                &mut enc,
                "warm_evictions",
                "Warm runtimes evicted to stay in the disk budget",
                w.evictions,
            )?;
            counter(
                &mut enc,
                "warm_commands_run",
                "Warm commands this node ran (zero on a node that only fetched warmed runtimes)",
                w.warm_commands_run,
            )?;
            counter(
                &mut enc,
                "warmed_fetched",
                "Runtimes made warm by fetching another node's warmed manifest",
                w.warmed_fetched,
            )?;
            counter(
                &mut enc,
                "warmed_published",
                "Warmed manifests this node published for other nodes",
                w.warmed_published,
            )?;
            // Per runtime (name and digest) is in `GET /v1/warm/stats`: no digest labels here.
            let how = Labelled::<Gauge>::default();
            for r in s.warmer().runtimes() {
                let label = serde_json::to_value(r.warmed).unwrap_or_default();
                how.get_or_create(&vec![("source", label.as_str().unwrap_or("").to_owned())])
                    .inc();
            }
            emit(
                &mut enc,
                "warm_runtimes_by_source",
                "Warm runtimes by how they became warm: warmed_here, fetched_warmed, warmed_and_published",
                MetricType::Gauge,
                &how,
            )?;
            let p = s.pool_stats();
            for (name, help, v) in [
                ("pool_ready", "Pooled sandboxes ready, interpreter started and preloads imported", p.ready),
                ("pool_idle_rss_bytes", "Resident memory of the idle pooled interpreters", p.idle_rss_bytes),
                ("pool_memory_budget_bytes", "The pool's memory budget (sandbox.pool_memory_bytes)", p.memory_budget_bytes),
                ("pool_size", "Ready sandboxes the pool keeps per runtime (sandbox.pool_size)", p.size as u64),
            ] {
                gauge(&mut enc, name, help, v)?;
            }
            for (name, help, v) in [
                ("pool_taken", "Creates served from the pool", p.taken_total),
                ("pool_misses", "Creates on a pooled runtime that found the pool empty", p.misses_total),
                ("pool_started", "Pooled interpreters started", p.started_total),
                ("pool_start_failures", "Pooled interpreters that failed to start", p.start_failures_total),
                ("pool_over_budget", "Refills skipped because the pool was at its memory budget", p.over_budget_total),
            ] {
                counter(&mut enc, name, help, v)?;
            }
            let live = Labelled::<Gauge>::default();
            let m = s.warmer().metrics();
            for sb in s.list() {
                live.get_or_create(&vec![("runtime", m.runtime_label(&sb.runtime))])
                    .inc();
            }
            emit(
                &mut enc,
                "sandboxes_live",
                "Sandboxes that exist now, by runtime",
                MetricType::Gauge,
                &live,
            )?;
        }
        Ok(())
    }
}
