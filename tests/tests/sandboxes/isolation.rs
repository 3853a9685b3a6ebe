//! What a sandbox cannot do: write its runtime, see other workspaces or the node's cache, reach the network unless asked (and then only outwards), run as root.

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

/// An address of this host other than loopback: the source address of its default route
/// (nothing is sent).
fn host_address() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Python run in a sandbox: tries each `host:port` argument and prints `HOST:PORT ok` or
/// `HOST:PORT refused`.
const CONNECT: &str = "import socket, sys\nfor a in sys.argv[1:]:\n    h, p = a.rsplit(':', 1)\n    try:\n        socket.create_connection((h, int(p)), timeout=3).close()\n        print(a, 'ok')\n    except OSError:\n        print(a, 'refused')\n";

#[test]
fn network_true_is_outbound_only_and_the_default_gives_none() {
    let node = Node::start(&[]);
    node.push_data("net", b"x", json!([]));
    let isolated = node.ready("net");
    let (code, online) = node.create(json!({"runtime": "net:v1", "user_id": "u", "network": true}));
    assert_eq!(code, 201);
    let port = node.origin.url.rsplit(':').next().expect("port");
    // A server on the host's own (non-loopback) address: outside, as far as the sandbox goes.
    let ip = host_address().expect("a non-loopback address on this host, to stand for the outside");
    let listener = std::net::TcpListener::bind((ip, 0)).expect("listen on the host address");
    let outside = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for c in listener.incoming().take(2) {
            drop(c);
        }
    });
    let mut targets = vec![
        format!("127.0.0.1:{port}"),
        // slirp's alias for the host's loopback.
        format!("10.0.2.2:{port}"),
        "127.0.0.1:6379".to_string(),
        "10.0.2.2:6379".to_string(),
    ];
    targets.push(outside.clone());
    let mut cmd = vec!["python3", "-c", CONNECT];
    cmd.extend(targets.iter().map(String::as_str));
    let r = node.exec(&online.sandbox_id, &cmd);
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    for t in &targets[..4] {
        assert!(
            r.stdout.contains(&format!("{t} refused")),
            "the host's loopback {t} is reachable: {r:?}"
        );
    }
    assert!(
        r.stdout.contains(&format!("{outside} ok")),
        "outbound is refused: {r:?}"
    );
    // Its own interface and route, and slirp's resolver.
    let r = node.exec(
        &online.sandbox_id,
        &["cat", "/etc/resolv.conf", "/proc/net/route"],
    );
    assert!(r.stdout.contains("nameserver 10.0.2.3"), "{r:?}");
    assert!(r.stdout.contains("tap0"), "{r:?}");
    // Without network: nothing is reachable, not even the outside address.
    let r = node.exec(&isolated.sandbox_id, &cmd);
    for t in &targets {
        assert!(r.stdout.contains(&format!("{t} refused")), "{r:?}");
    }
    // DELETE takes slirp4netns down with the sandbox: it ran in the sandbox's cgroup.
    node.delete(&online.sandbox_id);
}

#[test]
fn an_operator_can_turn_sandbox_network_off() {
    let node = Node::start(&["--sandbox-network", "off"]);
    node.push_data("nonet", b"x", json!([]));
    let (code, r) = node.call(
        "POST",
        "/v1/sandboxes",
        json!({"runtime": "nonet:v1", "user_id": "u", "network": true}),
    );
    assert_eq!(code, 400, "{r}");
    let msg = r["error"]["message"].as_str().expect("message");
    assert!(msg.contains("network") && msg.contains("off"), "{msg}");
    let (code, _) = node.create(json!({"runtime": "nonet:v1", "user_id": "u"}));
    assert!(code == 201 || code == 202);
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
