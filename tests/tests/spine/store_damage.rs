//! The origin's own store under damage: a full disk (issue 8) and bytes that went bad behind its back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use prewarm_shared::Digest;
use prewarm_store::conformance::faults::Tmpfs;
use prewarm_tests::{cli, http, pull_json, push_json, write_pack, Origin};

/// Distinct, incompressible files of 600 kB: one block each, under the size the disk store
/// verifies before serving.
fn files() -> Vec<(String, Vec<u8>)> {
    (0..8u32)
        .map(|n| {
            let bytes = (0..600_000 / 32)
                .flat_map(|i: u32| *Digest::of(format!("{n}/{i}").as_bytes()).as_bytes())
                .collect();
            (format!("data/file{n}.bin"), bytes)
        })
        .collect()
}

fn pack(dir: &Path, files: &[(String, Vec<u8>)]) {
    let mut entries: Vec<(&str, &[u8], u32)> = vec![("data/", b"", 0o755)];
    entries.extend(files.iter().map(|(p, b)| (p.as_str(), b.as_slice(), 0o644)));
    write_pack(dir, "full", &[("base", entries)], serde_json::json!({}));
}

/// Every block file under a data dir, asserted to hold exactly the bytes its name claims.
fn blocks_on_disk(data: &Path) -> BTreeSet<Digest> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![data.join("blocks-v1")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let name: Digest = format!("sha256:{}", p.file_name().unwrap().to_str().unwrap())
                .parse()
                .unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(
                Digest::of(&bytes),
                name,
                "{} holds {} bytes that are not its digest's",
                p.display(),
                bytes.len()
            );
            found.insert(name);
        }
    }
    found
}

/// What `POST /v1/blocks/missing` says of `digests`.
fn missing(url: &str, digests: &BTreeSet<Digest>) -> BTreeSet<Digest> {
    let req = serde_json::json!({ "digests": digests });
    let r = http()
        .post(format!("{url}/v1/blocks/missing"))
        .json(&req)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let v: serde_json::Value = r.json().unwrap();
    serde_json::from_value(v["missing"].clone()).unwrap()
}

/// `prewarm store verify --data-dir DATA --json`.
fn store_verify(data: &Path) -> (Option<i32>, serde_json::Value) {
    let out: Output = cli(&[
        "store",
        "verify",
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {out:?}");
    });
    (out.status.code(), json)
}

/// Pulls `full:v1` into a fresh tree and checks every file byte for byte.
fn pull_exact(url: &str, work: &Path, label: &str, files: &[(String, Vec<u8>)]) {
    let rt = work.join(format!("rt-{label}"));
    pull_json(
        "full:v1",
        url,
        &rt,
        &work.join(format!("cache-{label}")),
        &[],
    );
    for (p, b) in files {
        assert!(
            std::fs::read(rt.join(p)).unwrap() == *b,
            "{label}: {p} differs"
        );
    }
}

/// Flips every byte of a block file in place (same size), as a disk that lost a write would.
fn corrupt(path: &PathBuf) {
    let mut b = std::fs::read(path).unwrap();
    for x in &mut b {
        *x = !*x;
    }
    std::fs::write(path, b).unwrap();
}

fn block_path(data: &Path, d: &Digest) -> PathBuf {
    let hex = d.hex();
    data.join("blocks-v1")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(hex)
}

#[test]
fn a_full_disk_fails_the_push_stores_no_wrong_bytes_and_a_repush_repairs() {
    let Some(fs) = Tmpfs::mount(2 << 20) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let files = files();
    pack(&work.path().join("pack"), &files);
    let pack_dir = work.path().join("pack");
    // The runtime's blocks, from a push to a roomy local store.
    let roomy = work.path().join("roomy");
    push_json(&pack_dir, "full:v1", roomy.to_str().unwrap());
    let all = blocks_on_disk(&roomy);
    assert!(all.len() >= 8, "{all:?}");

    let data = fs.path().join("data");
    let origin = Origin::start(&data, &[]);
    let args = [
        "push",
        pack_dir.to_str().unwrap(),
        "--name",
        "full:v1",
        "--to",
        &origin.url,
    ];
    let out = cli(&args);
    assert!(!out.status.success(), "4.8 MB cannot fit in 2 MiB: {out:?}");
    // No short or empty file under a digest; missing-blocks says exactly what is not there.
    let present = blocks_on_disk(&data);
    assert!(present.len() < all.len());
    let lost: BTreeSet<_> = all.difference(&present).copied().collect();
    assert_eq!(missing(&origin.url, &all), lost);
    let (code, report) = store_verify(&data);
    assert_eq!(
        (code, &report["quarantined"]),
        (Some(0), &serde_json::json!(0)),
        "{report}"
    );

    // Space freed: the same push goes through and the runtime pulls byte for byte.
    fs.resize(64 << 20);
    push_json(&pack_dir, "full:v1", &origin.url);
    assert_eq!(blocks_on_disk(&data), all);
    pull_exact(&origin.url, work.path(), "after-repush", &files);
}

#[test]
fn damaged_blocks_are_quarantined_reported_missing_and_repaired_by_a_push() {
    let work = tempfile::tempdir().unwrap();
    let files = files();
    let pack_dir = work.path().join("pack");
    pack(&pack_dir, &files);
    let data = work.path().join("data");
    let origin = Origin::start(&data, &[]);
    push_json(&pack_dir, "full:v1", &origin.url);
    let all = blocks_on_disk(&data);
    // A fresh server, so no verified copy is held in memory.
    drop(origin);
    let mut damaged = all.iter().copied();
    let (read_one, scanned_one) = (damaged.next().unwrap(), damaged.next().unwrap());
    corrupt(&block_path(&data, &read_one));
    corrupt(&block_path(&data, &scanned_one));
    let origin = Origin::start(&data, &[]);

    // Found on read: a miss, not wrong bytes, and missing from then on.
    let r = http()
        .get(format!("{}/v1/blocks/{read_one}", origin.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(!block_path(&data, &read_one).exists());
    let quarantined = std::fs::read_dir(data.join("quarantine-v1")).unwrap();
    assert_eq!(quarantined.count(), 1);
    let metrics: serde_json::Value = http()
        .get(format!("{}/metrics", origin.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(metrics["tiers"][0]["quarantined"], 1, "{metrics}");

    // Found by the scan, beside the running server.
    let (code, report) = store_verify(&data);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["quarantined"], 1, "{report}");
    assert_eq!(report["damaged"][0]["digest"], scanned_one.to_string());
    assert_eq!(report["damaged"][0]["problem"], "hash_mismatch");
    let expect: BTreeSet<_> = [read_one, scanned_one].into();
    assert_eq!(missing(&origin.url, &all), expect);

    // The next push uploads exactly those again; pulls are exact.
    let pushed = push_json(&pack_dir, "full:v1", &origin.url);
    assert_eq!(blocks_on_disk(&data), all, "{pushed}");
    assert_eq!(missing(&origin.url, &all), BTreeSet::new());
    pull_exact(&origin.url, work.path(), "repaired", &files);
    let (code, report) = store_verify(&data);
    assert_eq!(code, Some(0), "{report}");
    let human = cli(&["store", "verify", "--data-dir", data.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("all intact"), "{text}");
    // Not a data directory: an error (exit 1), not an empty success.
    let wrong = cli(&[
        "store",
        "verify",
        "--data-dir",
        work.path().to_str().unwrap(),
    ]);
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert!(String::from_utf8_lossy(&wrong.stderr).starts_with("error: "));
}
