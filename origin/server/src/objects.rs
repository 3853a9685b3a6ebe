//! Content-addressed endpoints: GET/HEAD/PUT of blocks and manifests, and the missing-blocks query.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;

use prewarm_shared::conditional::{none_match, object_etag};
use prewarm_shared::encoding::{encoded_etag, ZSTD};
use prewarm_shared::wire::{
    MissingRequest, MissingResponse, IMMUTABLE_CACHE_CONTROL, MAX_MISSING_QUERY,
};
use prewarm_shared::{content_range, decide_range, Digest, RangeDecision};

use super::{encoding, AppState};
use crate::error::{ApiError, ErrorCode};
use prewarm_store::{Kind, StoreError};

pub(super) fn parse_digest(raw: &str) -> Result<Digest, ApiError> {
    raw.parse().map_err(|e: prewarm_shared::DigestError| {
        ApiError::bad_request(ErrorCode::Input(e.code()), format!("{e} in URL"))
    })
}

pub(super) async fn get_block(
    state: State<AppState>,
    path: Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, Kind::Block, path, method, headers).await
}

pub(super) async fn get_manifest(
    state: State<AppState>,
    path: Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, Kind::Manifest, path, method, headers).await
}

/// Sends an object (or one range of it) with immutable caching headers, zstd-encoded when the
/// client asks and it pays (see [`super::encoding`]).
async fn serve(
    State(state): State<AppState>,
    kind: Kind,
    Path(raw): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let digest = parse_digest(&raw)?;
    let store = state.repo.store();
    let Some(size) = store.head(kind, &digest).await? else {
        return Err(not_found(kind, &digest));
    };
    let mut out = HeaderMap::new();
    out.insert(header::ETAG, header_value(&object_etag(&digest))?);
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(IMMUTABLE_CACHE_CONTROL),
    );
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // On every answer, 304 and HEAD included: a shared cache must never hand a zstd body to
    // a client that did not ask for one, nor file both under one key.
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    let content_type = if kind == Kind::Manifest {
        "application/json"
    } else {
        "application/octet-stream"
    };
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &digest))
    {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    let level = state.compression_level;
    let kept = encoding::wants_zstd(&method, &headers, size, level)
        .then(|| state.encoded.get(kind, &digest));
    // Known not to compress (`Some(Some(None))`): the identity path below, as any other GET.
    if let Some(kept @ (None | Some(Some(_)))) = kept {
        let (body, zstd) = match kept {
            Some(Some(encoded)) => (encoded, true),
            _ => {
                let obj = store
                    .get(kind, &digest)
                    .await?
                    .ok_or_else(|| not_found(kind, &digest))?;
                let raw = obj.into_bytes().await?;
                let encoded = encoding::compress(raw.clone(), level).await?;
                state.encoded.insert(kind, &digest, encoded.clone());
                match encoded {
                    Some(e) => (e, true),
                    None => (raw, false),
                }
            }
        };
        if zstd {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static(ZSTD));
            out.insert(header::ETAG, header_value(&encoded_etag(&digest))?);
        }
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        return Ok((StatusCode::OK, out, Body::from(body)).into_response());
    }
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, object) = match decide_range(range_header, size) {
        RangeDecision::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size }),
        RangeDecision::Full => (StatusCode::OK, None),
        RangeDecision::Partial(r) => {
            out.insert(
                header::CONTENT_RANGE,
                header_value(&content_range(Some(&r), size))?,
            );
            (StatusCode::PARTIAL_CONTENT, Some(r))
        }
    };
    let len = object.as_ref().map_or(size, |r| r.end - r.start);
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if method == Method::HEAD {
        return Ok((status, out).into_response());
    }
    let obj = match object {
        None => store.get(kind, &digest).await?,
        Some(r) => store.get_range(kind, &digest, r).await?,
    };
    // Deleted between head and get: report it as gone rather than send a wrong length.
    let obj = obj.ok_or_else(|| not_found(kind, &digest))?;
    // A body that comes in one piece (memory, a small disk read) goes out whole, so hyper
    // writes headers and body together; a failed first read is a clean error status.
    let mut stream = obj.body;
    let body = match stream.next().await.transpose()? {
        None => Body::empty(),
        Some(first) if first.len() as u64 == len => Body::from(first),
        Some(first) => Body::from_stream(futures::stream::once(async { Ok(first) }).chain(stream)),
    };
    Ok((status, out, body).into_response())
}

fn not_found(kind: Kind, digest: &Digest) -> ApiError {
    ApiError::NotFound(format!("{} {digest} not found", kind.as_str()))
}

fn header_value(v: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(v).map_err(|e| ApiError::Internal(Box::new(e)))
}

/// Streams a block into the store; the store hashes while writing and refuses a mismatch.
pub(super) async fn put_block(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let digest = parse_digest(&raw)?;
    let limit = state.limits.max_block_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let too_large = Arc::new(AtomicBool::new(false));
    let flag = too_large.clone();
    let mut seen = 0u64;
    let stream = body
        .into_data_stream()
        .map(move |piece| {
            let piece = piece.map_err(|e| StoreError::other("http", e))?;
            seen += piece.len() as u64;
            if seen > limit {
                flag.store(true, Ordering::Relaxed);
                return Err(StoreError::other("http", "body over the block size limit"));
            }
            Ok(piece)
        })
        .boxed();
    match state.repo.put_block(&digest, stream).await {
        Ok(()) => Ok(StatusCode::CREATED.into_response()),
        Err(_) if too_large.load(Ordering::Relaxed) => Err(ApiError::TooLarge { limit }),
        Err(e) => Err(e.into()),
    }
}

/// The body, or 413 naming `limit` (the route's body limit) if it is larger.
pub(crate) fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    limit: u64,
) -> Result<Bytes, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge { limit }
        } else {
            ApiError::bad_request(ErrorCode::BadBody, e.body_text())
        }
    })?;
    if bytes.len() as u64 > limit {
        return Err(ApiError::TooLarge { limit });
    }
    Ok(bytes)
}

/// Stores a manifest: hash checked, form validated, all blocks present.
pub(super) async fn put_manifest(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let digest = parse_digest(&raw)?;
    let bytes = body_bytes(body, state.limits.max_manifest_bytes)?;
    state.repo.put_manifest(&digest, bytes).await?;
    Ok(StatusCode::CREATED.into_response())
}

/// `POST /v1/blocks/missing`: which of these blocks should the client upload?
pub(super) async fn missing(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MissingResponse>, ApiError> {
    let bytes = body_bytes(body, super::MAX_MISSING_BODY)?;
    let req: MissingRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::BadJson,
            format!("body must be {{\"digests\":[\"sha256:…\"]}}: {e}"),
        )
    })?;
    if req.digests.len() > MAX_MISSING_QUERY {
        return Err(ApiError::bad_request(
            ErrorCode::TooManyDigests,
            format!("at most {MAX_MISSING_QUERY} digests per request"),
        ));
    }
    Ok(Json(MissingResponse {
        missing: state.repo.missing(&req.digests).await?,
    }))
}
