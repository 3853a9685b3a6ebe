//! HTTP handlers of `/v1/sandboxes/{id}/files`: files in and out of a sandbox's workspace, streamed.
//!
//! - `PUT …/files/{path}[?mode=0755]`: the body becomes the file, atomically (201).
//! - `GET …/files/{path}`: the file (Range works); `?list` on a directory: its entries as JSON;
//!   `?archive=tar`: the directory as a tar stream (`…/files` alone is the workspace root).
//! - `DELETE …/files/{path}`: a file, symlink or whole directory (204).
//! - `POST …/files:upload[?dir=d]`: a tar stream unpacked into directory `d` (default: the root).
//!
//! The work is blocking file I/O on descriptors (see `prewarm_node::sandbox::files`), run on
//! the blocking pool with the body bridged in or out; nothing is buffered whole.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{StreamExt, TryStreamExt};
use prewarm_node::sandbox::files::{parse_mode, FileError, Workspace, DEFAULT_FILE_MODE};
use prewarm_shared::{content_range, decide_range, RangeDecision, RelPath};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use super::routes::service;
use super::SandboxState;
use crate::error::{ApiError, ErrorCode};

/// The files routes, merged into the sandbox router.
pub(super) fn routes() -> Router<SandboxState> {
    Router::new()
        .route("/v1/sandboxes/{id}/files", get(get_root))
        .route(
            "/v1/sandboxes/{id}/files/{*path}",
            get(get_path).put(put_file).delete(delete_path),
        )
        .route("/v1/sandboxes/{id}/files:upload", post(upload))
}

type Params = Query<HashMap<String, String>>;

/// Bytes moved between the body and the blocking side at a time.
const PIPE_BYTES: usize = 256 << 10;

fn rel(path: &str) -> Result<RelPath, ApiError> {
    path.parse::<RelPath>()
        .map_err(|e| ApiError::bad_request(ErrorCode::Input(e.code()), e))
}

/// Refuses query parameters the route does not take, naming them.
fn only(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(
            ErrorCode::BadRequest,
            format!(
                "unknown query parameter {k:?} (this route takes: {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Runs `f` on the sandbox's open workspace, on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &SandboxState,
    id: String,
    f: impl FnOnce(Workspace) -> Result<T, FileError> + Send + 'static,
) -> Result<T, ApiError> {
    let svc = service(state)?.clone();
    tokio::task::spawn_blocking(move || {
        let ws = svc.workspace(&id)?;
        f(ws).map_err(Into::into)
    })
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))?
    .map_err(|e: prewarm_node::sandbox::files::FileOrSandbox| ApiError::from(e))
}

async fn get_root(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    get_any(state, id, None, q).await
}

async fn get_path(
    State(state): State<SandboxState>,
    Path((id, path)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // `…/files/` is the root, as `…/files` is.
    if path.is_empty() {
        return get_any(state, id, None, q).await;
    }
    let path = rel(&path)?;
    if q.is_empty() {
        return read_file(state, id, path, &headers).await;
    }
    get_any(state, id, Some(path), q).await
}

/// `?list` or `?archive=tar` of a directory.
async fn get_any(
    state: SandboxState,
    id: String,
    dir: Option<RelPath>,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    only(&q, &["list", "archive"])?;
    if q.contains_key("list") && !q.contains_key("archive") {
        let shown = dir.as_ref().map_or(String::new(), ToString::to_string);
        let entries = blocking(&state, id, move |ws| ws.list(dir.as_ref())).await?;
        return Ok(Json(serde_json::json!({ "path": shown, "entries": entries })).into_response());
    }
    match q.get("archive").map(String::as_str) {
        Some("tar") if !q.contains_key("list") => archive(state, id, dir).await,
        Some(other) if other != "tar" => Err(ApiError::bad_request(
            ErrorCode::BadRequest,
            format!("archive={other:?}: the only archive format is `tar`"),
        )),
        _ => Err(ApiError::bad_request(
            ErrorCode::BadRequest,
            "a directory is read with `?list` (its entries) or `?archive=tar` (its contents), one of them",
        )),
    }
}

/// Streams a regular file, whole or the one range asked for.
async fn read_file(
    state: SandboxState,
    id: String,
    path: RelPath,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (ws, file, size) = blocking(&state, id, move |ws| {
        let (f, size) = ws.open_read(&path)?;
        Ok((ws, f, size))
    })
    .await?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, span) = match decide_range(range, size) {
        RangeDecision::Full => (StatusCode::OK, 0..size),
        RangeDecision::Partial(r) => (StatusCode::PARTIAL_CONTENT, r),
        RangeDecision::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size }),
    };
    let mut file = tokio::fs::File::from_std(file);
    file.seek(std::io::SeekFrom::Start(span.start))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let len = span.end - span.start;
    let stop = ws.stop();
    // The workspace (and so the sandbox's busy mark) lives as long as the stream.
    let stream = ReaderStream::with_capacity(file.take(len), PIPE_BYTES)
        .take_until(stop.cancelled_owned())
        .map(move |chunk| {
            let _held = &ws;
            chunk
        });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = content_range(Some(&span), size).parse() {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// Streams a directory as tar. Errors after the first byte cut the stream short (no
/// end-of-archive marker), which every tar reader reports.
async fn archive(
    state: SandboxState,
    id: String,
    dir: Option<RelPath>,
) -> Result<Response, ApiError> {
    let d = dir.clone();
    let ws = blocking(&state, id, move |ws| ws.list(d.as_ref()).map(|_| ws)).await?;
    let (reader, writer) = tokio::io::duplex(PIPE_BYTES);
    let stop = ws.stop();
    let mut out = SyncIoBridge::new(writer);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = ws.pack_tar(dir.as_ref(), &mut out) {
            tracing::debug!(error = %e, "tar download ended early");
        }
    });
    let stream = ReaderStream::with_capacity(reader, PIPE_BYTES).take_until(stop.cancelled_owned());
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(resp)
}

/// The request body as a blocking reader; it ends early when the sandbox is deleted.
fn body_reader(
    body: Body,
    ws: &Workspace,
) -> SyncIoBridge<impl tokio::io::AsyncRead + Unpin + Send + 'static> {
    let stream = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .take_until(ws.stop().cancelled_owned());
    SyncIoBridge::new(StreamReader::new(Box::pin(stream)))
}

async fn put_file(
    State(state): State<SandboxState>,
    Path((id, path)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    only(&q, &["mode"])?;
    let path = rel(&path)?;
    let mode = match q.get("mode") {
        Some(m) => parse_mode(m)?,
        None => DEFAULT_FILE_MODE,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let ws = blocking(&state, id, Ok).await?;
    if declared.is_some_and(|n| n > ws.file_limit()) {
        return Err(ApiError::from(FileError::TooLarge {
            path: path.to_string(),
            limit: ws.file_limit(),
        }));
    }
    let mut reader = body_reader(body, &ws);
    let shown = path.to_string();
    let size = tokio::task::spawn_blocking(move || ws.write(&path, &mut reader, mode))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??;
    let body = serde_json::json!({ "path": shown, "size": size, "mode": mode });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn delete_path(
    State(state): State<SandboxState>,
    Path((id, path)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let path = rel(&path)?;
    blocking(&state, id, move |ws| ws.remove(&path)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn upload(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
    Query(q): Params,
    body: Body,
) -> Result<Response, ApiError> {
    only(&q, &["dir"])?;
    let dir = match q.get("dir").map(String::as_str) {
        None | Some("") | Some(".") => None,
        Some(d) => Some(rel(d)?),
    };
    let ws = blocking(&state, id, Ok).await?;
    let mut reader = body_reader(body, &ws);
    let shown = dir.as_ref().map_or(String::new(), ToString::to_string);
    let entries = tokio::task::spawn_blocking(move || ws.unpack_tar(dir.as_ref(), &mut reader))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??;
    Ok(Json(serde_json::json!({ "dir": shown, "entries": entries })).into_response())
}
