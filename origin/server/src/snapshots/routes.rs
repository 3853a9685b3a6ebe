//! HTTP handlers of the snapshot routes, and the hook `POST /v1/sandboxes` calls for `"snapshot"` bodies.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prewarm_node::sandbox::{SandboxError, SnapshotOutcome};
use prewarm_shared::sandbox::CreateSandbox;
use prewarm_shared::Digest;
use serde::Deserialize;
use serde_json::{json, Value};

use super::records::{now_ms, PausedRecord, SnapshotRecord};
use super::Snapshots;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::{body_bytes, MAX_SMALL_BODY};

/// Most sandboxes one fork makes.
const MAX_FORK: u32 = 16;

type St = State<Option<Snapshots>>;

/// The snapshot routes on their own state (`None`: snapshots are off, every route is 404).
pub fn router<S: Clone + Send + Sync + 'static>(state: Option<Snapshots>) -> Router<S> {
    Router::new()
        .route("/v1/sandboxes/{id}/snapshot", post(snapshot))
        .route("/v1/sandboxes/{id}/fork", post(fork))
        .route("/v1/sandboxes/{id}/pause", post(pause))
        .route("/v1/sandboxes/{id}/resume", post(resume))
        .route("/v1/snapshots", get(list))
        .route("/v1/snapshots/stats", get(stats))
        .route("/v1/snapshots/{digest}", get(info).delete(remove))
        .route("/v1/snapshots/{digest}/share", post(share))
        .with_state(state)
}

fn on(s: &Option<Snapshots>) -> Result<&Snapshots, ApiError> {
    s.as_ref().ok_or_else(|| {
        ApiError::NotFound("snapshots are not enabled on this origin (sandboxes off)".into())
    })
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::BadRequest, m.into())
}

/// A JSON body, or `T::default()` for an empty one.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let b = body_bytes(body, MAX_SMALL_BODY)?;
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&b).map_err(|e| ApiError::bad_request(ErrorCode::BadRequest, e))
}

fn digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e| bad(format!("snapshot {s:?} is not a sha256:<hex> digest: {e}")))
}

fn not_found(d: &Digest) -> ApiError {
    ApiError::NotFound(format!("no snapshot {d}"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    #[serde(default)]
    label: Option<String>,
}

/// Snapshots sandbox `id` and records its user as an owner.
async fn take(
    s: &Snapshots,
    id: &str,
    label: Option<String>,
) -> Result<(SnapshotOutcome, SnapshotRecord), ApiError> {
    if label.as_ref().is_some_and(|l| l.len() > 256) {
        return Err(bad("label must be at most 256 bytes"));
    }
    let user = s.service.template(id)?.user_id;
    let out = s.service.snapshot(id, &s.repo).await?;
    s.stats
        .snapshot(out.duration_ms, out.bytes_total, out.bytes_new);
    let rec = SnapshotRecord {
        snapshot: out.snapshot,
        runtime: out.runtime,
        parent: out.parent,
        files: out.files,
        bytes_total: out.bytes_total,
        owners: Default::default(),
        shared_with: Default::default(),
    };
    let rec = s.records.add_owner(rec, &user, label).await?;
    Ok((out, rec))
}

async fn snapshot(
    State(st): St,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let s = on(&st)?;
    let b: SnapshotBody = optional_body(body)?;
    let (out, _) = take(s, &id, b.label.clone()).await?;
    let mut v = serde_json::to_value(&out).map_err(|e| ApiError::Internal(Box::new(e)))?;
    v["label"] = json!(b.label);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkBody {
    count: u32,
    /// When given, the sandbox must be this user's (else 404, as if absent); a sandbox
    /// token may only name its own user (else 403).
    #[serde(default)]
    user_id: Option<String>,
}

async fn fork(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let s = on(&st)?;
    let b: ForkBody = serde_json::from_slice(&body_bytes(body, MAX_SMALL_BODY)?)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadRequest, e))?;
    if b.count == 0 || b.count > MAX_FORK {
        return Err(bad(format!("count must be 1-{MAX_FORK}")));
    }
    let template = s.service.template(&id)?;
    // A sandbox token naming another user is 403; an admin naming a user who does not own
    // the sandbox finds nothing.
    let named = caller.acting_as(b.user_id.as_deref(), "user_id")?;
    if named.is_some_and(|u| u != template.user_id) {
        return Err(SandboxError::NotFound(id).into());
    }
    let (out, _) = take(s, &id, None).await?;
    let mut made = Vec::new();
    let mut kind = None;
    for _ in 0..b.count {
        let started = Instant::now();
        match s
            .service
            .create_from_snapshot(template.clone(), out.snapshot, None)
            .await
        {
            Ok((info, k)) => {
                s.stats.clone_made(started.elapsed().as_millis() as u64);
                kind = Some(k);
                made.push(info);
            }
            Err(e) => {
                for m in &made {
                    let _ = s.service.delete(&m.sandbox_id).await;
                }
                return Err(e.into());
            }
        }
    }
    let body = json!({"snapshot": out.snapshot, "clone": kind, "sandboxes": made});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn pause(State(st): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let s = on(&st)?;
    let template = s.service.template(&id)?;
    let (out, _) = take(s, &id, None).await?;
    s.records
        .set_paused(&PausedRecord {
            sandbox_id: id.clone(),
            snapshot: out.snapshot,
            request: template,
            paused_ms: now_ms(),
        })
        .await?;
    s.service.delete(&id).await?;
    let body = json!({"sandbox_id": id, "status": "paused", "snapshot": out.snapshot});
    Ok(Json(body).into_response())
}

async fn resume(State(st): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let s = on(&st)?;
    let Some(p) = s.records.paused(&id).await? else {
        if s.service.get(&id).is_ok() {
            return Err(ApiError::State {
                code: ErrorCode::BadRequest,
                message: format!("sandbox {id} is running, not paused"),
            });
        }
        return Err(SandboxError::NotFound(id).into());
    };
    let started = Instant::now();
    let (info, kind) = s
        .service
        .create_from_snapshot(p.request, p.snapshot, Some(id.clone()))
        .await?;
    s.stats.clone_made(started.elapsed().as_millis() as u64);
    s.records.clear_paused(&id).await?;
    let code = if info.hot {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    let mut v = serde_json::to_value(&info).map_err(|e| ApiError::Internal(Box::new(e)))?;
    v["snapshot"] = json!(p.snapshot);
    v["clone"] = json!(kind);
    Ok((code, Json(v)).into_response())
}

/// `GET /v1/sandboxes/{id}` of a paused sandbox: still resolvable, with its snapshot.
pub async fn paused_status(s: Option<&Snapshots>, id: &str) -> Option<Response> {
    let p = s?.records.paused(id).await.ok()??;
    let body = json!({
        "sandbox_id": p.sandbox_id,
        "status": "paused",
        "snapshot": p.snapshot,
        "user_id": p.request.user_id,
        "runtime": p.request.runtime,
    });
    Some(Json(body).into_response())
}

/// `POST /v1/sandboxes` with `"snapshot"`: the user must own it or have it shared (else 404),
/// the runtime is the one it records. `None` for bodies without `"snapshot"`.
pub async fn create_hook(s: Option<&Snapshots>, body: &[u8]) -> Result<Option<Response>, ApiError> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return Ok(None);
    };
    let Some(snap) = obj.remove("snapshot") else {
        return Ok(None);
    };
    let s =
        s.ok_or_else(|| ApiError::NotFound("snapshots are not enabled on this origin".into()))?;
    let d = digest(
        snap.as_str()
            .ok_or_else(|| bad("snapshot must be a string"))?,
    )?;
    let user = obj
        .get("user_id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("user_id is required"))?
        .to_string();
    let rec = s
        .records
        .visible(&d, &user)
        .await?
        .ok_or_else(|| not_found(&d))?;
    match obj.get("runtime") {
        None => {
            obj.insert("runtime".into(), json!(rec.runtime));
        }
        Some(r) if r.as_str() == Some(rec.runtime.to_string().as_str()) => {}
        Some(_) => {
            return Err(bad(format!(
                "runtime: snapshot {d} runs on {}; leave runtime out",
                rec.runtime
            )))
        }
    }
    let req: CreateSandbox = serde_json::from_value(Value::Object(obj))
        .map_err(|e| ApiError::bad_request(ErrorCode::BadRequest, e))?;
    let started = Instant::now();
    let (info, kind) = s.service.create_from_snapshot(req, d, None).await?;
    s.stats.clone_made(started.elapsed().as_millis() as u64);
    let code = if info.hot {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    let mut v = serde_json::to_value(&info).map_err(|e| ApiError::Internal(Box::new(e)))?;
    v["snapshot"] = json!(d);
    v["clone"] = json!(kind);
    Ok(Some((code, Json(v)).into_response()))
}

/// `?user_id=`: whom an open or admin caller acts for; a sandbox token's user otherwise.
#[derive(Debug, Deserialize)]
struct UserQuery {
    #[serde(default)]
    user_id: Option<String>,
}

/// How one user sees a snapshot record.
fn view(rec: &SnapshotRecord, user: &str, parents: Vec<Digest>) -> Value {
    let mine = rec.owners.get(user);
    json!({
        "snapshot": rec.snapshot,
        "runtime": rec.runtime,
        "parent": rec.parent,
        "parents": parents,
        "files": rec.files,
        "bytes_total": rec.bytes_total,
        "owner": mine.is_some(),
        "label": mine.and_then(|o| o.label.clone()),
        "created_ms": mine.map(|o| o.created_ms),
        "shared_with": if mine.is_some() { json!(rec.shared_with) } else { Value::Null },
    })
}

async fn info(
    State(st): St,
    caller: Caller,
    Path(d): Path<String>,
    Query(q): Query<UserQuery>,
) -> Result<Response, ApiError> {
    let s = on(&st)?;
    let d = digest(&d)?;
    let user = caller.user(q.user_id.as_deref(), "user_id")?;
    let rec = s
        .records
        .visible(&d, &user)
        .await?
        .ok_or_else(|| not_found(&d))?;
    // The ancestry up to the root (bounded: a chain is one snapshot per record).
    let mut parents = Vec::new();
    let mut at = rec.parent;
    while let Some(p) = at {
        if parents.len() >= 1000 || parents.contains(&p) {
            break;
        }
        parents.push(p);
        at = s.records.snapshot(&p).await?.and_then(|r| r.parent);
    }
    Ok(Json(view(&rec, &user, parents)).into_response())
}

async fn list(
    State(st): St,
    caller: Caller,
    Query(q): Query<UserQuery>,
) -> Result<Response, ApiError> {
    let s = on(&st)?;
    let user = caller.user(q.user_id.as_deref(), "user_id")?;
    let mut out = Vec::new();
    for d in s.records.of_user(&user).await? {
        if let Some(rec) = s.records.visible(&d, &user).await? {
            out.push(view(&rec, &user, Vec::new()));
        }
    }
    Ok(Json(json!({"snapshots": out})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    /// The owner sharing it: a sandbox token's user (naming another is 403); required for
    /// open and admin callers.
    #[serde(default)]
    owner: Option<String>,
    /// The user it is shared with.
    user_id: String,
}

async fn share(
    State(st): St,
    caller: Caller,
    Path(d): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let s = on(&st)?;
    let d = digest(&d)?;
    let b: ShareBody = serde_json::from_slice(&body_bytes(body, MAX_SMALL_BODY)?)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadRequest, e))?;
    let owner = caller.user(b.owner.as_deref(), "owner")?;
    if b.user_id.is_empty() || b.user_id.len() > 256 {
        return Err(bad("user_id must be 1-256 bytes"));
    }
    let mut rec = s
        .records
        .snapshot(&d)
        .await?
        .filter(|r| r.owners.contains_key(&owner))
        .ok_or_else(|| not_found(&d))?;
    rec.shared_with.insert(b.user_id);
    s.records.save(&rec).await?;
    Ok(Json(view(&rec, &owner, Vec::new())).into_response())
}

async fn remove(
    State(st): St,
    caller: Caller,
    Path(d): Path<String>,
    Query(q): Query<UserQuery>,
) -> Result<StatusCode, ApiError> {
    let s = on(&st)?;
    let d = digest(&d)?;
    let user = caller.user(q.user_id.as_deref(), "user_id")?;
    let rec = s
        .records
        .snapshot(&d)
        .await?
        .filter(|r| r.owners.contains_key(&user))
        .ok_or_else(|| not_found(&d))?;
    s.records.remove_owner(rec, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(State(st): St) -> Result<Response, ApiError> {
    let s = on(&st)?;
    Ok(Json(json!({"snapshots": s.stats.view()})).into_response())
}
