//! One conformance suite for every [`Store`]: memory and disk always, Redis and S3 when their servers are up.

use bytes::Bytes;
use futures::StreamExt;
use prewarm_shared::Digest;

use super::{Kind, Object, Store, StoreError, StoreExt, TagStore};

pub mod faults;
pub mod gc;

/// Runs every object-store case against `store`. Each case uses its own random bytes, so the
/// suite can run against a shared server without collisions.
pub async fn run_all(store: &dyn Store) {
    round_trip(store).await;
    miss_is_none(store).await;
    wrong_hash_stores_nothing(store).await;
    put_is_idempotent(store).await;
    ranges(store).await;
    kinds_are_separate(store).await;
    delete_is_idempotent(store).await;
    empty_object(store).await;
    faults::failing_body_stores_nothing(store).await;
    gc::list_names_objects_with_write_times(store).await;
    gc::quarantine_makes_it_missing(store).await;
}

fn unique(label: &str, len: usize) -> Bytes {
    let seed: u64 = rand::random();
    let mut v = format!("{label}-{seed:016x}-").into_bytes();
    while v.len() < len {
        v.push((v.len() % 251) as u8);
    }
    v.truncate(len.max(label.len()));
    Bytes::from(v)
}

pub async fn round_trip(store: &dyn Store) {
    let bytes = unique("round-trip", 300_000);
    let d = Digest::of(&bytes);
    store
        .put_bytes(Kind::Block, &d, bytes.clone())
        .await
        .unwrap();
    assert_eq!(
        store.head(Kind::Block, &d).await.unwrap(),
        Some(bytes.len() as u64)
    );
    let got = store
        .get(Kind::Block, &d)
        .await
        .unwrap()
        .expect("just stored");
    assert_eq!(got.size, bytes.len() as u64);
    assert_eq!(
        got.into_bytes().await.unwrap(),
        bytes,
        "{}: bytes differ",
        store.name()
    );
}

pub async fn miss_is_none(store: &dyn Store) {
    let d = Digest::of(&unique("never-stored", 10));
    assert!(store.get(Kind::Block, &d).await.unwrap().is_none());
    assert!(store
        .get_range(Kind::Block, &d, 0..1)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.head(Kind::Block, &d).await.unwrap(), None);
}

pub async fn wrong_hash_stores_nothing(store: &dyn Store) {
    let claimed = Digest::of(&unique("claimed", 64));
    let err = store
        .put_bytes(Kind::Block, &claimed, unique("other", 64))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Integrity { .. }),
        "{}: {err}",
        store.name()
    );
    assert_eq!(store.head(Kind::Block, &claimed).await.unwrap(), None);
}

pub async fn put_is_idempotent(store: &dyn Store) {
    let bytes = unique("twice", 1000);
    let d = Digest::of(&bytes);
    store
        .put_bytes(Kind::Block, &d, bytes.clone())
        .await
        .unwrap();
    store
        .put_bytes(Kind::Block, &d, bytes.clone())
        .await
        .unwrap();
    assert_eq!(
        store.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
        bytes
    );
}

pub async fn ranges(store: &dyn Store) {
    let bytes = unique("ranges", 100_000);
    let d = Digest::of(&bytes);
    store
        .put_bytes(Kind::Block, &d, bytes.clone())
        .await
        .unwrap();
    for r in [0..1, 10..20_000, 99_999..100_000, 0..100_000, 500..500] {
        let o = store
            .get_range(Kind::Block, &d, r.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o.size, r.end - r.start);
        let got = o.into_bytes().await.unwrap();
        assert_eq!(
            got,
            bytes.slice(r.start as usize..r.end as usize),
            "{}: range {r:?}",
            store.name()
        );
    }
}

pub async fn kinds_are_separate(store: &dyn Store) {
    let bytes = unique("manifest-ns", 200);
    let d = Digest::of(&bytes);
    store
        .put_bytes(Kind::Manifest, &d, bytes.clone())
        .await
        .unwrap();
    assert!(store.exists(Kind::Manifest, &d).await.unwrap());
    assert!(!store.exists(Kind::Block, &d).await.unwrap());
}

pub async fn delete_is_idempotent(store: &dyn Store) {
    let bytes = unique("delete", 50);
    let d = Digest::of(&bytes);
    store.put_bytes(Kind::Block, &d, bytes).await.unwrap();
    store.delete(Kind::Block, &d).await.unwrap();
    store.delete(Kind::Block, &d).await.unwrap();
    assert!(store.get(Kind::Block, &d).await.unwrap().is_none());
}

pub async fn empty_object(store: &dyn Store) {
    let d = Digest::of(b"");
    store
        .put_bytes(Kind::Block, &d, Bytes::new())
        .await
        .unwrap();
    let o = store.get(Kind::Block, &d).await.unwrap().unwrap();
    assert_eq!(o.size, 0);
    let pieces: Vec<_> = o.body.collect().await;
    assert!(pieces
        .iter()
        .all(|p| p.as_ref().map(|b| b.is_empty()).unwrap_or(false)));
    let _ = Object::from_bytes(Bytes::new());
}

/// Tag cases, for stores that also hold tags.
pub async fn tags(store: &dyn TagStore) {
    let name = format!("conf-{:08x}", rand::random::<u32>())
        .parse()
        .unwrap();
    let tag = "v1".parse().unwrap();
    assert_eq!(store.get_tag(&name, &tag).await.unwrap(), None);
    let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
    store.set_tag(&name, &tag, &a).await.unwrap();
    assert_eq!(store.get_tag(&name, &tag).await.unwrap(), Some(a));
    store.set_tag(&name, &tag, &b).await.unwrap();
    assert_eq!(store.get_tag(&name, &tag).await.unwrap(), Some(b));
    gc::tags_list_and_delete(store).await;
}

/// The [`crate::Records`] contract: miss, put, replace, list by prefix (strictly under, any
/// depth, sorted; a sibling with the same leading characters is not under), delete, size limit.
pub async fn records(store: &dyn crate::Records) {
    use crate::RecordKey;
    let root: RecordKey = format!("conf-{:08x}", rand::random::<u32>())
        .parse()
        .unwrap();
    let a = root.join("a").unwrap();
    let ab = a.join("b").unwrap();
    let abc = ab.join("c").unwrap();
    let sibling: RecordKey = format!("{root}/ab").parse().unwrap();
    assert_eq!(store.get_record(&a).await.unwrap(), None);
    assert!(store.list_records(&root).await.unwrap().is_empty());
    store
        .put_record(&a, Bytes::from_static(b"{\"v\":1}"))
        .await
        .unwrap();
    store
        .put_record(&a, Bytes::from_static(b"{\"v\":2}"))
        .await
        .unwrap();
    assert_eq!(
        store.get_record(&a).await.unwrap().unwrap(),
        &b"{\"v\":2}"[..]
    );
    store
        .put_record(&abc, Bytes::from_static(b"deep"))
        .await
        .unwrap();
    store
        .put_record(&sibling, Bytes::from_static(b"sib"))
        .await
        .unwrap();
    assert_eq!(
        store.get_record(&ab).await.unwrap(),
        None,
        "a prefix is not a record"
    );
    assert_eq!(
        store.list_records(&root).await.unwrap(),
        vec![a.clone(), abc.clone(), sibling.clone()]
    );
    assert_eq!(store.list_records(&a).await.unwrap(), vec![abc.clone()]);
    store.delete_record(&a).await.unwrap();
    store.delete_record(&a).await.unwrap();
    assert_eq!(store.get_record(&a).await.unwrap(), None);
    assert_eq!(store.get_record(&abc).await.unwrap().unwrap(), &b"deep"[..]);
    let big = Bytes::from(vec![b'x'; crate::MAX_RECORD_BYTES + 1]);
    assert!(
        store.put_record(&a, big).await.is_err(),
        "over the size limit"
    );
    for k in [&abc, &sibling] {
        store.delete_record(k).await.unwrap();
    }
    assert!(store.list_records(&root).await.unwrap().is_empty());
}
