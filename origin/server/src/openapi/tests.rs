//! The document against the router: every route it serves, by method, is documented, and nothing else is.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use prewarm_store::MemoryStore;
use tower::ServiceExt;

use crate::repo::Repo;
use crate::{app, AppState, EncodedCache, Limits};

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

fn test_app() -> Router {
    let store = Arc::new(MemoryStore::new());
    app(AppState {
        repo: Repo::new(store.clone(), store, "memory"),
        auth: Arc::new(crate::auth::Auth::open()),
        limits: Limits::default(),
        compression_level: 0,
        encoded: EncodedCache::new(0),
        sandboxes: None,
        tiers: None,
        prediction: None,
    })
}

/// Every path literal given to `.route(` in the server's sources, in axum's syntax.
fn router_paths() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let src = std::fs::read_to_string(&p).unwrap();
                for (i, _) in src.match_indices(".route(") {
                    let rest = src[i + ".route(".len()..].trim_start();
                    // A path literal starts with `/` (this file's own `".route("` does not).
                    if let Some(lit) = rest.strip_prefix("\"/") {
                        out.insert(format!("/{}", &lit[..lit.find('"').unwrap()]));
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

/// An axum route path as OpenAPI writes it (`{*path}` → `{path}`).
fn openapi_form(path: &str) -> String {
    path.replace("{*", "{")
}

/// A concrete URI for a templated path.
fn concrete(path: &str) -> String {
    let digest = prewarm_shared::Digest::of(b"x").to_string();
    path.replace("{digest}", &digest)
        .replace("{id}", "sb-1")
        .replace("{name}", "rt")
        .replace("{tag}", "v1")
        .replace("{path}", "a/b")
}

/// Whether the router serves `method path`: neither the 405 of a known path nor the 404 of
/// the fallback.
async fn served(app: &Router, method: &str, path: &str) -> bool {
    let req = Request::builder()
        .method(method)
        .uri(concrete(path))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let fallback = status == StatusCode::NOT_FOUND && v["error"]["message"] == "no such endpoint";
    status != StatusCode::METHOD_NOT_ALLOWED && !fallback
}

fn documented() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(super::document()).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m.to_lowercase()).is_some() {
                out.insert((m.to_string(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_served_route_is_documented_and_every_documented_one_served() {
    let app = test_app();
    let paths = router_paths();
    assert!(
        paths.contains("/v1/sandboxes/{id}/files/{*path}"),
        "{paths:?}"
    );
    let mut served_ops = BTreeSet::new();
    for p in &paths {
        for m in METHODS {
            if served(&app, m, &openapi_form(p)).await {
                served_ops.insert((m.to_string(), openapi_form(p)));
            }
        }
    }
    let documented = documented();
    let undocumented: Vec<_> = served_ops.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in /openapi.json: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served_ops).collect();
    assert!(
        unserved.is_empty(),
        "in /openapi.json but not served: {unserved:?}"
    );
}

#[tokio::test]
async fn the_document_is_served_and_names_its_schemas_and_security() {
    let resp = test_app()
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 4 << 20)
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ErrorBody",
        "CreateSandbox",
        "SandboxInfo",
        "ExecResult",
        "Digest",
        "RuntimeRef",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // A protected operation names the scheme and its 401; every one documents the error body.
    let create = &doc["paths"]["/v1/sandboxes"]["post"];
    assert_eq!(create["security"][0]["bearer"], serde_json::json!([]));
    assert_eq!(
        create["responses"]["401"]["$ref"],
        "#/components/responses/Unauthorized"
    );
    let unauthorized = &doc["components"]["responses"]["Unauthorized"];
    assert_eq!(
        unauthorized["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}
