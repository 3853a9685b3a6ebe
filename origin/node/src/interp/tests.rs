//! The driver outside any jail: the protocol, notebook semantics, output capture.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::PYTHON_DRIVER;

/// Feeds `requests` to the driver under the host's `python3`; its protocol messages.
fn drive(preload: &[&str], requests: &[Value]) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            PYTHON_DRIVER,
            &json!({ "preload": preload }).to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = child.stdin.take().unwrap();
    for r in requests {
        writeln!(stdin, "{r}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn notebook_semantics_state_output_and_errors() {
    let run = |code: &str| json!({"op": "run", "code": code});
    let msgs = drive(
        &["json", "no_such_module"],
        &[
            json!({"op": "setup", "env": {"A": "1"}, "context": "ctx"}),
            run("import os\nx = 6\nprint(os.environ['A'], os.environ['PREWARM_CONTEXT'])\nos.system('echo from a child')\nx * 7"),
            run("x + 1"),
            run("def f():\n    return 1 / 0\nf()"),
            run("def g(:"),
            run("import sys; print('to stderr', file=sys.stderr); None"),
        ],
    );
    let ready = &msgs[0]["ready"];
    assert!(ready["rss_bytes"].as_u64().unwrap() > 0, "{ready}");
    assert_eq!(ready["preload_failed"][0]["module"], "no_such_module");
    let done: Vec<&Value> = msgs.iter().filter_map(|m| m.get("done")).collect();
    assert_eq!(done.len(), 5, "{msgs:?}");
    assert_eq!(done[0]["result"], "42");
    assert_eq!(done[1]["result"], "7", "state persists");
    let e = &done[2]["error"];
    assert_eq!(e["name"], "ZeroDivisionError");
    assert_eq!(e["value"], "division by zero");
    let tb = e["traceback"].as_str().unwrap();
    assert!(
        tb.contains("line 2, in f") && tb.contains("return 1 / 0"),
        "{tb}"
    );
    assert!(!tb.contains("driver") && !tb.contains("exec("), "{tb}");
    assert_eq!(done[3]["error"]["name"], "SyntaxError");
    assert!(done[4]["result"].is_null() && done[4]["error"].is_null());
    let streams: Vec<(String, String)> = msgs
        .iter()
        .filter(|m| m.get("stream").is_some())
        .map(|m| {
            (
                m["stream"].as_str().unwrap().into(),
                m["data"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        streams,
        [
            ("stdout".into(), "1 ctx\n".into()),
            ("stdout".into(), "from a child\n".into()),
            ("stderr".into(), "to stderr\n".into())
        ]
    );
}
