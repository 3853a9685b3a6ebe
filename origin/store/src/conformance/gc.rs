//! Conformance cases for what garbage collection and repair rely on: `list` with write times, `quarantine`, and listing and deleting tags.

use std::time::{Duration, SystemTime};

use prewarm_shared::Digest;

use crate::{Kind, Store, StoreExt, TagStore};

/// S3 keeps `LastModified` to the second, and a test server's clock is not ours to the
/// millisecond: write times are checked to this slack.
const CLOCK_SLACK: Duration = Duration::from_secs(5);

/// `list` names a stored object, of its kind only, with its size and a write time no earlier
/// than its put; a deleted object is no longer listed.
pub async fn list_names_objects_with_write_times(store: &dyn Store) {
    let bytes = super::unique("listed", 4321);
    let d = Digest::of(&bytes);
    let before = SystemTime::now() - CLOCK_SLACK;
    store.put_bytes(Kind::Block, &d, bytes).await.unwrap();
    let after = SystemTime::now() + CLOCK_SLACK;
    let blocks = store.list(Kind::Block).await.unwrap();
    let l = blocks
        .iter()
        .find(|l| l.digest == d)
        .unwrap_or_else(|| panic!("{}: a stored block is not listed", store.name()));
    assert_eq!(l.size, 4321, "{}", store.name());
    assert!(
        l.written >= before && l.written <= after,
        "{}: written {:?} is not the time of the put",
        store.name(),
        l.written
    );
    let manifests = store.list(Kind::Manifest).await.unwrap();
    assert!(
        manifests.iter().all(|l| l.digest != d),
        "{}: a block listed as a manifest",
        store.name()
    );
    store.delete(Kind::Block, &d).await.unwrap();
    let blocks = store.list(Kind::Block).await.unwrap();
    assert!(
        blocks.iter().all(|l| l.digest != d),
        "{}: a deleted block is still listed",
        store.name()
    );
}

/// A quarantined object reads as missing everywhere and is no longer listed; quarantining a
/// missing one succeeds.
pub async fn quarantine_makes_it_missing(store: &dyn Store) {
    let bytes = super::unique("quarantined", 777);
    let d = Digest::of(&bytes);
    store.put_bytes(Kind::Block, &d, bytes).await.unwrap();
    store.quarantine(Kind::Block, &d).await.unwrap();
    assert_eq!(
        store.head(Kind::Block, &d).await.unwrap(),
        None,
        "{}",
        store.name()
    );
    assert_eq!(store.head_durable(Kind::Block, &d).await.unwrap(), None);
    assert!(store.get(Kind::Block, &d).await.unwrap().is_none());
    assert!(store
        .list(Kind::Block)
        .await
        .unwrap()
        .iter()
        .all(|l| l.digest != d));
    store.quarantine(Kind::Block, &d).await.unwrap();
}

/// `list_tags` names every tag with its digest; `delete_tag` removes one (and succeeds twice).
pub async fn tags_list_and_delete(store: &dyn TagStore) {
    let name = format!("gc-{:08x}", rand::random::<u32>()).parse().unwrap();
    let (v1, v2) = ("v1".parse().unwrap(), "v2".parse().unwrap());
    let (a, b) = (Digest::of(b"tag-a"), Digest::of(b"tag-b"));
    store.set_tag(&name, &v1, &a).await.unwrap();
    store.set_tag(&name, &v2, &b).await.unwrap();
    let mine = |all: Vec<crate::TagEntry>| {
        let mut v: Vec<_> = all
            .into_iter()
            .filter(|t| t.name == name)
            .map(|t| (t.tag.to_string(), t.digest))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        mine(store.list_tags().await.unwrap()),
        vec![("v1".to_string(), a), ("v2".to_string(), b)]
    );
    store.delete_tag(&name, &v1).await.unwrap();
    store.delete_tag(&name, &v1).await.unwrap();
    assert_eq!(store.get_tag(&name, &v1).await.unwrap(), None);
    assert_eq!(store.get_tag(&name, &v2).await.unwrap(), Some(b));
    assert_eq!(
        mine(store.list_tags().await.unwrap()),
        vec![("v2".to_string(), b)]
    );
    store.delete_tag(&name, &v2).await.unwrap();
}
