//! Trace spans exported over OTLP/HTTP: a collector receives the origin's spans, a create's carrying its runtime and sandbox id, a warm's its runtime.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::json;

use crate::support::Node;

/// An OTLP/HTTP receiver: keeps every body posted to `/v1/traces`, answers 200 with an empty
/// `ExportTraceServiceResponse`, as a collector does.
struct Collector {
    url: String,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    _rt: tokio::runtime::Runtime,
}

impl Collector {
    fn start() -> Collector {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                post(
                    |State(b): State<Arc<Mutex<Vec<Bytes>>>>, body: Bytes| async move {
                        b.lock().expect("lock").push(body);
                        (
                            [("content-type", "application/x-protobuf")],
                            Vec::<u8>::new(),
                        )
                    },
                ),
            )
            .with_state(bodies.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        rt.spawn(async move { axum::serve(listener, app).await });
        Collector {
            url,
            bodies,
            _rt: rt,
        }
    }

    /// Every span received: its name, its attributes as text, and its service's name.
    fn spans(&self) -> Vec<(String, BTreeMap<String, String>, String)> {
        let mut out = Vec::new();
        for body in self.bodies.lock().expect("lock").iter() {
            let req =
                ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP protobuf body");
            for rs in req.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| text_of(&r.attributes).remove("service.name"))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        out.push((s.name.clone(), text_of(&s.attributes), service.clone()));
                    }
                }
            }
        }
        out
    }
}

fn text_of(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), v))
        })
        .collect()
}

#[test]
fn a_collector_gets_the_spans_of_a_create_and_its_warm_with_sandbox_and_runtime() {
    let collector = Collector::start();
    let node = Node::start(&[
        "--otlp-endpoint",
        &collector.url,
        "--otlp-service-name",
        "origin-under-test",
    ]);
    node.push_data("traced", b"x", json!([]));
    let sb = node.ready("traced");
    // Graceful shutdown flushes what the batch exporter still holds.
    drop(node);
    let spans = collector.spans();
    assert!(!spans.is_empty(), "no span reached the collector");
    assert!(
        spans.iter().all(|s| s.2 == "origin-under-test"),
        "{spans:?}"
    );
    let create = spans
        .iter()
        .find(|s| s.0 == "sandbox_create" && s.1.get("sandbox") == Some(&sb.sandbox_id))
        .unwrap_or_else(|| panic!("no sandbox_create span for {}: {spans:?}", sb.sandbox_id));
    assert_eq!(
        create.1.get("runtime").map(String::as_str),
        Some("traced:v1"),
        "{create:?}"
    );
    let warm = spans.iter().find(|s| s.0 == "warm");
    let warm = warm.unwrap_or_else(|| panic!("no warm span: {spans:?}"));
    assert_eq!(
        warm.1.get("runtime").map(String::as_str),
        Some("traced:v1"),
        "{warm:?}"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.0 == "http" && s.1.get("route").map(String::as_str) == Some("/v1/sandboxes")),
        "no span of POST /v1/sandboxes: {spans:?}"
    );
}

#[test]
fn an_endpoint_that_is_not_http_is_refused_at_start() {
    let out = std::process::Command::new(prewarm_tests::prewarm_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            "grpc://collector:4317",
        ])
        .output()
        .expect("run prewarm serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("telemetry.otlp_endpoint") && err.contains("grpc://collector:4317"),
        "{err}"
    );
}
