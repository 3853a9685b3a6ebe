//! The sandbox commands of the `prewarm` CLI against a real origin: create (cold, waiting), exec (streams, exits with the command's code), ls, cp in and out, rm, warm, status, `--json`, and the token from a file or the environment.

use std::process::{Command, Output};

use prewarm_tests::prewarm_bin;
use serde_json::{json, Value};

use crate::support::{compile_step, Node};

/// `prewarm ARGS…` against `url`, with `env` set.
fn run(url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(prewarm_bin());
    c.args(args)
        .env("PREWARM_URL", url)
        .env("PREWARM_LOG", "warn");
    c.env_remove("PREWARM_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run prewarm")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("JSON stdout")
}

#[test]
fn sandbox_commands_create_exec_copy_list_and_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&[]);
    node.push_greeter("clirt", compile_step("clirt"));
    let url = node.origin.url.as_str();
    let auth: [(&str, &str); 0] = [];

    // Cold create, waiting: the id of a ready sandbox.
    let ctx = tmp.path().join("ctx.json");
    std::fs::write(&ctx, r#"{"task": 7}"#).unwrap();
    let ctx = ctx.to_str().unwrap();
    let args = [
        "sandbox",
        "create",
        "clirt:v1",
        "--user",
        "alice",
        "--context-file",
        ctx,
        "--wait",
    ];
    let id = ok(&run(url, &args, &[])).trim().to_string();
    assert!(id.starts_with("sb-"), "{id}");
    let info = node.get(&id).expect("sandbox");
    assert_eq!(
        (info.user_id.as_str(), info.state.status),
        ("alice", prewarm_shared::sandbox::Status::Ready)
    );

    // Exec streams the command's output and exits with its code; the context is there.
    let out = run(
        url,
        &[
            "sandbox",
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "/opt/clirt/bin/hello; cat .prewarm/context.json; echo oops >&2; exit 3",
        ],
        &auth,
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("compiled by the warm step"), "{stdout}");
    assert!(stdout.contains(r#""task":7"#), "{stdout}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    let r = json_of(&run(
        url,
        &[
            "sandbox", "exec", &id, "--json", "--env", "X=y", "--", "sh", "-c", "echo $X",
        ],
        &auth,
    ));
    assert_eq!(
        (r["exit_code"].as_i64(), r["stdout"].as_str()),
        (Some(0), Some("y\n"))
    );
    let killed = run(
        url,
        &["sandbox", "exec", &id, "--", "sh", "-c", "kill -9 $$"],
        &auth,
    );
    assert_eq!(killed.status.code(), Some(128 + 9));

    // cp in: a file (mode kept) and a directory; cp out: both back.
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/data.bin"), vec![9u8; 300_000]).unwrap();
    std::fs::write(src.join("top.txt"), "top\n").unwrap();
    let script = tmp.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho script ran\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    ok(&run(
        url,
        &["sandbox", "cp", script.to_str().unwrap(), &format!("{id}:")],
        &auth,
    ));
    ok(&run(
        url,
        &[
            "sandbox",
            "cp",
            src.to_str().unwrap(),
            &format!("{id}:proj"),
        ],
        &auth,
    ));
    let out = run(
        url,
        &[
            "sandbox",
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "./run.sh && cat proj/top.txt && wc -c < proj/sub/data.bin",
        ],
        &auth,
    );
    assert_eq!(ok(&out), "script ran\ntop\n300000\n");
    let listing = json_of(&run(
        url,
        &["sandbox", "ls", &format!("{id}:proj"), "--json"],
        &auth,
    ));
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sub", "top.txt"]);
    let human = ok(&run(url, &["sandbox", "ls", &format!("{id}:")], &auth));
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("file") && l.contains("0755") && l.ends_with("run.sh")),
        "{human}"
    );

    let back = tmp.path().join("back");
    ok(&run(
        url,
        &[
            "sandbox",
            "cp",
            &format!("{id}:proj"),
            back.to_str().unwrap(),
        ],
        &auth,
    ));
    assert_eq!(
        std::fs::read(back.join("sub/data.bin")).unwrap(),
        vec![9u8; 300_000]
    );
    let one = tmp.path().join("one.txt");
    ok(&run(
        url,
        &[
            "sandbox",
            "cp",
            &format!("{id}:proj/top.txt"),
            one.to_str().unwrap(),
        ],
        &auth,
    ));
    assert_eq!(std::fs::read_to_string(&one).unwrap(), "top\n");
    let missing = run(
        url,
        &[
            "sandbox",
            "cp",
            &format!("{id}:nope"),
            one.to_str().unwrap(),
        ],
        &auth,
    );
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not_found"),
        "{missing:?}"
    );

    // rm a file, then the sandbox.
    ok(&run(
        url,
        &["sandbox", "rm", &format!("{id}:proj/top.txt")],
        &auth,
    ));
    let listing = json_of(&run(
        url,
        &["sandbox", "ls", &format!("{id}:proj"), "--json"],
        &auth,
    ));
    assert_eq!(listing["entries"].as_array().unwrap().len(), 1);
    ok(&run(url, &["sandbox", "rm", &id], &auth));
    assert!(node.get(&id).is_none());
    let gone = run(url, &["sandbox", "exec", &id, "--", "true"], &auth);
    assert!(!gone.status.success());

    // warm and status.
    node.push_data("cliwarm", b"x", json!([]));
    let w = json_of(&run(
        url,
        &["warm", "cliwarm:v1", "--wait", "--json"],
        &auth,
    ));
    assert_eq!(w["status"], "ready", "{w}");
    let w = json_of(&run(url, &["warm", "cliwarm:v1", "--json"], &auth));
    assert_eq!(w["hot"], true, "{w}");
    let s = json_of(&run(url, &["status", "--json"], &auth));
    assert_eq!(s["ready"], true, "{s}");
    assert!(s["node"]["warm_runtimes"].as_u64().unwrap() >= 2, "{s}");
    let human = ok(&run(url, &["status"], &auth));
    assert!(
        human.contains("ready") && human.contains("warm runtimes"),
        "{human}"
    );
}

#[test]
fn the_token_comes_from_a_file_or_the_environment() {
    let token = "cli-test-token";
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let node = Node::start(&["--token-file", token_file.to_str().unwrap()]);
    let url = node.origin.url.as_str();
    let tf = token_file.to_str().unwrap();
    // Without a token: refused, with the server's reason.
    let out = run(url, &["sandbox", "create", "nosuch:v1"], &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unauthorized"),
        "{out:?}"
    );
    // With it (from a file, then from the environment): through to the runtime lookup.
    let out = run(
        url,
        &["sandbox", "create", "nosuch:v1", "--token-file", tf],
        &[],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not_found"),
        "{out:?}"
    );
    let s = json_of(&run(
        url,
        &["status", "--json"],
        &[("PREWARM_TOKEN", token)],
    ));
    assert_eq!(s["node"]["sandboxes"], 0, "{s}");
    let wrong = run(url, &["status", "--json"], &[("PREWARM_TOKEN", "wrong")]);
    assert!(json_of(&wrong)["node"].is_null());
}

#[test]
fn a_failed_warm_fails_create_with_its_step_and_reason() {
    let node = Node::start(&[]);
    node.push_data(
        "clifail",
        b"x",
        json!([["/bin/sh", "-c", "echo broken >&2; exit 4"]]),
    );
    let out = run(
        &node.origin.url,
        &["sandbox", "create", "clifail:v1", "--wait"],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed at step warm"), "{err}");
    let bad = run(&node.origin.url, &["sandbox", "create", "nosuch:v1"], &[]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not_found"),
        "{bad:?}"
    );
}
