//! `POST /v1/users/{id}/hint`, `GET /v1/predictions`, and the manual clock's `POST /v1/predict/clock`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use prewarm_predict::Secs;
use serde::{Deserialize, Serialize};

use super::{Decision, Prediction, WantView};
use crate::error::{ApiError, ErrorCode};
use crate::MAX_SMALL_BODY;

/// The prediction routes on their own state (`None`: sandboxes are off, every route 404s).
pub fn router<S: Clone + Send + Sync + 'static>(state: Option<Prediction>) -> Router<S> {
    Router::new()
        .route("/v1/users/{id}/hint", post(hint))
        .route("/v1/predictions", get(predictions))
        .route("/v1/predict/clock", post(set_clock))
        .with_state(state)
}

fn prediction(state: &Option<Prediction>) -> Result<&Prediction, ApiError> {
    state
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("sandboxes are not enabled on this origin".into()))
}

/// `POST /v1/users/{id}/hint`'s answer.
#[derive(Debug, Serialize)]
struct HintResponse {
    policy: &'static str,
    /// The user's usual runtimes the policy wants now, and what became of each.
    wants: Vec<WantView>,
}

async fn hint(
    State(state): State<Option<Prediction>>,
    caller: crate::auth::Caller,
    Path(id): Path<String>,
) -> Result<Json<HintResponse>, ApiError> {
    // A sandbox token hints its own user only; admin and an open origin any user.
    caller.acting_as(Some(&id), "the user in the path")?;
    let p = prediction(&state)?;
    if id.is_empty() || id.len() > 256 {
        return Err(ApiError::bad_request(
            ErrorCode::BadRequest,
            "user id must be 1-256 bytes",
        ));
    }
    let wants = p.inner.hint(&id).await;
    Ok(Json(HintResponse {
        policy: p.inner.policy.as_str(),
        wants,
    }))
}

/// `GET /v1/predictions`.
#[derive(Debug, Serialize)]
struct PredictionsResponse {
    policy: &'static str,
    /// `system` or `manual`.
    clock: &'static str,
    now: Secs,
    /// When the policy is ticked next.
    next_tick: Option<Secs>,
    /// What the policy wants warm now, best first: score, the rule that fired, until when.
    wanted: Vec<WantView>,
    /// What the latest plan or show-up asked for, and what became of each want.
    last: Vec<WantView>,
    /// The latest decisions applied (oldest first): predicted warms, releases, cold starts.
    decisions: Vec<Decision>,
    /// Creates the predictor has seen since start.
    creates_seen: u64,
    warm_bytes: u64,
    budget_bytes: u64,
}

async fn predictions(
    State(state): State<Option<Prediction>>,
) -> Result<Json<PredictionsResponse>, ApiError> {
    let p = prediction(&state)?;
    let i = &p.inner;
    let now = i.clock.now();
    let (warm_bytes, budget_bytes) = i.service.warmer().warm_bytes();
    let st = i.state.lock().await;
    Ok(Json(PredictionsResponse {
        policy: i.policy.as_str(),
        clock: if i.clock.is_manual() {
            "manual"
        } else {
            "system"
        },
        now,
        next_tick: st.next_tick,
        wanted: st.wanted_now(now),
        last: st.last.clone(),
        decisions: st.decisions.iter().cloned().collect(),
        creates_seen: st.seen,
        warm_bytes,
        budget_bytes,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetClock {
    now: Secs,
}

#[derive(Debug, Serialize)]
struct ClockResponse {
    now: Secs,
    /// Ticks run to get there.
    ticks: u64,
}

/// `POST /v1/predict/clock {"now": secs}`: only with `predict.clock = "manual"` (404
/// otherwise); runs every tick up to `now`.
async fn set_clock(
    State(state): State<Option<Prediction>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ClockResponse>, ApiError> {
    let p = prediction(&state)?;
    if !p.inner.clock.is_manual() {
        return Err(ApiError::NotFound(
            "the predictor's clock is the system's (predict.clock = \"manual\" enables this route)"
                .into(),
        ));
    }
    let req: SetClock = crate::sandbox::parse(body, MAX_SMALL_BODY)?;
    p.inner
        .clock
        .set(req.now)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadRequest, e))?;
    let ticks = p.inner.tick_until(req.now).await;
    Ok(Json(ClockResponse {
        now: req.now,
        ticks,
    }))
}
