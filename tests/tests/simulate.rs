//! `prewarm simulate` from outside: generate, replay (native CSV and Azure Functions 2019 files), sweep, and bad input.

use prewarm_predict::trace::format_azure_day;
use prewarm_tests::{cli, cli_json};

#[test]
fn generate_then_simulate_reports_hot_rates_as_fractions() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.csv");
    let t = trace.to_str().unwrap();
    let g = cli_json(&[
        "simulate",
        "--generate",
        t,
        "--events",
        "4000",
        "--users",
        "300",
        "--days",
        "3",
        "--json",
    ]);
    assert_eq!(g["events"], 4000);
    assert_eq!(g["runtimes"], 54);
    let r = cli_json(&[
        "simulate",
        "--trace",
        t,
        "--policy",
        "user-history",
        "--budget",
        "25%",
        "--json",
    ]);
    assert_eq!(r["policy"], "user-history");
    assert_eq!(r["events"], 4000);
    let hot = r["hot_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&hot), "{hot}");
    let ml = &r["runtimes"]["python-ml"];
    assert!((0.0..=1.0).contains(&ml["hot_rate"].as_f64().unwrap()));
    assert!(ml["cold_starts_avoided_vs_none"].is_i64());
    for k in ["warm_work", "wasted_warm_work"] {
        assert!(
            r[k]["seconds"].is_f64() && r[k]["bytes"].is_u64(),
            "{k}: {r}"
        );
    }
    assert!(r["wait_p99_secs"].as_f64().unwrap() >= r["wait_p50_secs"].as_f64().unwrap());
    assert!(
        r["peak_bytes_after_prediction"].as_u64().unwrap() <= r["budget_bytes"].as_u64().unwrap()
    );
    // The default policy is prewarm's own; human sizes work.
    let d = cli_json(&["simulate", "--trace", t, "--budget", "2GiB", "--json"]);
    assert_eq!(d["policy"], "prewarm");
    assert_eq!(d["budget_bytes"], 2u64 << 30);
}

#[test]
fn azure_functions_day_files_replay_owner_as_user_and_app_as_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let d1 = dir.path().join("d01.csv");
    let d2 = dir.path().join("d02.csv");
    std::fs::write(
        &d1,
        format_azure_day(&[
            ("o1", "appA", &[(540, 3), (541, 1)]),
            ("o2", "appB", &[(600, 2)]),
        ]),
    )
    .unwrap();
    std::fs::write(&d2, format_azure_day(&[("o1", "appA", &[(540, 2)])])).unwrap();
    let r = cli_json(&[
        "simulate",
        "--trace",
        d1.to_str().unwrap(),
        "--trace",
        d2.to_str().unwrap(),
        "--policy",
        "none",
        "--budget",
        "1GiB",
        "--json",
    ]);
    assert_eq!(r["events"], 8);
    assert_eq!(r["runtimes"]["appA"]["events"], 6);
    assert_eq!(r["runtimes"]["appB"]["events"], 2);
    // appA (python-data's 227 MB, 4.2 s by default): cold at 8:59 on day 1, ready before its
    // next start 20 s later, hot after, and still warm on day 2 (nothing needed the bytes).
    assert_eq!(r["runtimes"]["appA"]["hot"], 5);
    assert_eq!(r["runtimes"]["appB"]["hot"], 1);
}

#[test]
fn sweep_writes_a_plot_and_a_table_for_every_policy() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.csv");
    let t = trace.to_str().unwrap();
    cli_json(&[
        "simulate",
        "--generate",
        t,
        "--events",
        "3000",
        "--users",
        "300",
        "--days",
        "2",
        "--json",
    ]);
    let plot = dir.path().join("p.svg");
    let table = dir.path().join("p.md");
    let rows = cli_json(&[
        "simulate",
        "--trace",
        t,
        "--sweep",
        "--budgets",
        "10%,25%",
        "--plot",
        plot.to_str().unwrap(),
        "--table",
        table.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(rows.as_array().unwrap().len(), 12);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("user-history") && svg.contains("keepalive"));
    let md = std::fs::read_to_string(&table).unwrap();
    assert_eq!(
        md.lines()
            .filter(|l| l.starts_with("| ") && l.contains(" GiB ("))
            .count(),
        12
    );
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.csv");
    std::fs::write(&trace, "timestamp,user,runtime\n1,ann,go\n").unwrap();
    let t = trace.to_str().unwrap();
    for (args, want) in [
        (vec!["--budget", "lots"], "budget \"lots\""),
        (vec!["--budget", "0"], "zero"),
        (
            vec!["--budget", "1GiB", "--policy", "lru"],
            "unknown policy \"lru\"",
        ),
    ] {
        let mut a = vec!["simulate", "--trace", t];
        a.extend(args);
        let out = cli(&a);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{a:?}: {err}");
    }
    std::fs::write(&trace, "timestamp,user,runtime\n1,ann\n").unwrap();
    let out = cli(&["simulate", "--trace", t, "--budget", "1GiB"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

/// A reader that went away before the result was written (`prewarm … | head`): the process
/// ends quietly with 141 (128 + SIGPIPE), as a program killed by SIGPIPE does, not with a
/// panic about a broken pipe.
#[test]
fn a_closed_stdout_ends_quietly_with_141() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.csv");
    let t = trace.to_str().unwrap();
    let g = cli(&[
        "simulate",
        "--generate",
        t,
        "--events",
        "2000",
        "--users",
        "300",
    ]);
    assert!(g.status.success(), "{g:?}");
    // A pipe whose only read end is closed before the process starts.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = std::process::Command::new(prewarm_tests::prewarm_bin())
        .args(["simulate", "--trace", t, "--budget", "1GiB"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
