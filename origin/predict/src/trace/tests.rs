//! Trace formats: the native CSV round trip, the Azure Functions 2019 layout, and clear errors.

use super::*;

#[test]
fn csv_round_trips_and_sorts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    std::fs::write(&p, "timestamp,user,runtime\n20,bob,go\n5,ann,node-web\n").unwrap();
    let t = Trace::read(&[&p]).unwrap();
    assert_eq!(t.events.len(), 2);
    assert_eq!(t.events[0].t, 5);
    assert_eq!(t.runtime_name(t.events[0].runtime), "node-web");
    let q = dir.path().join("u.csv");
    write_csv(&q, &t).unwrap();
    assert_eq!(
        std::fs::read_to_string(&q).unwrap(),
        "timestamp,user,runtime\n5,ann,node-web\n20,bob,go\n"
    );
}

#[test]
fn csv_errors_name_the_line_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    std::fs::write(&p, "timestamp,user,runtime\n5,ann,node-web\nsoon,bob,go\n").unwrap();
    let e = Trace::read(&[&p]).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("\"soon\""), "{e}");
    std::fs::write(&p, "time,who\n").unwrap();
    let e = Trace::read(&[&p]).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("header"), "{e}");
}

#[test]
fn azure_day_files_map_owner_to_user_and_app_to_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let d1 = dir.path().join("invocations_per_function_md.anon.d01.csv");
    let d2 = dir.path().join("invocations_per_function_md.anon.d02.csv");
    std::fs::write(
        &d1,
        format_azure_day(&[
            ("o1", "appA", &[(1, 2), (540, 1)]),
            ("o2", "appB", &[(2, 1)]),
        ]),
    )
    .unwrap();
    std::fs::write(&d2, format_azure_day(&[("o1", "appA", &[(1, 1)])])).unwrap();
    let t = Trace::read(&[&d1, &d2]).unwrap();
    let got: Vec<(u64, &str, &str)> = t
        .events
        .iter()
        .map(|e| {
            (
                e.t,
                t.users[e.user.0 as usize].as_str(),
                t.runtime_name(e.runtime),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "o1", "appA"),
            (30, "o1", "appA"),
            (60, "o2", "appB"),
            (539 * 60, "o1", "appA"),
            (86_400, "o1", "appA"),
        ]
    );
}

#[test]
fn azure_rows_of_the_wrong_width_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.csv");
    let mut text = format_azure_day(&[]);
    text.push_str("o1,appA,f,http,1,2\n");
    std::fs::write(&p, text).unwrap();
    let e = Trace::read(&[&p]).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("1444"), "{e}");
}
