//! Applying a policy's plans on the node as the simulator applies them: releases through the warmer, wants as background warms within the budget.
//!
//! This mirrors `prewarm_predict::sim` step for step (`apply`, `want`), so the same trace
//! gives the same decisions: releases first (retried every tick while a sandbox holds the
//! runtime), then wants best score first, all protected before any is warmed, each queued
//! only when the budget has room without evicting anything live or wanted.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use prewarm_node::warm::background::Background;
use prewarm_node::warm::Job;
use prewarm_predict::{Plan, Predictor, Rule, RuntimeId, Secs, Want, HOUR};
use prewarm_shared::sandbox::Status;
use prewarm_shared::{Digest, RuntimeRef};
use serde::Serialize;

use super::names::Runtimes;
use super::Inner;

/// Decisions kept for `GET /v1/predictions`.
const DECISIONS_KEPT: usize = 512;

/// One decision applied, as the simulator logs them (`sim::Decision`), with the rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub t: Secs,
    pub runtime: String,
    /// `warm` (a predicted warm queued), `release` (evicted on the policy's word) or `cold`
    /// (a create started an on-demand warm).
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
}

/// A want as held now, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct WantView {
    pub runtime: String,
    pub score: f64,
    pub rule: Rule,
    pub until: Secs,
    /// `warm`, `warming`, `queued`, `no-room` (the budget could not make room),
    /// `over-budget` (the batch's better wants already fill it) or `unresolved`.
    pub state: &'static str,
}

/// A predicted warm not yet used by a create.
struct Predicted {
    rule: Rule,
    job: Arc<Job>,
    bytes: u64,
    warm_secs: f64,
}

/// The predictor and what the node did with its plans.
pub(super) struct State {
    pub(super) predictor: Box<dyn Predictor>,
    pub(super) runtimes: Runtimes,
    pub(super) next_tick: Option<Secs>,
    /// Runtime → the latest want of it (its `until` the latest of all).
    wanted: HashMap<RuntimeId, Want>,
    pending_release: BTreeSet<RuntimeId>,
    /// The digest each runtime reference last resolved to.
    pub(super) digests: HashMap<RuntimeId, Digest>,
    predicted: HashMap<Digest, Predicted>,
    pub(super) decisions: VecDeque<Decision>,
    /// What the last wants asked for and what became of each.
    pub(super) last: Vec<WantView>,
    /// Creates the predictor has seen.
    pub(super) seen: u64,
}

impl State {
    pub(super) fn new(predictor: Box<dyn Predictor>) -> Self {
        Self {
            predictor,
            runtimes: Runtimes::default(),
            next_tick: None,
            wanted: HashMap::new(),
            pending_release: BTreeSet::new(),
            digests: HashMap::new(),
            predicted: HashMap::new(),
            decisions: VecDeque::new(),
            last: Vec::new(),
            seen: 0,
        }
    }

    pub(super) fn note(&mut self, t: Secs, r: RuntimeId, action: &'static str, rule: Option<Rule>) {
        if self.decisions.len() == DECISIONS_KEPT {
            self.decisions.pop_front();
        }
        let runtime = self.runtimes.name(r).to_owned();
        self.decisions.push_back(Decision {
            t,
            runtime,
            action,
            rule,
        });
    }

    /// The wants still holding at `t`, best first.
    pub(super) fn wanted_now(&self, t: Secs) -> Vec<WantView> {
        let mut v: Vec<WantView> = self
            .wanted
            .values()
            .filter(|w| w.until > t)
            .map(|w| WantView {
                runtime: self.runtimes.name(w.runtime).to_owned(),
                score: w.score,
                rule: w.rule,
                until: w.until,
                state: "wanted",
            })
            .collect();
        v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.runtime.cmp(&b.runtime)));
        v
    }

    /// A create used `digest`: a predicted warm of it was worth it.
    pub(super) fn used(&mut self, digest: &Digest) -> Option<Rule> {
        self.predicted.remove(digest).map(|p| p.rule)
    }
}

impl Inner {
    /// Applies a tick's plan at `t` (the simulator's `apply`).
    pub(super) async fn apply(&self, st: &mut State, plan: Plan, t: Secs) {
        for r in plan.release {
            st.wanted.remove(&r);
            st.pending_release.insert(r);
        }
        let pending: Vec<RuntimeId> = st.pending_release.iter().copied().collect();
        for r in pending {
            let Some(d) = st.digests.get(&r).copied() else {
                st.pending_release.remove(&r);
                continue;
            };
            let warmer = self.service.warmer().clone();
            if !warmer.is_present(&d) {
                st.pending_release.remove(&r);
                continue;
            }
            let gone = tokio::task::spawn_blocking(move || warmer.evict(&d))
                .await
                .unwrap_or(false);
            if gone {
                st.pending_release.remove(&r);
                st.note(t, r, "release", None);
                if let Some(p) = st.predicted.remove(&d) {
                    self.metrics.unused(&p.rule.to_string(), p.warm_secs);
                }
            }
        }
        self.sync_wanted(st, t);
        self.want(st, plan.warm, t).await;
        if t.is_multiple_of(HOUR) {
            st.wanted.retain(|_, w| w.until > t);
            self.sync_wanted(st, t);
        }
    }

    /// Tells the warmer which runtimes a prediction wants at `t`, and the policy's retain
    /// rank of each warm runtime it knows (none when the policy does not rank), as the
    /// simulator's node evicts by them.
    pub(super) fn sync_wanted(&self, st: &State, t: Secs) {
        let warmer = self.service.warmer();
        let set: HashSet<Digest> = st
            .wanted
            .values()
            .filter(|w| w.until > t)
            .filter_map(|w| st.digests.get(&w.runtime).copied())
            .collect();
        warmer.set_wanted(set);
        let ranks: HashMap<Digest, f64> = st
            .digests
            .iter()
            .filter_map(|(r, d)| {
                let (bytes, _) = warmer.warm_bytes_of(d)?;
                Some((*d, st.predictor.retain_priority(t, *r, bytes)?))
            })
            .collect();
        warmer.set_ranks(ranks);
    }

    /// Applies wants at `t` (the simulator's `want`): returns what became of each.
    pub(super) async fn want(
        &self,
        st: &mut State,
        mut wants: Vec<Want>,
        t: Secs,
    ) -> Vec<WantView> {
        if wants.is_empty() {
            return Vec::new();
        }
        wants.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.runtime.cmp(&b.runtime)));
        // Resolve each (its digest and size), then protect every want before warming any,
        // so warming one never evicts another.
        let warmer = self.service.warmer().clone();
        let mut resolved = Vec::with_capacity(wants.len());
        for w in &wants {
            let name = st.runtimes.name(w.runtime).to_owned();
            let r = match name.parse::<RuntimeRef>() {
                Ok(what) => match warmer.runtime_bytes(&what).await {
                    Ok((d, bytes)) => {
                        st.digests.insert(w.runtime, d);
                        Some((what, d, bytes))
                    }
                    Err(e) => {
                        tracing::warn!(runtime = %name, %e, "a predicted runtime does not resolve");
                        None
                    }
                },
                Err(_) => None,
            };
            resolved.push(r);
            st.pending_release.remove(&w.runtime);
            let e = st.wanted.entry(w.runtime).or_insert(*w);
            let until = e.until.max(w.until);
            *e = Want { until, ..*w };
        }
        self.sync_wanted(st, t);
        let budget = warmer.warm_bytes().1;
        let mut batch_bytes = 0u64;
        let mut out = Vec::with_capacity(wants.len());
        for (w, r) in wants.into_iter().zip(resolved) {
            let name = st.runtimes.name(w.runtime).to_owned();
            let view = |state| WantView {
                runtime: name.clone(),
                score: w.score,
                rule: w.rule,
                until: w.until,
                state,
            };
            let Some((what, d, bytes)) = r else {
                out.push(view("unresolved"));
                continue;
            };
            batch_bytes = batch_bytes.saturating_add(bytes);
            if warmer.is_present(&d) {
                out.push(view(if warmer.warm_bytes_of(&d).is_some() {
                    "warm"
                } else {
                    "warming"
                }));
                continue;
            }
            if batch_bytes > budget {
                out.push(view("over-budget"));
                continue;
            }
            let pending: u64 = st
                .predicted
                .values()
                .filter(|p| p.job.state().status == Status::Warming)
                .map(|p| p.bytes)
                .sum();
            // A policy that ranks runtimes never evicts one it ranks higher to warm this one.
            let floor = st.predictor.retain_priority(t, w.runtime, bytes);
            let w2 = warmer.clone();
            let done = tokio::task::spawn_blocking(move || {
                w2.warm_background(d, &what, bytes, pending, floor)
            })
            .await;
            match done {
                Ok(Background::Queued(job)) => {
                    st.note(t, w.runtime, "warm", Some(w.rule));
                    self.metrics.warmed(&w.rule.to_string());
                    let warm_secs = job.state().estimated_ms.unwrap_or(0) as f64 / 1000.0;
                    st.predicted.insert(
                        d,
                        Predicted {
                            rule: w.rule,
                            job,
                            bytes,
                            warm_secs,
                        },
                    );
                    out.push(view("queued"));
                }
                Ok(Background::Warm) => out.push(view("warm")),
                Ok(Background::Warming) => out.push(view("warming")),
                Ok(Background::NoRoom) | Err(_) => out.push(view("no-room")),
            }
        }
        st.last = out.clone();
        out
    }

    /// Settles predicted warms: a failed one is forgotten; a finished one that is no longer
    /// warm was evicted unused (its warm time wasted).
    pub(super) fn sweep(&self, st: &mut State) {
        let warmer = self.service.warmer();
        let metrics = &self.metrics;
        st.predicted.retain(|d, p| match p.job.state().status {
            Status::Warming => true,
            Status::Failed => false,
            Status::Ready => match warmer.warm_bytes_of(d) {
                Some((_, warm_ms)) => {
                    p.warm_secs = warm_ms as f64 / 1000.0;
                    true
                }
                None => {
                    metrics.unused(&p.rule.to_string(), p.warm_secs);
                    false
                }
            },
        });
    }
}
