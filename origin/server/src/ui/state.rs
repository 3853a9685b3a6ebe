//! `GET /v1/ui/state`: runtimes (hot, warming with progress, cold), live sandboxes, start rates, recent times to ready, tier counters.

use std::collections::{BTreeMap, HashSet};

use axum::extract::State;
use axum::Json;
use prewarm_node::metrics::{ReadyPoint, RuntimeStarts, DIGEST_LABEL, OTHER_LABEL};
use prewarm_shared::sandbox::{Step, WarmStats};
use prewarm_shared::RuntimeRef;
use serde::Serialize;

use crate::auth::Caller;
use crate::AppState;

/// Everything the page draws, in one poll.
#[derive(Debug, Serialize)]
pub(super) struct UiState {
    sandboxes_enabled: bool,
    runtimes: Vec<RuntimeRow>,
    sandboxes: Vec<SandboxRow>,
    starts: Vec<RuntimeStarts>,
    ready: Vec<ReadyPoint>,
    warm: Option<WarmStats>,
    tiers: Option<prewarm_store::MetricsSnapshot>,
    /// Bytes each tier (and `memory`) served since start.
    served_bytes: BTreeMap<String, u64>,
    /// Unix ms of this answer, so the chart's hour ends where the server's clock is.
    now_ms: u64,
}

#[derive(Debug, Serialize)]
struct RuntimeRow {
    /// `name:tag` (or the digest it was asked by).
    runtime: String,
    /// The runtime's name, as labelled in the metrics (`other` past the labelled ones).
    name: String,
    /// `hot`, `warming` or `cold` (used on this node before, neither warm nor warming now).
    state: &'static str,
    digest: Option<String>,
    size_bytes: Option<u64>,
    last_used_ms: Option<u64>,
    progress: Option<f64>,
    step: Option<Step>,
    eta_ms: Option<u64>,
    queue_position: Option<u64>,
}

#[derive(Debug, Serialize)]
struct SandboxRow {
    id: String,
    runtime: String,
    user: String,
    hot: bool,
    status: prewarm_shared::sandbox::Status,
}

impl RuntimeRow {
    fn new(runtime: String, name: String, state: &'static str) -> Self {
        Self {
            runtime,
            name,
            state,
            digest: None,
            size_bytes: None,
            last_used_ms: None,
            progress: None,
            step: None,
            eta_ms: None,
            queue_position: None,
        }
    }
}

fn name_of(r: &RuntimeRef) -> String {
    match r {
        RuntimeRef::Tagged(n, _) => n.as_str().to_owned(),
        RuntimeRef::Digest(_) => DIGEST_LABEL.to_owned(),
    }
}

/// Runtimes, tiers and rates are the node's; the sandbox rows are only those the caller may
/// see (a sandbox token: its user's; admin or an open origin: all).
pub(super) async fn state(State(app): State<AppState>, caller: Caller) -> Json<UiState> {
    let mut runtimes = Vec::new();
    let (mut sandboxes, mut starts, mut ready, mut warm) =
        (Vec::new(), Vec::new(), Vec::new(), None);
    if let Some(svc) = &app.sandboxes {
        let w = svc.warmer();
        let m = w.metrics();
        let mut seen = HashSet::new();
        for rec in w.runtimes().into_iter().rev() {
            let name = rec.runtime.split(':').next().unwrap_or_default().to_owned();
            seen.insert(name.clone());
            runtimes.push(RuntimeRow {
                digest: Some(rec.digest.to_string()),
                size_bytes: Some(rec.size_bytes),
                last_used_ms: Some(rec.last_used_ms),
                ..RuntimeRow::new(rec.runtime.clone(), name, "hot")
            });
        }
        for job in w.jobs() {
            let st = job.state();
            let name = name_of(&job.runtime);
            seen.insert(name.clone());
            runtimes.push(RuntimeRow {
                digest: Some(job.digest.to_string()),
                progress: Some(st.progress),
                step: Some(st.step),
                eta_ms: st.estimated_ms,
                queue_position: st.queue_position,
                ..RuntimeRow::new(job.runtime.to_string(), name, "warming")
            });
        }
        starts = m.starts();
        for s in &starts {
            if s.runtime != OTHER_LABEL && s.runtime != DIGEST_LABEL && !seen.contains(&s.runtime) {
                runtimes.push(RuntimeRow::new(
                    s.runtime.clone(),
                    s.runtime.clone(),
                    "cold",
                ));
            }
        }
        let mut list: Vec<_> = svc
            .list()
            .into_iter()
            .filter(|s| caller.sees(&s.user_id))
            .collect();
        list.sort_by(|a, b| {
            (name_of(&a.runtime), &a.user_id).cmp(&(name_of(&b.runtime), &b.user_id))
        });
        sandboxes = list
            .into_iter()
            .map(|s| SandboxRow {
                id: s.sandbox_id,
                runtime: s.runtime.to_string(),
                user: s.user_id,
                hot: s.hot,
                status: s.state.status,
            })
            .collect();
        ready = m.recent_ready();
        let mut stats = w.stats();
        stats.sandboxes = sandboxes.len() as u64;
        warm = Some(stats);
    }
    // Warming first (the live part), then hot, then cold; by name within.
    let order: BTreeMap<&str, u8> = [("warming", 0), ("hot", 1), ("cold", 2)].into();
    runtimes.sort_by(|a, b| (order[a.state], &a.runtime).cmp(&(order[b.state], &b.runtime)));
    let mut served_bytes = BTreeMap::new();
    if let Some(t) = &app.tiers {
        let names = t.metrics().tiers.into_iter().map(|t| t.name);
        for name in names.chain([prewarm_store::MEMORY_TIER.to_owned()]) {
            let n = t.read_metrics().served_bytes(&name);
            served_bytes.insert(name, n);
        }
    }
    Json(UiState {
        sandboxes_enabled: app.sandboxes.is_some(),
        runtimes,
        sandboxes,
        starts,
        ready,
        warm,
        tiers: app.tiers.as_ref().map(|t| t.metrics()),
        served_bytes,
        now_ms: prewarm_node::warm::index::now_ms(),
    })
}
