//! HTTP handlers of `/v1/sandboxes` and `/v1/warm`, progress over WebSocket or SSE.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prewarm_shared::sandbox::{
    CreateSandbox, ExecRequest, Status, WarmInfo, WarmRequest, WarmState,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;

use prewarm_node::sandbox::{SandboxError, SandboxService};
use prewarm_node::warm::Ensured;

use super::SandboxState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::{body_bytes, MAX_SANDBOX_BODY, MAX_SMALL_BODY};

/// The sandbox and warm routes on their own state, merged into [`crate::app`].
pub fn router<S: Clone + Send + Sync + 'static>(state: SandboxState) -> Router<S> {
    Router::new()
        .route(
            "/v1/sandboxes",
            post(create).layer(sandbox_limit()).get(list),
        )
        .route("/v1/sandboxes/{id}", get(status).delete(remove))
        .route("/v1/sandboxes/{id}/events", get(events))
        .route(
            "/v1/sandboxes/{id}/exec",
            post(exec).layer(sandbox_limit()).get(super::live::exec_ws),
        )
        .route(
            "/v1/sandboxes/{id}/run",
            post(super::run::run)
                .layer(sandbox_limit())
                .get(super::live::exec_ws),
        )
        .route("/v1/warm", post(warm))
        .route("/v1/warm/stats", get(stats))
        .merge(super::files::routes())
        .with_state(state)
}

fn sandbox_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_SANDBOX_BODY as usize)
}

pub(super) fn service(state: &SandboxState) -> Result<&SandboxService, ApiError> {
    state
        .service
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("sandboxes are not enabled on this origin".into()))
}

/// The body as `T`: 413 over `limit` (the route's), 400 if it is not `T`.
pub(crate) fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: u64,
) -> Result<T, ApiError> {
    let body = body_bytes(body, limit)?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(ErrorCode::BadRequest, e))
}

/// User of a sandbox made without naming one, by an open origin or an admin token.
pub(super) const DEFAULT_USER: &str = "default";

/// The create body with its `user_id` decided by the caller: a sandbox token's own user
/// (403 if the body names another), else the body's, else [`DEFAULT_USER`].
fn with_user(caller: &Caller, body: Bytes) -> Result<Bytes, ApiError> {
    let mut obj = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => o,
        // Not an object: the parse below names what is wrong.
        _ => return Ok(body),
    };
    let named = match obj.get("user_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u.as_str()),
        Some(_) => {
            return Err(ApiError::bad_request(
                ErrorCode::BadRequest,
                "user_id must be a string",
            ))
        }
    };
    let user = caller
        .acting_as(named, "user_id")?
        .unwrap_or_else(|| DEFAULT_USER.to_owned());
    obj.insert("user_id".into(), Value::String(user));
    serde_json::to_vec(&obj)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(Box::new(e)))
}

async fn create(
    State(state): State<SandboxState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = with_user(&caller, body_bytes(body, MAX_SANDBOX_BODY)?)?;
    if let Some(r) = crate::snapshots::create_hook(state.snapshots.as_ref(), &body).await? {
        return Ok(r);
    }
    let req: CreateSandbox = parse(Ok(body), MAX_SANDBOX_BODY)?;
    let info = service(&state)?.create(req).await?;
    let code = if info.hot {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(info)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    user_id: Option<String>,
}

/// `GET /v1/sandboxes[?user_id=u]`: the live sandboxes the caller may see. A sandbox token
/// sees its user's; open and admin see everyone's, or `user_id`'s.
async fn list(
    State(state): State<SandboxState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let only = caller.acting_as(q.user_id.as_deref(), "user_id")?;
    let mut list: Vec<_> = service(&state)?
        .list()
        .into_iter()
        .filter(|s| caller.sees(&s.user_id) && only.iter().all(|u| *u == s.user_id))
        .collect();
    list.sort_by(|a, b| a.sandbox_id.cmp(&b.sandbox_id));
    Ok(Json(serde_json::json!({ "sandboxes": list })).into_response())
}

async fn status(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match service(&state)?.get(&id) {
        Err(SandboxError::NotFound(_)) => {
            // A paused sandbox's id stays resolvable.
            match crate::snapshots::paused_status(state.snapshots.as_ref(), &id).await {
                Some(r) => Ok(r),
                None => Err(SandboxError::NotFound(id).into()),
            }
        }
        other => Ok(Json(other?).into_response()),
    }
}

async fn remove(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    service(&state)?.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn exec(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ExecRequest = parse(body, MAX_SANDBOX_BODY)?;
    Ok(Json(service(&state)?.exec(&id, req).await?).into_response())
}

async fn warm(
    State(state): State<SandboxState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: WarmRequest = parse(body, MAX_SMALL_BODY)?;
    let svc = service(&state)?;
    let (digest, ensured) = svc
        .warmer()
        .ensure(&req.runtime, req.priority, false)
        .await
        .map_err(SandboxError::from)?;
    let (hot, st, code) = match ensured {
        Ensured::Hot(_) => (true, WarmState::ready(), StatusCode::OK),
        Ensured::Warming(job) => (false, job.state(), StatusCode::ACCEPTED),
    };
    let info = WarmInfo {
        runtime: req.runtime,
        digest,
        hot,
        state: st,
    };
    Ok((code, Json(info)).into_response())
}

async fn stats(State(state): State<SandboxState>) -> Result<Response, ApiError> {
    let svc = service(&state)?;
    let mut s = svc.warmer().stats();
    s.sandboxes = svc.count() as u64;
    let mut body = serde_json::to_value(s).unwrap_or_default();
    body["runtimes"] = crate::status::warm_runtimes(svc);
    Ok(Json(body).into_response())
}

/// Streams the sandbox's warm state: the current state first, then every change, ending after
/// `ready` or `failed`. A WebSocket of JSON text messages, or Server-Sent Events when the client
/// sends `Accept: text/event-stream` (events named after the status, JSON data).
async fn events(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let rx = service(&state)?.subscribe(&id)?;
    let wants_sse = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_sse {
        return Ok(Sse::new(sse_events(rx))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let (mut parts, _) = req.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => Ok(ws.on_upgrade(move |socket| stream_events(socket, rx))),
        Err(_) => Err(ApiError::bad_request(
            ErrorCode::BadRequest,
            "events need a WebSocket upgrade or `Accept: text/event-stream`",
        )),
    }
}

/// The SSE form of [`stream_events`]: one event per state, ending after a terminal one.
fn sse_events(
    rx: watch::Receiver<WarmState>,
) -> impl futures::Stream<Item = Result<Event, std::convert::Infallible>> {
    futures::stream::unfold(Some((rx, true)), |st| async move {
        let (mut rx, first) = st?;
        // After the first event, wait for a change; a closed channel has nothing newer to say.
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let current = rx.borrow_and_update().clone();
        let name = match current.status {
            Status::Warming => "warming",
            Status::Ready => "ready",
            Status::Failed => "failed",
        };
        let event = Event::default()
            .event(name)
            .json_data(&current)
            .unwrap_or_else(|_| Event::default().event(name));
        let next = (current.status == Status::Warming).then_some((rx, false));
        Some((Ok(event), next))
    })
}

async fn stream_events(mut socket: WebSocket, mut rx: watch::Receiver<WarmState>) {
    loop {
        let current = rx.borrow_and_update().clone();
        let text = match serde_json::to_string(&current) {
            Ok(t) => t,
            Err(_) => return,
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
        if current.status != Status::Warming {
            break;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() {
                // The job is gone; its last state was sent or is in `borrow`.
                if rx.borrow().status == Status::Warming { break; }
            },
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
