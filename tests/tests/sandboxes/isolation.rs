//! What a sandbox cannot do: write its runtime, see other workspaces or the node's cache, have a network unless asked (see `network`), run as root.

use std::os::unix::fs::MetadataExt;

use prewarm_shared::sandbox::Status;
use serde_json::json;

use crate::support::{compile_step, Node};

#[test]
fn sandbox_cannot_write_its_runtime_or_see_other_workspaces() {
    let node = Node::start(&[]);
    node.push_greeter("iso", compile_step("iso"));
    let (_, a) = node.create(json!({"runtime": "iso:v1", "user_id": "alice"}));
    assert_eq!(node.settled(&a.sandbox_id).state.status, Status::Ready);
    let (code, b) = node.create(json!({"runtime": "iso:v1", "user_id": "bob"}));
    assert_eq!(code, 201);

    let w = node.exec(
        &a.sandbox_id,
        &[
            "/bin/sh",
            "-c",
            "echo alice-secret > secret && cat secret && pwd",
        ],
    );
    assert_eq!(w.stdout, "alice-secret\n/workspace\n", "{w:?}");

    // Writing the runtime fails, whatever the path: file, new file, chmod.
    for attempt in [
        "echo evil >> /opt/iso/bin/hello",
        "echo evil > /opt/iso/new-file",
        "chmod u+w /opt/iso/bin/hello",
        "rm -f /opt/iso/lib/greeting",
    ] {
        let r = node.exec(&b.sandbox_id, &["/bin/sh", "-c", attempt]);
        assert_ne!(r.exit_code, Some(0), "{attempt} succeeded: {r:?}");
    }
    let hello = node.exec(&b.sandbox_id, &["/opt/iso/bin/hello"]);
    assert_eq!(
        hello.stdout,
        "hello from /opt/iso/bin\ncompiled by the warm step\n"
    );

    // Bob cannot reach Alice's workspace, by her host path or any other, nor the node's cache.
    let node_dir = node.node_dir();
    let alice_host = node_dir
        .join("sandboxes")
        .join(&a.sandbox_id)
        .join("workspace")
        .join("secret");
    assert!(alice_host.exists(), "the secret is on the host");
    let probe = format!(
        "cat {} ; ls {} ; grep -rs alice-secret / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr ; ls /workspace",
        alice_host.display(),
        node_dir.display()
    );
    let r = node.exec(&b.sandbox_id, &["/bin/sh", "-c", &probe]);
    assert!(!r.stdout.contains("alice-secret"), "{r:?}");
    assert!(
        !r.stdout.contains("secret"),
        "bob's workspace is his own: {r:?}"
    );

    // No network unless asked for: only loopback exists.
    let net = node.exec(&b.sandbox_id, &["/bin/sh", "-c", "cat /proc/net/dev"]);
    let ifaces: Vec<&str> = net
        .stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"], "{net:?}");
}

#[test]
fn sandboxed_commands_run_as_the_configured_sandbox_user_with_no_privilege() {
    let node = Node::start(&["--sandbox-uid", "4242", "--sandbox-gid", "4343"]);
    node.push_greeter("who", compile_step("who"));
    let sb = node.ready("who");
    let r = node.exec(
        &sb.sandbox_id,
        &[
            "/bin/sh",
            "-c",
            "touch made-here && id -u && id -G && grep -E '^(Uid|Gid|Groups|CapPrm|CapEff|CapBnd|NoNewPrivs):' /proc/self/status",
        ],
    );
    let lines: Vec<String> = r
        .stdout
        .lines()
        .map(|l| l.replace('\t', " ").trim_end().to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "4242",
            "4343",
            "Uid: 4242 4242 4242 4242",
            "Gid: 4343 4343 4343 4343",
            "Groups:",
            "CapPrm: 0000000000000000",
            "CapEff: 0000000000000000",
            "CapBnd: 0000000000000000",
            "NoNewPrivs: 1",
        ],
        "{r:?}"
    );

    // Seen from the host: the workspace and what the command made there are the sandbox
    // user's; the runtime, the file its warm command wrote included, is root's and read-only.
    let ws = node
        .node_dir()
        .join("sandboxes")
        .join(&sb.sandbox_id)
        .join("workspace");
    for p in [ws.clone(), ws.join("made-here")] {
        let m = std::fs::metadata(&p).expect("on the host");
        assert_eq!((m.uid(), m.gid()), (4242, 4343), "{}", p.display());
    }
    let runtime = std::fs::read_dir(node.runtimes_dir())
        .expect("runtimes")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .expect("the warm runtime");
    for rel in ["", "lib", "lib/greeting", "bin/hello"] {
        let m = std::fs::metadata(runtime.join(rel)).expect("runtime entry");
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7222), (0, 0, 0), "{rel:?}");
    }
}
