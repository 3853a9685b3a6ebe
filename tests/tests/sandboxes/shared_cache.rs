//! One runtime's warm-up cannot change another warm runtime: the files they share through the node cache are inodes the sandbox user cannot write, chmod or re-link to write.

use std::os::unix::fs::MetadataExt;

use serde_json::json;

use crate::support::Node;

/// The sandbox uid and gid when `prewarm serve` is not told otherwise.
const DEFAULT_SANDBOX_USER: (u32, u32) = (65533, 65533);

/// Each attempt of the attacker's warm command: a name and a shell command. Its outcome is
/// written to the report as `NAME:done` or `NAME:refused`.
const ATTACKS: &[(&str, &str)] = &[
    ("write", "echo evil >> lib/data"),
    (
        "chmod-then-write",
        "chmod u+w lib/data && echo evil >> lib/data",
    ),
    ("chown", "chown 65533 lib/data"),
    ("touch", "touch -d 2001-01-01 lib/data"),
    (
        "link-then-write",
        "ln lib/data lib/alias && echo evil >> lib/alias",
    ),
    // Allowed, and harmless: this tree's entry now names a new inode of its own.
    ("replace", "rm -f lib/data && echo replaced > lib/data"),
];

#[test]
fn a_warm_command_cannot_rewrite_a_file_another_warm_runtime_shares() {
    let node = Node::start(&[]);
    let shared = "the same bytes in both runtimes\n";

    // The victim: warm and sealed, a sandbox using it.
    let victim_hex = node.push_data("victim", shared.as_bytes(), json!([]));
    let victim = node.ready("victim");
    let victim_file = node.runtimes_dir().join(&victim_hex).join("lib/data");
    let before = std::fs::metadata(&victim_file).expect("the victim's file");
    assert!(
        before.nlink() >= 2,
        "linked from the node cache: {before:?}"
    );

    // The attacker: the same `lib/data` (same content and mode, so the same cache inode),
    // and a warm command that tries every way to change it, reporting how each attempt went.
    let mut script = String::from("cd /opt/attacker && { stat -c ino:%i lib/data");
    for (name, attack) in ATTACKS {
        script += &format!(
            " ; if ( {attack} ) 2>/dev/null; then echo {name}:done; else echo {name}:refused; fi"
        );
    }
    script += " ; } > report";
    node.push_data(
        "attacker",
        shared.as_bytes(),
        json!([["/bin/sh", "-c", script]]),
    );
    let attacker = node.ready("attacker");

    // Every write was refused at the write itself, on the very inode the victim links.
    let report = node.exec(&attacker.sandbox_id, &["cat", "/opt/attacker/report"]);
    let mut expected = vec![format!("ino:{}", before.ino())];
    for (name, _) in ATTACKS {
        let outcome = if *name == "replace" {
            "done"
        } else {
            "refused"
        };
        expected.push(format!("{name}:{outcome}"));
    }
    assert_eq!(
        report.stdout.lines().collect::<Vec<_>>(),
        expected,
        "{report:?}"
    );
    let own = node.exec(&attacker.sandbox_id, &["cat", "/opt/attacker/lib/data"]);
    assert_eq!(own.stdout, "replaced\n", "the attacker's own tree changed");

    // The victim's file: same inode, bytes, size, mode and mtime on the host (its ctime moved:
    // the attacker's tree dropped its link), and the same bytes in its sandboxes, old and new.
    let after = std::fs::metadata(&victim_file).expect("the victim's file");
    assert_eq!(std::fs::read_to_string(&victim_file).expect("read"), shared);
    let stamp = |m: &std::fs::Metadata| {
        (
            m.dev(),
            m.ino(),
            m.size(),
            m.mode(),
            m.mtime(),
            m.mtime_nsec(),
        )
    };
    assert_eq!(stamp(&after), stamp(&before));
    let seen = node.exec(&victim.sandbox_id, &["cat", "/opt/victim/lib/data"]);
    assert_eq!(seen.stdout, shared, "{seen:?}");
    let (code, fresh) = node.create(json!({"runtime": "victim:v1", "user_id": "v2"}));
    assert_eq!((code, fresh.hot), (201, true));
    let seen = node.exec(&fresh.sandbox_id, &["cat", "/opt/victim/lib/data"]);
    assert_eq!(seen.stdout, shared, "{seen:?}");
    assert_eq!(
        node.stats().warms_failed,
        0,
        "nothing for the guard to catch"
    );

    // The attacker's sandbox runs as the sandbox user too: what it makes is that user's.
    let r = node.exec(&attacker.sandbox_id, &["touch", "made-here"]);
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    let made = node
        .node_dir()
        .join("sandboxes")
        .join(&attacker.sandbox_id)
        .join("workspace/made-here");
    let m = std::fs::metadata(made).expect("made-here on the host");
    assert_eq!((m.uid(), m.gid()), DEFAULT_SANDBOX_USER);
}

/// The other side: a real bytecode compiler still writes into its own runtime (a new
/// `__pycache__`, each `.pyc` written beside and renamed into place), and what it made is
/// root's and read-only once the runtime is sealed.
#[test]
fn bytecode_compilers_still_write_their_own_tree_and_it_is_sealed_as_roots() {
    let node = Node::start(&[]);
    let hex = node.push_data(
        "pyc",
        b"ANSWER = 42\n",
        json!([["python3", "-m", "py_compile", "/opt/pyc/lib/data"]]),
    );
    let sb = node.ready("pyc");
    let r = node.exec(&sb.sandbox_id, &["ls", "/opt/pyc/lib/__pycache__"]);
    assert!(
        // `data` has no extension: `datacpython-3NN.pyc`.
        r.stdout.starts_with("datacpython-") && r.stdout.trim_end().ends_with(".pyc"),
        "{r:?}"
    );
    let cache_dir = node.runtimes_dir().join(hex).join("lib/__pycache__");
    let pyc = cache_dir.join(r.stdout.trim_end());
    for p in [&cache_dir, &pyc] {
        let m = std::fs::symlink_metadata(p).expect("on the host");
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7222),
            (0, 0, 0),
            "{}",
            p.display()
        );
    }
}
