//! A sandbox's network: none unless asked for, and then outbound only: never the host (loopback or its own addresses), private or link-local networks, unless the operator opens a hole.

use serde_json::json;

use crate::support::Node;

/// An address of this host other than loopback: the source address of its default route
/// (nothing is sent).
fn host_address() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A server on the host's own (non-loopback) address that accepts `n` connections; its
/// `host:port`.
fn listen_on_the_host_address(n: usize) -> String {
    let ip = host_address().expect("a non-loopback address on this host");
    let listener = std::net::TcpListener::bind((ip, 0)).expect("listen on the host address");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for c in listener.incoming().take(n) {
            drop(c);
        }
    });
    addr
}

/// Python run in a sandbox: tries each `host:port` argument and prints `HOST:PORT ok`, or
/// `HOST:PORT refused ERRNO` (`timeout` when it timed out).
const CONNECT: &str = "import socket, sys\nfor a in sys.argv[1:]:\n    h, p = a.rsplit(':', 1)\n    try:\n        socket.create_connection((h, int(p)), timeout=3).close()\n        print(a, 'ok')\n    except socket.timeout:\n        print(a, 'refused timeout')\n    except OSError as e:\n        print(a, 'refused', e.errno)\n";

/// `EHOSTUNREACH`: what an `unreachable` route answers at once.
const UNREACHABLE: &str = "113";

fn connect(node: &Node, sandbox: &str, targets: &[String]) -> String {
    let mut cmd = vec!["python3", "-c", CONNECT];
    cmd.extend(targets.iter().map(String::as_str));
    let r = node.exec(sandbox, &cmd);
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    r.stdout
}

#[test]
fn network_true_reaches_neither_the_host_nor_private_networks_and_the_default_gives_none() {
    let node = Node::start(&[]);
    node.push_data("net", b"x", json!([]));
    let isolated = node.ready("net");
    let (code, online) = node.create(json!({"runtime": "net:v1", "user_id": "u", "network": true}));
    assert_eq!(code, 201);
    let port = node.origin.url.rsplit(':').next().expect("port");
    let outside = listen_on_the_host_address(2);
    let loopback = [
        format!("127.0.0.1:{port}"),
        // slirp's alias for the host's loopback.
        format!("10.0.2.2:{port}"),
        "127.0.0.1:6379".to_string(),
        "10.0.2.2:6379".to_string(),
    ];
    // The host's own address (the origin and Redis listening on 0.0.0.0 would be there), the
    // cloud metadata service, and private networks: refused by a route, at once.
    let filtered = [
        outside.clone(),
        "169.254.169.254:80".to_string(),
        "10.1.2.3:80".to_string(),
        "172.16.0.1:80".to_string(),
        "192.168.1.1:80".to_string(),
    ];
    let all: Vec<String> = loopback.iter().chain(&filtered).cloned().collect();
    let out = connect(&node, &online.sandbox_id, &all);
    for t in &loopback {
        assert!(
            out.contains(&format!("{t} refused")),
            "the host's loopback {t} is reachable: {out}"
        );
    }
    for t in &filtered {
        assert!(
            out.contains(&format!("{t} refused {UNREACHABLE}")),
            "{t} is not filtered: {out}"
        );
    }
    // Its own interface and route, the filter's routes, and slirp's resolver.
    let r = node.exec(
        &online.sandbox_id,
        &["cat", "/etc/resolv.conf", "/proc/net/route"],
    );
    assert!(r.stdout.contains("nameserver 10.0.2.3"), "{r:?}");
    assert!(r.stdout.contains("tap0"), "{r:?}");
    // The routes are the origin's: the sandbox (no capability) cannot remove them.
    let ip = host_address().expect("host address");
    let r = node.exec(
        &online.sandbox_id,
        &[
            "/bin/sh",
            "-c",
            &format!("ip route del unreachable {ip}/32; ip route flush table main; echo done"),
        ],
    );
    assert!(r.stdout.contains("done"), "{r:?}");
    assert!(r.stderr.contains("Operation not permitted"), "{r:?}");
    let out = connect(&node, &online.sandbox_id, std::slice::from_ref(&outside));
    assert!(
        out.contains(&format!("{outside} refused {UNREACHABLE}")),
        "{out}"
    );
    // Without network: nothing is reachable, not even the outside address.
    let out = connect(&node, &isolated.sandbox_id, &all);
    for t in &all {
        assert!(out.contains(&format!("{t} refused")), "{out}");
    }
    // DELETE takes slirp4netns down with the sandbox: it ran in the sandbox's cgroup.
    node.delete(&online.sandbox_id);
}

#[test]
fn an_operator_can_open_a_hole_for_one_address_and_outbound_then_reaches_it() {
    let ip = host_address().expect("a non-loopback address on this host");
    let node = Node::start(&["--sandbox-network-allow", &format!("{ip}/32")]);
    node.push_data("hole", b"x", json!([]));
    node.ready("hole");
    let (code, online) =
        node.create(json!({"runtime": "hole:v1", "user_id": "u", "network": true}));
    assert_eq!(code, 201);
    let outside = listen_on_the_host_address(1);
    let others = ["169.254.169.254:80".to_string(), "10.1.2.3:80".to_string()];
    let mut targets = vec![outside.clone()];
    targets.extend(others.iter().cloned());
    let out = connect(&node, &online.sandbox_id, &targets);
    assert!(
        out.contains(&format!("{outside} ok")),
        "outbound through the hole is refused: {out}"
    );
    for t in &others {
        assert!(
            out.contains(&format!("{t} refused {UNREACHABLE}")),
            "{t}: {out}"
        );
    }
}

#[test]
fn a_bad_range_is_refused_at_start_naming_it() {
    let out = std::process::Command::new(prewarm_tests::prewarm_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-network-deny",
            "10.0.0.0/8,not-a-net",
        ])
        .output()
        .expect("run prewarm serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not-a-net") && err.contains("network_deny"),
        "{err}"
    );
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
