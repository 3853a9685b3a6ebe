//! The warmer's background upkeep: LRU eviction under the disk budget and registry refresh.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prewarm_shared::Digest;
use tokio_util::sync::CancellationToken;

use super::index::{Mount, RegistryEntry};
use super::layout::remove_tree;
use super::{Inner, Warmer};

impl Warmer {
    /// Eviction under the disk budget and registry refresh, every few seconds or when a warm
    /// completes; a final registry flush on shutdown.
    pub(super) async fn maintenance(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.inner.evict_now.notified() => {},
                _ = tokio::time::sleep(Duration::from_secs(5)) => {},
            }
            let inner = self.inner.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || inner.evict_over_budget()).await {
                tracing::error!(%e, "eviction task failed");
            }
            self.inner.prune_cache_if_pending().await;
            self.inner.flush_registry().await;
        }
        self.inner.flush_registry().await;
        if let Err(e) = self.inner.lock_index().save(&self.inner.layout.index) {
            tracing::warn!(%e, "could not write the node index");
        }
    }
}

impl Inner {
    /// After evictions, removes cache files no warm runtime links to any more, so an evicted
    /// runtime's bytes really leave the disk. Skipped (and retried next round) while a warm is
    /// between fetching and its cache check after the warm commands (see `cache_gate`).
    pub(super) async fn prune_cache_if_pending(&self) {
        if !self.prune_pending.load(Ordering::Relaxed) {
            return;
        }
        let Ok(gate) = self.cache_gate.try_write() else {
            return;
        };
        self.prune_pending.store(false, Ordering::Relaxed);
        let cache = self.cache.clone();
        match tokio::task::spawn_blocking(move || cache.prune_unlinked()).await {
            Ok(Ok((files, bytes))) => tracing::info!(files, bytes, "pruned the node cache"),
            Ok(Err(e)) => {
                tracing::warn!(%e, "could not prune the node cache");
                self.prune_pending.store(true, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(%e, "cache pruning task failed"),
        }
        drop(gate);
    }

    /// Removes least-recently-used runtimes not in use until the total fits the budget, and
    /// marks their registry entries for withdrawal. Blocking (removes trees). Returns the
    /// evicted digests.
    pub(super) fn evict_over_budget(&self) -> Vec<Digest> {
        let mut evicted = Vec::new();
        loop {
            let victim = {
                let st = self.lock_state();
                let mut index = self.lock_index();
                if index.total_bytes() <= self.cfg.disk_budget {
                    break;
                }
                // Runtimes a prediction wants only after all others; then in the policy's
                // retain order when it ranks; least recently used first among equals.
                let order = self.eviction_order();
                let Some(v) = index
                    .by_age()
                    .into_iter()
                    .filter(|r| !st.in_use.contains_key(&r.digest))
                    .enumerate()
                    .min_by(|(ai, a), (bi, b)| order.cmp(&a.digest, &b.digest).then(ai.cmp(bi)))
                    .map(|(_, r)| r)
                else {
                    break;
                };
                index.remove(&v.digest);
                if let Err(e) = index.save(&self.layout.index) {
                    tracing::error!(%e, "could not write the node index");
                }
                v
            };
            tracing::info!(digest = %victim.digest, runtime = %victim.runtime, bytes = victim.size_bytes, "evicting warm runtime");
            remove_tree(&self.layout.runtime_dir(&victim.digest));
            self.evictions.fetch_add(1, Ordering::Relaxed);
            self.prune_pending.store(true, Ordering::Relaxed);
            self.mark_dirty(victim.digest);
            evicted.push(victim.digest);
        }
        evicted
    }

    /// Brings the registry in line with the index for runtimes marked since the last flush:
    /// publishes those warmed or used, withdraws those no longer warm here. A failure is
    /// logged and retried on the next flush.
    pub(super) async fn flush_registry(&self) {
        let dirty: Vec<Digest> =
            std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        for d in dirty {
            let Some(rec) = self.lock_index().get(&d).cloned() else {
                if let Err(e) = self.registry.withdraw(&self.cfg.node_name, &d).await {
                    tracing::warn!(%e, registry = self.registry.name(), "registry withdraw failed; will retry");
                    self.mark_dirty(d);
                }
                continue;
            };
            let entry = RegistryEntry {
                runtime: rec.runtime,
                digest: d,
                node: self.cfg.node_name.clone(),
                mounts: vec![Mount {
                    source: self.layout.runtime_dir(&d).display().to_string(),
                    target: rec.prefix,
                    readonly: true,
                }],
                env: rec.env,
                last_used: rec.last_used_ms,
            };
            if let Err(e) = self.registry.publish(&entry).await {
                tracing::warn!(%e, registry = self.registry.name(), "registry publish failed; will retry");
                self.mark_dirty(d);
            }
        }
    }
}

/// Which of two idle runtimes goes first: one no prediction wants before a wanted one, then the
/// lower retain rank (absent: 0). Equal: neither (the caller falls back to recency).
pub(super) struct EvictionOrder {
    wanted: std::collections::HashSet<Digest>,
    ranks: std::collections::HashMap<Digest, f64>,
}

impl EvictionOrder {
    pub(super) fn rank(&self, d: &Digest) -> f64 {
        self.ranks.get(d).copied().unwrap_or(0.0)
    }

    pub(super) fn wanted(&self, d: &Digest) -> bool {
        self.wanted.contains(d)
    }

    pub(super) fn cmp(&self, a: &Digest, b: &Digest) -> std::cmp::Ordering {
        self.wanted(a)
            .cmp(&self.wanted(b))
            .then(self.rank(a).total_cmp(&self.rank(b)))
    }
}

impl Inner {
    /// The prediction's wanted set and ranks as they are now.
    pub(super) fn eviction_order(&self) -> EvictionOrder {
        EvictionOrder {
            wanted: self
                .wanted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            ranks: self.ranks.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}
