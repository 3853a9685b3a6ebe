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
