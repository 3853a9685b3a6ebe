//! A sandbox's life on a healthy node: cold create with progress events, one warm for many creates, the context.

use prewarm_shared::sandbox::{Status, Step};
use serde_json::{json, Value};

use prewarm_tests::{cli, write_pack, LayerEntries};

use crate::support::{assert_compiled, compile_step, Node};

#[test]
fn cold_create_streams_progress_then_exec_sees_warm_output_and_second_is_hot() {
    let node = Node::start(&[]);
    // The sleep keeps the warm running long enough for the WebSocket to see it in progress.
    node.push_greeter(
        "hello",
        json!([
            ["/bin/sh", "-c", "sleep 2"],
            [
                "/bin/sh",
                "-c",
                "sed s/TEMPLATE/compiled/ /opt/hello/lib/greeting.in > /opt/hello/lib/greeting"
            ]
        ]),
    );
    let (code, info) = node.create(json!({"runtime": "hello:v1", "user_id": "u1"}));
    assert_eq!(code, 202, "{info:?}");
    assert!(!info.hot);
    assert_eq!(info.state.status, Status::Warming);
    assert!(info.state.estimated_ms.is_some());

    // Two subscribers at once: a WebSocket, and Server-Sent Events on the same path.
    let sse = std::thread::scope(|scope| {
        let sse = scope.spawn(|| node.sse_events(&info.sandbox_id));
        let seen = node.events(&info.sandbox_id);
        (seen, sse.join().expect("sse thread"))
    });
    let (seen, sse) = sse;
    let (last_name, last_sse) = sse.last().expect("at least one SSE event");
    assert_eq!(
        (last_name.as_str(), last_sse.status),
        ("ready", Status::Ready),
        "{sse:?}"
    );
    assert!(
        sse.len() >= 2 && sse[0].0 == "warming",
        "progress before ready: {sse:?}"
    );
    let last = seen.last().expect("at least one event");
    assert_eq!(last.status, Status::Ready, "{seen:?}");
    assert!(seen.len() >= 2, "progress before ready: {seen:?}");
    assert!(seen
        .iter()
        .any(|s| s.status == Status::Warming && s.step == Step::Warm));
    assert!(
        seen.windows(2).all(|w| w[0].progress <= w[1].progress),
        "{seen:?}"
    );
    assert_eq!(last.progress, 1.0);

    let out = node.exec(&info.sandbox_id, &["/opt/hello/bin/hello"]);
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "hello from /opt/hello/bin\ncompiled by the warm step\n"
    );

    // A late subscriber gets the current state first, and the stream ends there.
    let late = node.events(&info.sandbox_id);
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].status, Status::Ready);

    let (code, hot) = node.create(json!({"runtime": "hello:v1", "user_id": "u2"}));
    assert_eq!(code, 201, "{hot:?}");
    assert!(hot.hot);
    assert_eq!(hot.state.status, Status::Ready);
    assert_eq!(node.stats().warms_started, 1);
    assert_compiled(&node.exec(&hot.sandbox_id, &["/opt/hello/bin/hello"]));
}

#[test]
fn fifty_concurrent_creates_run_exactly_one_warm() {
    let node = Node::start(&[]);
    node.push_greeter("busy", compile_step("busy"));
    let created = node.create_concurrently("busy:v1", 50);
    assert!(created.iter().all(|(c, _)| *c == 201 || *c == 202));
    assert!(
        created.iter().any(|(c, _)| *c == 202),
        "the first create found it cold"
    );
    for (_, info) in &created {
        let done = node.settled(&info.sandbox_id);
        assert_eq!(done.state.status, Status::Ready, "{done:?}");
        assert_eq!(done.digest, created[0].1.digest);
    }
    let stats = node.stats();
    assert_eq!(stats.warms_started, 1, "{stats:?}");
    assert_eq!(stats.warms_succeeded, 1, "{stats:?}");
    assert_eq!(stats.sandboxes, 50);
    assert_compiled(&node.exec(&created[49].1.sandbox_id, &["/opt/busy/bin/hello"]));
}

#[test]
fn context_with_quotes_and_metacharacters_arrives_byte_for_byte() {
    let node = Node::start(&[]);
    node.push_greeter("ctx", compile_step("ctx"));
    let nasty = "'''\"\"\" $(touch /workspace/pwned) `touch /workspace/pwned2` ${HOME} \\n \n\t; rm -rf / # ünïcode 'q' \"dq\" %s {} $((1+1))";
    let (_, info) = node.create(json!({"runtime": "ctx:v1", "user_id": "u", "context": nasty}));
    assert_eq!(node.settled(&info.sandbox_id).state.status, Status::Ready);
    let r = node.exec(
        &info.sandbox_id,
        &["/bin/sh", "-c", "printf '%s' \"$PREWARM_CONTEXT\""],
    );
    assert_eq!(r.stdout, nasty);
    let f = node.exec(&info.sandbox_id, &["cat", ".prewarm/context.json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&f.stdout).expect("json"),
        json!(nasty)
    );
    let ls = node.exec(&info.sandbox_id, &["ls", "-A", "/workspace"]);
    assert_eq!(ls.stdout, ".prewarm\n", "nothing executed: {ls:?}");

    // Other JSON values arrive as JSON.
    let ctx = json!({"memory": ["it's", "$(id)", "`id`"], "n": 1});
    let (code, info) = node
        .create(json!({"runtime": "ctx:v1", "user_id": "u", "context": ctx, "env": {"A": "1"}}));
    assert_eq!(code, 201);
    let r = node.exec(
        &info.sandbox_id,
        &["/bin/sh", "-c", "printf '%s' \"$PREWARM_CONTEXT\""],
    );
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).expect("json"), ctx);
}

#[test]
fn inputs_no_command_could_start_with_are_refused_at_the_door_naming_field_and_limit() {
    let node = Node::start(&[]);
    node.push_greeter("door", json!([]));
    // A context just under the limit reaches the command whole; one over is a 400, not a
    // sandbox whose every exec fails.
    let ctx = "c".repeat(60_000);
    let (_, info) = node.create(json!({"runtime": "door:v1", "user_id": "u", "context": ctx}));
    let sb = info.sandbox_id;
    assert_eq!(node.settled(&sb).state.status, Status::Ready);
    let r = node.exec(
        &sb,
        &["/bin/sh", "-c", "printf '%s' \"$PREWARM_CONTEXT\" | wc -c"],
    );
    assert_eq!(r.stdout.trim(), "60000", "{r:?}");
    let refused = |path: &str, body: Value, what: &[&str]| {
        let (code, r) = node.call("POST", path, body);
        assert_eq!(code, 400, "{r}");
        let msg = r["error"]["message"].as_str().expect("message");
        assert!(what.iter().all(|w| msg.contains(w)), "{what:?}: {msg}");
    };
    let create = "/v1/sandboxes";
    let exec = format!("/v1/sandboxes/{sb}/exec");
    let big = "x".repeat(70_000);
    refused(
        create,
        json!({"runtime": "door:v1", "user_id": "u", "context": big}),
        &["context", "65536"],
    );
    refused(
        create,
        json!({"runtime": "door:v1", "user_id": "u", "env": {"A=B": "1"}}),
        &["\"A=B\""],
    );
    refused(
        create,
        json!({"runtime": "door:v1", "user_id": "u", "env": {"A": "a\u{0}"}}),
        &["env.A", "NUL"],
    );
    refused(
        &exec,
        json!({"cmd": ["echo", "a\u{0}b"]}),
        &["cmd[1]", "NUL"],
    );
    refused(
        &exec,
        json!({"cmd": vec!["x".repeat(1000); 300]}),
        &["cmd", "262144"],
    );
    refused(
        &exec,
        json!({"cmd": ["echo", "x".repeat(200_000)]}),
        &["cmd[1]", "131071"],
    );
    refused(
        &exec,
        json!({"cmd": ["true"], "env": {"A": "x".repeat(200_000)}}),
        &["env.A", "131071"],
    );
    // The sandbox still works.
    assert_eq!(node.exec(&sb, &["true"]).exit_code, Some(0));

    // A NUL in meta.json's env is refused at push, naming the key, not at every exec.
    let dir = node.work.path().join("nul");
    let files: LayerEntries = vec![("bin/", b"", 0o755)];
    write_pack(
        &dir,
        "nul",
        &[("base", files)],
        json!({"env": {"LANG": "C\u{0}"}}),
    );
    let out = cli(&[
        "push",
        dir.to_str().expect("utf-8"),
        "--name",
        "nul:v1",
        "--to",
        &node.origin.url,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("env.LANG") && err.contains("NUL"),
        "{err}"
    );
}

#[test]
fn exec_over_a_websocket_streams_output_and_answers_pings_while_the_command_runs() {
    let node = Node::start(&[]);
    node.push_greeter("hello", json!([]));
    let sb = node.ready("hello");
    let url = format!(
        "{}/v1/sandboxes/{}/exec",
        node.origin.url.replacen("http://", "ws://", 1),
        sb.sandbox_id
    );
    let (mut socket, _) = tungstenite::connect(url).expect("websocket connect");
    // The command prints, then waits for a file that only a second exec creates, which this
    // test runs after it has *received* the first line: without streaming it would time out.
    let script =
        "echo first; while [ ! -e go ]; do sleep 0.05; done; printf 'caf\\303\\251\\n' >&2; exit 3";
    let req = json!({"cmd": ["/bin/sh", "-c", script], "timeout_ms": 30000});
    socket
        .send(tungstenite::Message::Text(req.to_string().into()))
        .expect("send request");
    let mut chunks: Vec<(String, String)> = Vec::new();
    let result = loop {
        let msg: Value = match socket.read().expect("read") {
            tungstenite::Message::Text(t) => serde_json::from_str(t.as_str()).expect("JSON"),
            tungstenite::Message::Close(_) => panic!("closed before a result: {chunks:?}"),
            _ => continue,
        };
        if let Some(r) = msg.get("result") {
            break r.clone();
        }
        let (stream, data) = (
            msg["stream"].as_str().unwrap(),
            msg["data"].as_str().unwrap(),
        );
        chunks.push((stream.to_string(), data.to_string()));
        if data.contains("first") {
            // A client's keep-alive ping is answered while the command runs.
            socket
                .send(tungstenite::Message::Ping(b"alive".to_vec().into()))
                .expect("ping");
            loop {
                match socket.read().expect("read") {
                    tungstenite::Message::Pong(p) if p.as_ref() == b"alive" => break,
                    tungstenite::Message::Text(t) => {
                        panic!("no pong before {t} (the command waits for us)")
                    }
                    _ => {}
                }
            }
            let out = node.exec(&sb.sandbox_id, &["/bin/sh", "-c", "touch go"]);
            assert_eq!(out.exit_code, Some(0), "{out:?}");
        }
    };
    assert_eq!(result["timed_out"], false, "{result}");
    assert_eq!(result["exit_code"], 3);
    assert_eq!(result["stdout"], "first\n");
    let streamed = |s: &str| -> String {
        chunks
            .iter()
            .filter(|c| c.0 == s)
            .map(|c| c.1.as_str())
            .collect()
    };
    assert_eq!(streamed("stdout"), "first\n");
    assert_eq!(streamed("stderr"), "café\n", "UTF-8 arrives whole");
    assert_eq!(chunks[0], ("stdout".to_string(), "first\n".to_string()));
}
