//! Predictive (background) warms: queued at low priority for a worker of their own, within the budget, evicting only idle runtimes nobody wants.
//!
//! A predictor's plan is applied here. A background warm never takes one of the `workers` a
//! user's warm waits for: only the extra background worker runs it, and a user asking for the
//! same runtime meanwhile joins it and makes it theirs (a regular worker may then take it). It
//! is queued only when the budget has room, after evicting idle runtimes no prediction wants,
//! least recently used first; a runtime a sandbox holds or a warm is building is never
//! evicted. Releases go through [`Warmer::evict`], which refuses the same ones.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prewarm_shared::sandbox::Priority;
use prewarm_shared::{Digest, Manifest, RuntimeRef};

use super::layout::remove_tree;
use super::{Job, WarmError, Warmer};

/// What [`Warmer::warm_background`] did.
#[derive(Debug)]
pub enum Background {
    /// Already warm: nothing to do.
    Warm,
    /// Already queued or warming (a user's or another prediction's).
    Warming,
    /// Queued for the background worker.
    Queued(Arc<Job>),
    /// Not queued: the budget cannot make room without evicting something live or wanted.
    NoRoom,
}

impl Warmer {
    /// Bytes `what` takes warm: its record's if warm here, else its manifest's file bytes
    /// (the warm commands may add a little). Resolves the tag now.
    pub async fn runtime_bytes(&self, what: &RuntimeRef) -> Result<(Digest, u64), WarmError> {
        let digest = self.resolve(what).await?;
        if let Some(r) = self.inner.lock_index().get(&digest) {
            return Ok((digest, r.size_bytes));
        }
        let err = |source| WarmError::Resolve {
            what: what.clone(),
            source,
        };
        let bytes = self
            .inner
            .source
            .fetch_manifest(&digest)
            .await
            .map_err(err)?;
        let manifest = Manifest::parse(&bytes).map_err(|e| {
            err(prewarm_client::transfer::TransferError::Rejected {
                at: self.inner.source.location(),
                code: e.code().into(),
                message: format!("manifest {digest}: {e}"),
            })
        })?;
        Ok((digest, manifest.bytes_total()))
    }

    /// Whether `digest` is warm (in the index) or being warmed.
    pub fn is_present(&self, digest: &Digest) -> bool {
        let st = self.inner.lock_state();
        st.jobs.contains_key(digest) || self.inner.lock_index().get(digest).is_some()
    }

    /// The size and warm time (ms) of `digest` if it is warm here.
    pub fn warm_bytes_of(&self, digest: &Digest) -> Option<(u64, u64)> {
        let index = self.inner.lock_index();
        index.get(digest).map(|r| (r.size_bytes, r.warm_ms))
    }

    /// Whether a sandbox holds `digest`.
    pub fn in_use(&self, digest: &Digest) -> bool {
        self.inner.lock_state().in_use.contains_key(digest)
    }

    /// Bytes of the warm runtimes now, and the budget.
    pub fn warm_bytes(&self) -> (u64, u64) {
        let used = self.inner.lock_index().total_bytes();
        (used, self.inner.cfg.disk_budget)
    }

    /// The runtimes a prediction wants now: the LRU evicts them last, and background warms
    /// never evict them.
    pub fn set_wanted(&self, wanted: HashSet<Digest>) {
        *self.inner.wanted.lock().unwrap_or_else(|p| p.into_inner()) = wanted;
    }

    /// The policy's retain order of warm runtimes (lowest evicted first; a runtime left out
    /// counts as 0), for a policy that ranks them: idle runtimes are evicted in this order
    /// before recency, and a background warm ranked `floor` evicts only runtimes ranked below
    /// it. An empty map: recency alone.
    pub fn set_ranks(&self, ranks: HashMap<Digest, f64>) {
        *self.inner.ranks.lock().unwrap_or_else(|p| p.into_inner()) = ranks;
    }

    /// Queues a background warm of `digest` (`what` resolved) taking `bytes`, once room is
    /// made under the budget (see the module doc); `pending` bytes of background warms still
    /// under way count as taken.
    pub fn warm_background(
        &self,
        digest: Digest,
        what: &RuntimeRef,
        bytes: u64,
        pending: u64,
        floor: Option<f64>,
    ) -> Background {
        if self.is_present(&digest) {
            return if self.inner.lock_index().get(&digest).is_some() {
                Background::Warm
            } else {
                Background::Warming
            };
        }
        if !self.make_room(bytes.saturating_add(pending), floor) {
            return Background::NoRoom;
        }
        let mut st = self.inner.lock_state();
        if st.jobs.contains_key(&digest) || self.inner.lock_index().get(&digest).is_some() {
            return Background::Warming;
        }
        let job = self
            .inner
            .queue_job(&mut st, digest, what, Priority::Low, true);
        drop(st);
        self.inner.work.notify_waiters();
        Background::Queued(job)
    }

    /// Evicts idle runtimes no prediction wants (in the policy's retain order, then least
    /// recently used first; with `floor`, only those ranked below it) until `bytes` more fit
    /// the budget; evicts nothing and returns false when that cannot be done.
    fn make_room(&self, bytes: u64, floor: Option<f64>) -> bool {
        let budget = self.inner.cfg.disk_budget;
        let order = self.inner.eviction_order();
        let victims: Vec<Digest> = {
            let st = self.inner.lock_state();
            let index = self.inner.lock_index();
            let used = index.total_bytes();
            if bytes > budget || used > budget {
                return false;
            }
            let mut need = (used + bytes).saturating_sub(budget);
            if need == 0 {
                return true;
            }
            let mut take = Vec::new();
            let mut idle: Vec<_> = index
                .by_age()
                .into_iter()
                .filter(|r| !st.in_use.contains_key(&r.digest) && !order.wanted(&r.digest))
                .filter(|r| floor.is_none_or(|f| order.rank(&r.digest) < f))
                .collect();
            // Stable: least recently used first among equal ranks.
            idle.sort_by(|a, b| order.rank(&a.digest).total_cmp(&order.rank(&b.digest)));
            for r in idle {
                if need == 0 {
                    break;
                }
                need = need.saturating_sub(r.size_bytes);
                take.push(r.digest);
            }
            if need > 0 {
                return false;
            }
            take
        };
        victims.iter().all(|d| self.evict(d))
    }

    /// Evicts `digest` now unless a sandbox holds it or it is warming; true when it is gone
    /// (or was not warm). Blocking (removes the tree).
    pub fn evict(&self, digest: &Digest) -> bool {
        {
            let st = self.inner.lock_state();
            if st.in_use.contains_key(digest) || st.jobs.contains_key(digest) {
                return false;
            }
            let mut index = self.inner.lock_index();
            if index.remove(digest).is_none() {
                return true;
            }
            if let Err(e) = index.save(&self.inner.layout.index) {
                tracing::error!(%e, "could not write the node index");
            }
        }
        tracing::info!(%digest, "evicting warm runtime (prediction)");
        remove_tree(&self.inner.layout.runtime_dir(digest));
        self.inner.evictions.fetch_add(1, Ordering::Relaxed);
        self.inner.prune_pending.store(true, Ordering::Relaxed);
        self.inner.mark_dirty(*digest);
        true
    }
}
