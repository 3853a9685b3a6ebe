//! `run`: code in a sandbox's long-lived interpreter (the host's python3 in the jail), and the pool of pre-started ones.

use prewarm_shared::run::RunResult;
use prewarm_tests::{push_json, write_pack, LayerEntries};
use serde_json::{json, Value};

use super::support::Node;

/// Pushes `pyrt:v1`: mounted at `/opt/pyrt`, its interpreter the host's `/usr/bin/python3`
/// (under `/usr`, which every sandbox sees read-only), `decimal` preloaded.
fn push_python(node: &Node) {
    assert!(
        std::path::Path::new("/usr/bin/python3").exists(),
        "these tests run the host's /usr/bin/python3 inside the sandbox"
    );
    let dir = node.work.path().join("pyrt");
    let files: LayerEntries = vec![("lib/", b"", 0o755), ("lib/marker", b"pyrt\n", 0o644)];
    let meta = json!({
        "prefix": "/opt/pyrt",
        "env": {"RT": "pyrt"},
        "interpreters": {"python": {"cmd": ["/usr/bin/python3"], "preload": ["decimal"]}},
    });
    write_pack(&dir, "pyrt", &[("base", files)], meta);
    push_json(&dir, "pyrt:v1", &node.origin.url);
}

fn run(node: &Node, id: &str, body: Value) -> RunResult {
    let (code, r) = node.call("POST", &format!("/v1/sandboxes/{id}/run"), body);
    assert_eq!(code, 200, "{r}");
    serde_json::from_value(r).expect("run result")
}

fn code(node: &Node, id: &str, code: &str) -> RunResult {
    run(node, id, json!({ "code": code }))
}

/// The value of the code's last expression; fails on an exception or a dead interpreter.
fn value(node: &Node, id: &str, src: &str) -> String {
    let r = code(node, id, src);
    assert!(
        r.error.is_none() && r.died.is_none() && !r.timed_out,
        "{src}: {r:?}"
    );
    r.result.unwrap_or_default()
}

/// `/metrics`' `interpreter_pool`.
fn pool(node: &Node) -> Value {
    node.call("GET", "/metrics", Value::Null).1["interpreter_pool"].clone()
}

/// A ready sandbox of `pyrt:v1` that ran code once: the runtime is warm, and pooled from now on.
fn first_sandbox(node: &Node) -> String {
    let sb = node.ready("pyrt").sandbox_id;
    value(node, &sb, "1");
    sb
}

fn create(node: &Node, body: Value) -> String {
    let (status, info) = node.create(body);
    assert_eq!(status, 201, "{info:?}");
    info.sandbox_id
}

#[test]
fn state_errors_output_timeouts_and_deaths() {
    let node = Node::start(&["--sandbox-pool-size", "0"]);
    push_python(&node);
    let sb = node.ready("pyrt").sandbox_id;
    let first = code(&node, &sb, "x = 41");
    assert!(
        first.fresh_interpreter && first.result.is_none(),
        "{first:?}"
    );
    let r = code(
        &node,
        &sb,
        "print('out')\nimport sys\nprint('err', file=sys.stderr)\nx + 1",
    );
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
    assert_eq!(r.result.as_deref(), Some("42"), "state persists: {r:?}");
    assert!(!r.fresh_interpreter);
    // The runtime's env reaches the interpreter, which works in the workspace.
    assert_eq!(
        value(&node, &sb, "import os; (os.environ['RT'], os.getcwd())"),
        "('pyrt', '/workspace')"
    );

    // An exception is a result, with the cell's own traceback.
    let r = code(&node, &sb, "def f():\n    return 1 / 0\nf()");
    let e = r.error.expect("an error");
    assert_eq!(
        (e.name.as_str(), e.value.as_str()),
        ("ZeroDivisionError", "division by zero")
    );
    assert!(e.traceback.contains("return 1 / 0"), "{}", e.traceback);
    assert_eq!(value(&node, &sb, "x"), "41", "an exception keeps the state");

    // An infinite loop times out, and the next call gets a fresh interpreter.
    let r = run(
        &node,
        &sb,
        json!({"code": "while True: pass", "timeout_ms": 500}),
    );
    assert!(r.timed_out && r.error.is_none(), "{r:?}");
    let r = code(&node, &sb, "x");
    assert!(r.fresh_interpreter, "{r:?}");
    assert_eq!(r.error.map(|e| e.name).as_deref(), Some("NameError"));

    // A killed interpreter is reported as such and replaced.
    let r = code(
        &node,
        &sb,
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)",
    );
    assert_eq!(r.signal.as_deref(), Some("SIGSEGV"), "{r:?}");
    assert!(r.died.is_some() && !r.timed_out, "{r:?}");
    let r = code(&node, &sb, "import os\nos._exit(3)");
    assert!(
        r.died.as_deref().unwrap_or("").contains("status 3"),
        "{r:?}"
    );
    let r = code(&node, &sb, "6 * 7");
    assert!(
        r.fresh_interpreter && r.result.as_deref() == Some("42"),
        "{r:?}"
    );

    // Files the interpreter writes are the sandbox's: exec sees them.
    value(&node, &sb, "open('from-run.txt', 'w').write('hi')");
    assert_eq!(node.exec(&sb, &["cat", "from-run.txt"]).stdout, "hi");

    // Output streams over the exec WebSocket, before the result.
    let url = format!(
        "{}/v1/sandboxes/{sb}/exec",
        node.origin.url.replacen("http://", "ws://", 1)
    );
    let (mut socket, _) = tungstenite::connect(url).expect("websocket");
    let req = json!({"code": "import time\nprint('first', flush=True)\ntime.sleep(0.2)\nprint('second')\n'done'"});
    socket
        .send(tungstenite::Message::Text(req.to_string().into()))
        .unwrap();
    let mut msgs: Vec<Value> = Vec::new();
    while let Ok(m) = socket.read() {
        if let tungstenite::Message::Text(t) = m {
            msgs.push(serde_json::from_str(t.as_str()).unwrap());
        }
    }
    // `first` (flushed) came as a piece of its own, before the result.
    assert_eq!(
        msgs[0],
        json!({"stream": "stdout", "data": "first\n"}),
        "{msgs:?}"
    );
    let last = msgs.last().unwrap();
    assert_eq!(last["result"]["result"], "'done'", "{msgs:?}");
    assert_eq!(last["result"]["stdout"], "first\nsecond\n", "{msgs:?}");

    // What cannot run at all is an HTTP error naming what was wrong.
    let (status, body) = node.call(
        "POST",
        &format!("/v1/sandboxes/{sb}/run"),
        json!({"code": "1", "language": "ruby"}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("ruby"),
        "{body}"
    );
    node.push_greeter("plain", json!([]));
    let plain = node.ready("plain").sandbox_id;
    let (status, body) = node.call(
        "POST",
        &format!("/v1/sandboxes/{plain}/run"),
        json!({"code": "1"}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("none"),
        "{body}"
    );
}

#[test]
fn pooled_sandboxes_are_isolated_jailed_and_never_reused() {
    let node = Node::start(&["--sandbox-pool-size", "2"]);
    push_python(&node);
    // The first create warms the runtime; later ones of it are pooled.
    first_sandbox(&node);
    node.wait("two pooled sandboxes", || pool(&node)["ready"] == 2);

    let a = create(
        &node,
        json!({"runtime": "pyrt:v1", "user_id": "a", "env": {"SECRET": "a"}, "context": {"who": "a"}}),
    );
    let b = create(
        &node,
        json!({"runtime": "pyrt:v1", "user_id": "b", "env": {"SECRET": "b"}, "context": "for b"}),
    );
    let probe = "import os, sys, json\n(os.environ['SECRET'], os.environ['PREWARM_CONTEXT'], json.load(open('.prewarm/context.json')), sorted(os.listdir('.')), hasattr(sys, 'marker'), 'decimal' in sys.modules)";
    let r = code(&node, &a, probe);
    assert!(!r.fresh_interpreter, "a came from the pool: {r:?}");
    assert_eq!(
        r.result.as_deref(),
        Some(r#"('a', '{"who":"a"}', {'who': 'a'}, ['.prewarm'], False, True)"#)
    );
    value(
        &node,
        &a,
        "import sys; sys.marker = 'a'; open('mine', 'w').write('a')",
    );
    let r = code(&node, &b, probe);
    assert!(!r.fresh_interpreter, "b came from the pool: {r:?}");
    assert_eq!(
        r.result.as_deref(),
        Some("('b', 'for b', 'for b', ['.prewarm'], False, True)"),
        "nothing of a in b"
    );
    assert_eq!(pool(&node)["taken_total"], 2);

    // Deleted and created again: never a's interpreter.
    node.delete(&a);
    for _ in 0..3 {
        let c = create(&node, json!({"runtime": "pyrt:v1", "user_id": "a"}));
        assert_ne!(c, a);
        let r = code(
            &node,
            &c,
            "import os, sys\n(hasattr(sys, 'marker'), os.listdir('.'), os.environ.get('SECRET'))",
        );
        assert_eq!(r.result.as_deref(), Some("(False, [], None)"), "{r:?}");
        node.delete(&c);
    }

    // The jail holds for run: the sandbox uid, read-only runtime, no network, limits.
    let uid = value(&node, &b, "import os; os.getuid()");
    assert_ne!(uid, "0");
    let ro = "import errno\ntry:\n    open('/opt/pyrt/lib/marker', 'a')\nexcept OSError as e:\n    r = errno.errorcode[e.errno]\nr";
    assert_eq!(value(&node, &b, ro), "'EACCES'", "the runtime is root's");
    let mount = "[l.split()[5].split(',')[0] for l in open('/proc/self/mountinfo') if l.split()[4] == '/opt/pyrt']";
    assert_eq!(value(&node, &b, mount), "['ro']", "and mounted read-only");
    let r = code(
        &node,
        &b,
        "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=5)",
    );
    assert_eq!(
        r.error.map(|e| e.name).as_deref(),
        Some("OSError"),
        "no network"
    );
    let r = code(&node, &b, "b = bytearray(5 * 2**30)");
    assert_eq!(
        r.error.map(|e| e.name).as_deref(),
        Some("MemoryError"),
        "memory limit"
    );
    assert_eq!(value(&node, &b, "1 + 1"), "2");
}

#[test]
fn the_pool_keeps_to_its_memory_budget_and_refills() {
    let node = Node::start(&["--sandbox-pool-size", "1"]);
    push_python(&node);
    first_sandbox(&node);
    node.wait("one pooled sandbox", || pool(&node)["ready"] == 1);
    let one = pool(&node)["runtimes"][0]["last_rss_bytes"]
        .as_u64()
        .unwrap();
    assert!(one > 1 << 20, "an interpreter's resident memory: {one}");
    assert_eq!(pool(&node)["idle_rss_bytes"].as_u64(), Some(one));

    // Room for two and a half of them: two stay ready, not the three asked for.
    let budget = (one * 5 / 2).to_string();
    let node = node.restart(
        &[
            "--sandbox-pool-size",
            "3",
            "--sandbox-pool-memory-bytes",
            &budget,
        ],
        || {},
    );
    first_sandbox(&node);
    let held = node.until("the pool held by its budget", || {
        let p = pool(&node);
        (p["runtimes"][0]["held_by_budget"] == true).then_some(p)
    });
    assert_eq!(held["ready"], 2, "{held}");
    assert!(
        held["idle_rss_bytes"].as_u64().unwrap() <= held["memory_budget_bytes"].as_u64().unwrap(),
        "{held}"
    );

    // Taking one makes room: the pool refills to two.
    create(&node, json!({"runtime": "pyrt:v1", "user_id": "u"}));
    node.wait("the pool refilled", || {
        let p = pool(&node);
        p["taken_total"] == 1 && p["ready"] == 2 && p["runtimes"][0]["held_by_budget"] == true
    });
}
