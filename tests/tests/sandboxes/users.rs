//! Users: scoped tokens from a tokens file of hashes (issued by `prewarm token issue`), on a real origin. Two sandbox users never reach each other's sandboxes, files, execs or snapshots (404), the token decides the user, read and push tokens stay in their lanes, admin does everything, SIGHUP loads new tokens.

use std::path::Path;

use prewarm_tests::{cli_json, http, write_pack, LayerEntries};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;

use crate::support::Node;

/// `prewarm token issue … --append FILE --json`: the token's text.
fn issue(file: &Path, scope: &str, user: Option<&str>, name: &str) -> String {
    let f = file.to_str().unwrap();
    let mut args = vec![
        "token", "issue", "--scope", scope, "--name", name, "--append", f, "--json",
    ];
    if let Some(u) = user {
        args.extend(["--user", u]);
    }
    let out = cli_json(&args);
    let token = out["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("pwt_"), "{out}");
    token
}

/// `METHOD PATH` with `token` (if any) and a JSON body (unless null): status and JSON body.
fn call(node: &Node, token: Option<&str>, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{path}", node.origin.url);
    let mut req = http().request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if !body.is_null() {
        req = req.json(&body);
    }
    let r = req.send().expect(path);
    let code = r.status().as_u16();
    (code, r.json().unwrap_or(Value::Null))
}

/// `METHOD PATH` with raw bytes: the status.
fn raw(node: &Node, token: &str, method: &str, path: &str, body: Vec<u8>) -> u16 {
    let url = format!("{}{path}", node.origin.url);
    let r = http()
        .request(method.parse().unwrap(), url)
        .bearer_auth(token)
        .body(body)
        .send()
        .expect(path);
    r.status().as_u16()
}

/// Creates a sandbox of `rt` as `token` (body `user_id` if given) and waits until it is ready.
fn ready(node: &Node, token: &str, rt: &str, user: Option<&str>) -> (String, Value) {
    let mut body = json!({"runtime": rt});
    if let Some(u) = user {
        body["user_id"] = json!(u);
    }
    let (code, v) = call(node, Some(token), "POST", "/v1/sandboxes", body);
    assert!(code == 201 || code == 202, "{code} {v}");
    let id = v["sandbox_id"].as_str().unwrap().to_string();
    node.until(&format!("{id} ready"), || {
        let (_, s) = call(
            node,
            Some(token),
            "GET",
            &format!("/v1/sandboxes/{id}"),
            Value::Null,
        );
        assert_ne!(s["status"], "failed", "{s}");
        (s["status"] == "ready").then_some(())
    });
    (id, v)
}

fn exec(node: &Node, token: &str, id: &str, script: &str) -> (u16, Value) {
    let body = json!({"cmd": ["/bin/sh", "-c", script]});
    call(
        node,
        Some(token),
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        body,
    )
}

/// The status of a WebSocket handshake on `path` as `token`.
fn ws_status(node: &Node, token: &str, path: &str) -> u16 {
    let url = format!("{}{path}", node.origin.url.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tungstenite::connect(req) {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("websocket {path}: {e}"),
    }
}

#[test]
fn two_users_never_reach_each_others_sandboxes_and_each_scope_stays_in_its_lane() {
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("tokens.toml");
    let alice = issue(&file, "sandbox", Some("alice"), "alice");
    let bob = issue(&file, "sandbox", Some("bob"), "bob");
    let reader = issue(&file, "read", None, "reader");
    let pusher = issue(&file, "push", None, "ci");
    let admin = issue(&file, "admin", None, "ops");
    let text = std::fs::read_to_string(&file).unwrap();
    for t in [&alice, &bob, &reader, &pusher, &admin] {
        assert!(
            !text.contains(&t[4..]),
            "the tokens file holds a token's text: {text}"
        );
    }
    assert_eq!(text.matches("hash = \"sha256:").count(), 5, "{text}");

    let node = Node::start(&["--tokens-file", file.to_str().unwrap()]);

    // Push: a push token may, a read token may not; reads need a token with a tokens file.
    let dir = node.work.path().join("usr");
    let files: LayerEntries = vec![
        ("bin/", b"", 0o755),
        ("bin/hello", b"#!/bin/sh\necho hi\n", 0o755),
    ];
    write_pack(
        &dir,
        "usr",
        &[("base", files)],
        json!({"prefix": "/opt/usr", "env": {"RT": "usr"}, "warm": []}),
    );
    let src = dir.to_str().unwrap();
    let url = node.origin.url.clone();
    let refused = prewarm_tests::cli(&[
        "push", src, "--name", "usr:v1", "--to", &url, "--token", &reader,
    ]);
    assert!(!refused.status.success(), "a read token pushed");
    cli_json(&[
        "push", src, "--name", "usr:v1", "--to", &url, "--token", &pusher, "--json",
    ]);
    let tag = "/v1/runtimes/usr/tags/v1";
    assert_eq!(
        call(&node, None, "GET", tag, Value::Null).0,
        401,
        "reads are private with a tokens file"
    );
    assert_eq!(call(&node, Some(&reader), "GET", tag, Value::Null).0, 200);
    let (code, v) = call(&node, Some(&reader), "PUT", tag, json!("sha256:00"));
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let into = node.work.path().join("pulled");
    let cache = node.work.path().join("cache");
    let pulled = prewarm_tests::pull_json("usr:v1", &url, &into, &cache, &["--token", &reader]);
    assert!(pulled["digest"].is_string(), "{pulled}");

    // Sandboxes: a push or read token may not make one.
    for t in [&pusher, &reader] {
        let (code, v) = call(
            &node,
            Some(t),
            "POST",
            "/v1/sandboxes",
            json!({"runtime": "usr:v1"}),
        );
        assert_eq!(code, 403, "{v}");
    }
    assert_eq!(
        call(
            &node,
            None,
            "POST",
            "/v1/sandboxes",
            json!({"runtime": "usr:v1"})
        )
        .0,
        401
    );

    // The token decides the user: left out, it is the token's; another is 403.
    let (a, made) = ready(&node, &alice, "usr:v1", None);
    assert_eq!(made["user_id"], "alice", "{made}");
    let (code, v) = call(
        &node,
        Some(&alice),
        "POST",
        "/v1/sandboxes",
        json!({"runtime": "usr:v1", "user_id": "bob"}),
    );
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let (b, _) = ready(&node, &bob, "usr:v1", Some("bob"));
    let (code, out) = exec(&node, &alice, &a, "echo alice-secret > secret; cat secret");
    assert_eq!(
        (code, out["stdout"].as_str()),
        (200, Some("alice-secret\n")),
        "{out}"
    );
    let (code, snap) = call(
        &node,
        Some(&alice),
        "POST",
        &format!("/v1/sandboxes/{a}/snapshot"),
        json!({}),
    );
    assert_eq!(code, 201, "{snap}");
    let snap = snap["snapshot"].as_str().unwrap().to_string();

    // Bob, on every route naming Alice's sandbox: 404, the answer for an id that is not there.
    let absent = call(
        &node,
        Some(&bob),
        "GET",
        "/v1/sandboxes/no-such-sandbox",
        Value::Null,
    );
    assert_eq!(absent.0, 404);
    let sb = format!("/v1/sandboxes/{a}");
    let cmd = json!({"cmd": ["/bin/cat", "secret"]});
    for (method, path, body) in [
        ("GET", sb.clone(), Value::Null),
        ("GET", format!("{sb}/events"), Value::Null),
        ("POST", format!("{sb}/exec"), cmd.clone()),
        ("POST", format!("{sb}/run"), json!({"code": "print(1)"})),
        ("GET", format!("{sb}/files"), Value::Null),
        ("GET", format!("{sb}/files/secret"), Value::Null),
        ("GET", format!("{sb}/files?list"), Value::Null),
        ("DELETE", format!("{sb}/files/secret"), Value::Null),
        ("POST", format!("{sb}/snapshot"), json!({})),
        ("POST", format!("{sb}/fork"), json!({"count": 1})),
        ("POST", format!("{sb}/pause"), Value::Null),
        ("POST", format!("{sb}/resume"), Value::Null),
        ("DELETE", sb.clone(), Value::Null),
        ("GET", format!("/v1/snapshots/{snap}"), Value::Null),
        ("DELETE", format!("/v1/snapshots/{snap}"), Value::Null),
        (
            "POST",
            format!("/v1/snapshots/{snap}/share"),
            json!({"user_id": "bob"}),
        ),
        ("POST", "/v1/sandboxes".into(), json!({"snapshot": snap})),
    ] {
        let (code, v) = call(&node, Some(&bob), method, &path, body);
        assert_eq!(
            (code, v["error"]["code"].as_str()),
            (404, Some("not_found")),
            "bob {method} {path}: {v}"
        );
    }
    assert_eq!(
        raw(
            &node,
            &bob,
            "PUT",
            &format!("{sb}/files/planted"),
            b"x".to_vec()
        ),
        404
    );
    assert_eq!(
        raw(
            &node,
            &bob,
            "POST",
            &format!("{sb}/files:upload"),
            Vec::new()
        ),
        404
    );
    assert_eq!(ws_status(&node, &bob, &format!("{sb}/exec")), 404);
    assert_eq!(ws_status(&node, &bob, &format!("{sb}/run")), 404);
    // Naming Alice in the body or query changes nothing for Bob's token.
    let (code, _) = call(
        &node,
        Some(&bob),
        "GET",
        &format!("/v1/snapshots/{snap}?user_id=alice"),
        Value::Null,
    );
    assert_eq!(code, 403);
    let (code, _) = call(
        &node,
        Some(&bob),
        "POST",
        &format!("{sb}/fork"),
        json!({"count": 1, "user_id": "alice"}),
    );
    assert_eq!(code, 404, "the sandbox is checked first");
    // Alice's sandbox and its file are untouched.
    let (code, out) = exec(&node, &alice, &a, "cat secret; ls");
    assert_eq!(
        (code, out["stdout"].as_str()),
        (200, Some("alice-secret\nsecret\n")),
        "{out}"
    );

    // Lists and the page's state show each user only their own.
    let ids = |t: &str| -> Vec<String> {
        let (code, v) = call(&node, Some(t), "GET", "/v1/sandboxes", Value::Null);
        assert_eq!(code, 200, "{v}");
        v["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sandbox_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&alice), vec![a.clone()]);
    assert_eq!(ids(&bob), vec![b.clone()]);
    let (_, list) = call(&node, Some(&bob), "GET", "/v1/snapshots", Value::Null);
    assert_eq!(list["snapshots"], json!([]), "{list}");
    let (_, list) = call(&node, Some(&alice), "GET", "/v1/snapshots", Value::Null);
    assert_eq!(list["snapshots"][0]["snapshot"], json!(snap), "{list}");
    let users = |t: &str| -> Vec<String> {
        let (code, v) = call(&node, Some(t), "GET", "/v1/ui/state", Value::Null);
        assert_eq!(code, 200, "{v}");
        v["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["user"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(users(&bob), vec!["bob"]);
    assert_eq!(
        call(&node, Some(&reader), "GET", "/v1/ui/state", Value::Null).0,
        403
    );

    // Alice shares her snapshot with Bob: now (and only now) he can start from it.
    let (code, v) = call(
        &node,
        Some(&alice),
        "POST",
        &format!("/v1/snapshots/{snap}/share"),
        json!({"user_id": "bob"}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = call(
        &node,
        Some(&bob),
        "POST",
        "/v1/sandboxes",
        json!({"snapshot": snap}),
    );
    assert!(code == 201 || code == 202, "{v}");
    assert_eq!(v["user_id"], "bob", "{v}");

    // Paused, Alice's sandbox is still hers alone.
    let (code, v) = call(
        &node,
        Some(&alice),
        "POST",
        &format!("{sb}/pause"),
        Value::Null,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        call(
            &node,
            Some(&bob),
            "POST",
            &format!("{sb}/resume"),
            Value::Null
        )
        .0,
        404
    );
    assert_eq!(call(&node, Some(&bob), "GET", &sb, Value::Null).0, 404);
    let (code, v) = call(
        &node,
        Some(&alice),
        "POST",
        &format!("{sb}/resume"),
        Value::Null,
    );
    assert!(code == 201 || code == 202, "{v}");

    // Admin: every user's sandbox, and acts for the user it names.
    let mut all = users(&admin);
    all.sort();
    assert!(
        all.contains(&"alice".to_string()) && all.contains(&"bob".to_string()),
        "{all:?}"
    );
    let (c, _) = ready(&node, &admin, "usr:v1", Some("carol"));
    let (_, v) = call(
        &node,
        Some(&admin),
        "GET",
        &format!("/v1/sandboxes/{c}"),
        Value::Null,
    );
    assert_eq!(v["user_id"], "carol");
    node.until("alice's resumed sandbox ready", || {
        let (_, s) = call(&node, Some(&admin), "GET", &sb, Value::Null);
        (s["status"] == "ready").then_some(())
    });
    let (code, out) = exec(&node, &admin, &a, "cat secret");
    assert_eq!(
        (code, out["stdout"].as_str()),
        (200, Some("alice-secret\n")),
        "{out}"
    );
    assert_eq!(
        call(
            &node,
            Some(&admin),
            "DELETE",
            &format!("/v1/sandboxes/{b}"),
            Value::Null
        )
        .0,
        204
    );

    // A token issued while the origin runs works after SIGHUP, not before.
    let dave = issue(&file, "sandbox", Some("dave"), "dave");
    assert_eq!(
        call(&node, Some(&dave), "GET", "/v1/sandboxes", Value::Null).0,
        401
    );
    let pid = node.origin.pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    node.until("dave's token loaded", || {
        (call(&node, Some(&dave), "GET", "/v1/sandboxes", Value::Null).0 == 200).then_some(())
    });
    assert_eq!(ids(&dave), Vec::<String>::new());
}

#[test]
fn the_single_token_file_still_acts_as_admin_and_reads_stay_public() {
    let keys = tempfile::tempdir().unwrap();
    let f = keys.path().join("token");
    std::fs::write(&f, "old-style-secret\n").unwrap();
    let node = Node::start(&["--token-file", f.to_str().unwrap()]);
    assert_eq!(
        call(&node, None, "GET", "/v1/runtimes/x/tags/v1", Value::Null).0,
        404,
        "public read"
    );
    assert_eq!(
        call(&node, None, "GET", "/v1/sandboxes", Value::Null).0,
        401
    );
    let (code, v) = call(
        &node,
        Some("old-style-secret"),
        "GET",
        "/v1/sandboxes",
        Value::Null,
    );
    assert_eq!((code, &v["sandboxes"]), (200, &json!([])), "{v}");
    let (code, v) = call(
        &node,
        Some("old-style-secret"),
        "GET",
        "/v1/snapshots?user_id=anyone",
        Value::Null,
    );
    assert_eq!(code, 200, "{v}");
}
