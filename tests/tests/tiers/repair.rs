//! Repair through the durable tier: a bucket emptied under a running origin is refilled by a re-push, and a damaged S3 copy reads as missing until a push repairs it.

use prewarm_shared::Digest;
use prewarm_tests::services::{Moto, Redis};
use prewarm_tests::{http, push_json};
use serde_json::{json, Value};

use super::{fetch_runtime, get, origin, origin_with, pack, push, BUCKET};

/// `POST /v1/blocks/missing` at `url`: the subset of `digests` the origin says it lacks.
fn missing(url: &str, digests: &[Digest]) -> Vec<Digest> {
    let r = http()
        .post(format!("{url}/v1/blocks/missing"))
        .json(&json!({ "digests": digests }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_value(r.json::<Value>().unwrap()["missing"].clone()).unwrap()
}

/// Finding 11: the bucket is emptied while an origin runs with every block still on its disk.
/// The missing-blocks answer comes from the durable tier, so a re-push uploads everything
/// again, and an origin with no disk of its own then serves the runtime from S3 alone.
#[test]
fn a_bucket_emptied_under_a_running_origin_is_refilled_by_a_re_push() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, redis) = (Moto::start(), Redis::start());
    moto.create_bucket(BUCKET);
    let a = origin(&dir.path().join("a"), &moto, Some(&redis));
    let src = pack(dir.path(), 11);
    let first = push_json(&src, "rt:v1", &a.url);
    let blocks = fetch_runtime(&a.url, "v1");
    assert!(missing(&a.url, &blocks).is_empty());

    moto.reset();
    moto.create_bucket(BUCKET);
    assert_eq!(
        missing(&a.url, &blocks),
        blocks,
        "the local disk still has them, S3 does not: missing"
    );
    let again = push_json(&src, "rt:v1", &a.url);
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(
        again["blocks_uploaded"].as_u64().unwrap(),
        blocks.len() as u64,
        "{again}"
    );
    for b in &blocks {
        assert!(moto.has_object(BUCKET, &format!("e2e/blocks-v1/{}", b.hex())));
    }
    // A second origin on the same bucket, no local disk, no Redis: everything from S3.
    let b = origin_with(
        &dir.path().join("b"),
        &moto,
        None,
        "[local]\nenabled = false\n",
    );
    assert_eq!(fetch_runtime(&b.url, "v1"), blocks);
}

/// A damaged durable copy (S3) with no good copy anywhere: never served and never a 500. It
/// is quarantined in the bucket, answers 404 and is reported missing, and a re-push repairs it.
#[test]
fn a_damaged_s3_copy_reads_missing_until_a_push_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let a = origin(&dir.path().join("a"), &moto, None);
    let src = pack(dir.path(), 12);
    assert!(push(&src, "v1", &a.url).status.success());
    let blocks = fetch_runtime(&a.url, "v1");
    let y = blocks[1];
    moto.put_object(
        BUCKET,
        &format!("e2e/blocks-v1/{}", y.hex()),
        b"corrupted in the bucket",
    );
    let c = origin_with(
        &dir.path().join("c"),
        &moto,
        None,
        "[local]\nenabled = false\n",
    );
    let r = get(&format!("{}/v1/blocks/{y}", c.url));
    assert_eq!(
        r.status(),
        404,
        "a damaged durable copy is missing, not a 500"
    );
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert!(!moto.has_object(BUCKET, &format!("e2e/blocks-v1/{}", y.hex())));
    assert_eq!(missing(&c.url, &blocks), vec![y]);
    // The origin that pushed still has y on its disk; the durable answer sends it up again.
    let again = push_json(&src, "rt:v1", &a.url);
    assert_eq!(again["blocks_uploaded"], 1, "{again}");
    let r = get(&format!("{}/v1/blocks/{y}", c.url));
    assert_eq!(r.status(), 200);
    assert_eq!(Digest::of(&r.bytes().unwrap()), y);
}
