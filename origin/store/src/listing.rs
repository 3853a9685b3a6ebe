//! What a store's listing says about each object and tag, for garbage collection.

use std::time::SystemTime;

use prewarm_shared::{Digest, RuntimeName, Tag};

/// One stored object, as [`crate::Store::list`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub digest: Digest,
    pub size: u64,
    /// When the object was written: never earlier than the put that made it visible (a later
    /// put of the same digest may move it forward). Garbage collection spares what is younger
    /// than its grace period, so an object uploaded but not yet referenced survives.
    pub written: SystemTime,
}

/// One tag, as [`crate::TagStore::list_tags`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEntry {
    pub name: RuntimeName,
    pub tag: Tag,
    pub digest: Digest,
}

/// The digest an object's file or key name spells (64 lowercase hex), if it is one.
pub(crate) fn digest_from_hex(hex: &str) -> Option<Digest> {
    if hex.len() != 64 {
        return None;
    }
    format!("sha256:{hex}").parse().ok()
}

/// The name and tag of a backend's tag key `<prefix><name><sep><tag>`; an error naming the
/// key and the store otherwise.
pub(crate) fn tag_from_key(
    store: &'static str,
    key: &str,
    prefix: &str,
    sep: char,
) -> Result<(RuntimeName, Tag), crate::StoreError> {
    let bad = |what: String| crate::StoreError::other(store, format!("tag key {key}: {what}"));
    let (name, tag) = key
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once(sep))
        .ok_or_else(|| bad(format!("not <name>{sep}<tag>")))?;
    let name: RuntimeName = name.parse().map_err(|e| bad(format!("{e}")))?;
    let tag: Tag = tag.parse().map_err(|e| bad(format!("{e}")))?;
    Ok((name, tag))
}
