//! `prewarm gc` beside a running origin, over the local disk, Redis and S3 on moto: a deleted tag's tree goes from every tier, a tagged one stays.

use std::path::Path;

use prewarm_shared::Digest;
use prewarm_tests::services::{Moto, Redis};
use prewarm_tests::{cli, http};
use serde_json::Value;

use super::{fetch_runtime, origin_with, pack, push, BUCKET};

fn gc(dir: &Path, args: &[&str]) -> Value {
    let config = dir.join("prewarm.toml");
    let data = dir.join("data");
    let mut all = vec![
        "gc",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ];
    all.extend_from_slice(args);
    let out = cli(&all);
    assert!(
        out.status.success(),
        "prewarm gc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn on_disk(dir: &Path, b: &Digest) -> bool {
    let hex = b.hex();
    dir.join("data/blocks-v1")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex)
        .exists()
}

#[test]
fn gc_sweeps_a_deleted_tags_tree_from_every_tier_and_keeps_the_tagged_one() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, redis) = (Moto::start(), Redis::start());
    moto.create_bucket(BUCKET);
    let a_dir = dir.path().join("a");
    let a = origin_with(&a_dir, &moto, Some(&redis), "");
    assert!(push(&pack(dir.path(), 21), "v1", &a.url).status.success());
    assert!(push(&pack(dir.path(), 22), "v2", &a.url).status.success());
    let v1 = fetch_runtime(&a.url, "v1");
    let v2 = fetch_runtime(&a.url, "v2");
    let only_v1: Vec<Digest> = v1.iter().filter(|b| !v2.contains(b)).copied().collect();
    assert!(!only_v1.is_empty());

    // DELETE the tag: 200 with what it pointed at, then 404.
    let tag_url = format!("{}/v1/runtimes/rt/tags/v1", a.url);
    let r = http().delete(&tag_url).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().unwrap()["digest"].is_string());
    assert_eq!(http().delete(&tag_url).send().unwrap().status(), 404);
    assert_eq!(http().get(&tag_url).send().unwrap().status(), 404);

    // Within the grace period nothing goes.
    let young = gc(&a_dir, &["--grace", "1h"]);
    assert_eq!(young["blocks"]["deleted"], 0, "{young}");
    assert!(
        young["roots"]["young_manifests"].as_u64().unwrap() >= 1,
        "{young}"
    );

    let dry = gc(&a_dir, &["--grace", "0s", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["manifests"]["deleted"], 1, "{dry}");
    assert_eq!(dry["blocks"]["deleted"], only_v1.len(), "{dry}");
    assert!(dry["blocks"]["deleted_bytes"].as_u64().unwrap() > 0);
    assert!(
        only_v1.iter().all(|b| on_disk(&a_dir, b)),
        "a dry run deletes nothing"
    );

    let done = gc(&a_dir, &["--grace", "0s"]);
    assert_eq!(done["manifests"]["deleted"], 1, "{done}");
    assert_eq!(done["blocks"]["deleted"], only_v1.len(), "{done}");
    assert_eq!(done["roots"]["tags"], 1, "{done}");
    for b in &only_v1 {
        assert!(!on_disk(&a_dir, b), "{b} still on the local disk");
        assert!(
            !moto.has_object(BUCKET, &format!("e2e/blocks-v1/{}", b.hex())),
            "{b} still in S3"
        );
        assert_eq!(
            redis
                .cli(&["EXISTS", &format!("prewarm:v1:block:{}", b.hex())])
                .trim(),
            "0",
            "{b} still in Redis"
        );
        let r = http()
            .get(format!("{}/v1/blocks/{b}", a.url))
            .send()
            .unwrap();
        assert_ne!(r.status(), 500);
    }
    // The tagged runtime is whole, from the origin that ran beside gc and from a fresh one.
    assert_eq!(fetch_runtime(&a.url, "v2"), v2);
    let b = origin_with(
        &dir.path().join("b"),
        &moto,
        None,
        "[local]\nenabled = false\n",
    );
    assert_eq!(fetch_runtime(&b.url, "v2"), v2);
    let again = gc(&a_dir, &["--grace", "0s"]);
    assert_eq!(again["blocks"]["deleted"], 0, "{again}");
}
