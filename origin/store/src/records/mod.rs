//! Small mutable documents by key (snapshot ownership, paused sandboxes): the [`Records`] trait and its key type.
//!
//! Content-addressed objects are immutable and tags map one name to one digest; what a
//! snapshot's owner is, who it is shared with, which sandbox id is paused at which snapshot is
//! neither. Those are records: a few KiB of JSON under a path-like key, kept by the durable
//! tier, so every origin that shares it (S3) sees the same ones.

mod memory;

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use super::StoreError;

/// Largest record a store accepts.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// A record's key: 1–8 `/`-separated segments of `[A-Za-z0-9._:-]` (1–128 bytes each, never
/// `.` or `..`), 512 bytes at most. Checked once, so every backend can map it to a file path,
/// an S3 key or a Redis field without escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey(String);

/// Why a record key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "record key {0:?} is not 1-8 '/'-separated segments of [A-Za-z0-9._:-] (at most 512 bytes)"
)]
pub struct BadRecordKey(pub String);

impl RecordKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This key with `segment` appended.
    ///
    /// # Errors
    /// [`BadRecordKey`] if the result is not a valid key.
    pub fn join(&self, segment: &str) -> Result<Self, BadRecordKey> {
        format!("{}/{segment}", self.0).parse()
    }

    /// The segments, first to last.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Whether `self` lies strictly under `prefix` (`a/b` is under `a`, `ab` is not).
    pub fn is_under(&self, prefix: &RecordKey) -> bool {
        self.0.len() > prefix.0.len()
            && self.0.starts_with(&prefix.0)
            && self.0.as_bytes()[prefix.0.len()] == b'/'
    }
}

impl FromStr for RecordKey {
    type Err = BadRecordKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let seg_ok = |g: &str| {
            (1..=128).contains(&g.len())
                && g != "."
                && g != ".."
                && g.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        };
        let n = s.split('/').count();
        if s.len() > 512 || n > 8 || !s.split('/').all(seg_ok) {
            return Err(BadRecordKey(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Small mutable documents by key.
///
/// # Contract
/// - `put_record` replaces atomically: a reader sees the old document or the new one, never a
///   mix or nothing. The last writer wins (no compare-and-swap: callers keep one writer per
///   key, or accept that).
/// - A miss is `Ok(None)`; deleting a missing record succeeds.
/// - `list_records(prefix)` returns every key strictly under `prefix` (at any depth), sorted,
///   as of some moment during the call.
/// - Documents over [`MAX_RECORD_BYTES`] are refused with [`StoreError::Other`].
#[async_trait::async_trait]
pub trait Records: Send + Sync + 'static {
    async fn get_record(&self, key: &RecordKey) -> Result<Option<Bytes>, StoreError>;
    async fn put_record(&self, key: &RecordKey, doc: Bytes) -> Result<(), StoreError>;
    async fn delete_record(&self, key: &RecordKey) -> Result<(), StoreError>;
    async fn list_records(&self, prefix: &RecordKey) -> Result<Vec<RecordKey>, StoreError>;
}

/// The size check every backend's `put_record` starts with.
pub(crate) fn check_size(store: &str, doc: &Bytes) -> Result<(), StoreError> {
    if doc.len() > MAX_RECORD_BYTES {
        return Err(StoreError::other(
            store,
            format!(
                "record of {} bytes is over the {MAX_RECORD_BYTES}-byte limit",
                doc.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for good in ["a", "snapshots/0a1b", "paused/sb-00ff:x/y.z_w-1"] {
            assert_eq!(good.parse::<RecordKey>().unwrap().as_str(), good);
        }
        let long = "x".repeat(129);
        for bad in [
            "", "/a", "a/", "a//b", "..", "a/./b", "a b", "a/ü", "a\\b", &long,
        ] {
            assert!(bad.parse::<RecordKey>().is_err(), "{bad:?}");
        }
        let p: RecordKey = "a/b".parse().unwrap();
        assert!("a/b/c".parse::<RecordKey>().unwrap().is_under(&p));
        assert!(!"a/bc".parse::<RecordKey>().unwrap().is_under(&p));
        assert!(!p.is_under(&p));
        assert_eq!(p.join("c").unwrap().as_str(), "a/b/c");
    }
}
