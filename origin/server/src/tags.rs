//! Tag endpoints: resolve `NAME:TAG` to a manifest digest, move a tag, delete one.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prewarm_shared::wire::TagBody;
use prewarm_shared::{RuntimeName, Tag};

use super::AppState;
use crate::error::{ApiError, ErrorCode};

/// How long clients and the edge may cache a tag resolution: tags move.
const TAG_CACHE_CONTROL: &str = "public, max-age=10";

fn parse(name: &str, tag: &str) -> Result<(RuntimeName, Tag), ApiError> {
    let n = name
        .parse::<RuntimeName>()
        .map_err(|e| ApiError::bad_request(ErrorCode::Input(e.code()), e))?;
    let t = tag
        .parse::<Tag>()
        .map_err(|e| ApiError::bad_request(ErrorCode::Input(e.code()), e))?;
    Ok((n, t))
}

pub(super) async fn get_tag(
    State(state): State<AppState>,
    Path((name, tag)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (name, tag) = parse(&name, &tag)?;
    let digest = state.repo.get_tag(&name, &tag).await?;
    let mut resp = Json(TagBody { digest }).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(TAG_CACHE_CONTROL),
    );
    Ok(resp)
}

pub(super) async fn put_tag(
    State(state): State<AppState>,
    Path((name, tag)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (name, tag) = parse(&name, &tag)?;
    let bytes = super::body_bytes(body, super::MAX_SMALL_BODY)?;
    let TagBody { digest } = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::BadJson,
            format!("body must be {{\"digest\":\"sha256:…\"}}: {e}"),
        )
    })?;
    state.repo.set_tag(&name, &tag, &digest).await?;
    Ok((StatusCode::OK, Json(TagBody { digest })).into_response())
}

/// `DELETE /v1/runtimes/{name}/tags/{tag}`: 200 with the digest it pointed at, 404 if there was
/// no such tag. The manifest and blocks stay until `prewarm gc` finds them unreferenced.
pub(super) async fn delete_tag(
    State(state): State<AppState>,
    Path((name, tag)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (name, tag) = parse(&name, &tag)?;
    let digest = state.repo.delete_tag(&name, &tag).await?;
    tracing::info!(%name, %tag, %digest, "tag deleted");
    Ok((StatusCode::OK, Json(TagBody { digest })).into_response())
}
