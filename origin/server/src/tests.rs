//! The API driven in-process: each route's own body limit.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::*;
use prewarm_store::MemoryStore;

fn app_with(limits: Limits) -> Router {
    let store = Arc::new(MemoryStore::new());
    app(AppState {
        repo: Repo::new(store.clone(), store, "memory"),
        auth: Arc::new(Auth::open()),
        limits,
        compression_level: 0,
        encoded: EncodedCache::new(0),
        sandboxes: None,
        tiers: None,
        prediction: None,
    })
}

/// Sends `len` bytes to `method path`; the status and the error body's message.
async fn send(app: &Router, method: &str, path: &str, len: usize) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(vec![b' '; len]))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    (
        status,
        v["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn every_route_has_its_own_body_limit_and_names_it() {
    let limits = Limits {
        max_block_bytes: 64 << 10,
        max_manifest_bytes: 32 << 10,
        ..Limits::default()
    };
    let app = app_with(limits);
    let digest = format!("/v1/blocks/{}", prewarm_shared::Digest::of(b"x"));
    let manifest = format!("/v1/manifests/{}", prewarm_shared::Digest::of(b"x"));
    let small = MAX_SMALL_BODY as usize;
    for (method, path, limit) in [
        ("POST", "/v1/sandboxes", MAX_SANDBOX_BODY as usize),
        ("POST", "/v1/sandboxes/sb-1/exec", MAX_SANDBOX_BODY as usize),
        ("POST", "/v1/warm", small),
        ("PUT", "/v1/runtimes/rt/tags/v1", small),
        ("POST", "/v1/blocks/missing", MAX_MISSING_BODY as usize),
        ("PUT", manifest.as_str(), 32 << 10),
        ("PUT", digest.as_str(), 64 << 10),
    ] {
        let (status, message) = send(&app, method, path, limit + 1).await;
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}: {message}"
        );
        assert!(
            message.contains(&limit.to_string()),
            "{method} {path}: {message}"
        );
        // At the limit the body is read (and then refused for what it says, not its size).
        let (status, message) = send(&app, method, path, limit).await;
        assert_ne!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}: {message}"
        );
    }
    // The JSON routes are far below the manifest limit they shared before.
    const { assert!(MAX_SANDBOX_BODY < 2 << 20 && MAX_MISSING_BODY < 16 << 20) };
}
