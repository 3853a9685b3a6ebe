//! An in-memory store: a test double beside the real backends, never instead of them.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::RwLock;
use std::time::SystemTime;

use bytes::Bytes;
use prewarm_shared::{Digest, Hasher, RuntimeName, Tag};

use super::{ByteStream, Kind, Listed, Object, Store, StoreError, TagEntry, TagStore};

/// Objects (with when they were written) and tags in hash maps.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: RwLock<HashMap<(Kind, Digest), (Bytes, SystemTime)>>,
    tags: RwLock<HashMap<(RuntimeName, Tag), Digest>>,
    pub(crate) records: RwLock<std::collections::BTreeMap<crate::RecordKey, Bytes>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn name(&self) -> &str {
        "memory"
    }

    async fn get(&self, kind: Kind, digest: &Digest) -> Result<Option<Object>, StoreError> {
        Ok(read(&self.objects)
            .get(&(kind, *digest))
            .map(|(b, _)| Object::from_bytes(b.clone())))
    }

    async fn get_range(
        &self,
        kind: Kind,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<Option<Object>, StoreError> {
        let Some(b) = read(&self.objects)
            .get(&(kind, *digest))
            .map(|(b, _)| b.clone())
        else {
            return Ok(None);
        };
        super::slice_range("memory", b, range).map(Some)
    }

    async fn head(&self, kind: Kind, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(read(&self.objects)
            .get(&(kind, *digest))
            .map(|(b, _)| b.len() as u64))
    }

    async fn put(&self, kind: Kind, digest: &Digest, body: ByteStream) -> Result<(), StoreError> {
        let bytes = Object { size: 0, body }.into_bytes().await?;
        let mut h = Hasher::new();
        h.update(&bytes);
        let actual = h.finish();
        if actual != *digest {
            return Err(StoreError::Integrity {
                kind: kind.as_str(),
                expected: *digest,
                actual,
            });
        }
        write(&self.objects).insert((kind, *digest), (bytes, SystemTime::now()));
        Ok(())
    }

    async fn delete(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError> {
        write(&self.objects).remove(&(kind, *digest));
        Ok(())
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Listed>, StoreError> {
        Ok(read(&self.objects)
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, d), (b, t))| Listed {
                digest: *d,
                size: b.len() as u64,
                written: *t,
            })
            .collect())
    }

    /// Nothing to keep aside in memory: the object is dropped.
    async fn quarantine(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError> {
        self.delete(kind, digest).await
    }
}

#[async_trait::async_trait]
impl TagStore for MemoryStore {
    async fn get_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Option<Digest>, StoreError> {
        Ok(read(&self.tags).get(&(name.clone(), tag.clone())).copied())
    }

    async fn set_tag(
        &self,
        name: &RuntimeName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        write(&self.tags).insert((name.clone(), tag.clone()), *digest);
        Ok(())
    }

    async fn delete_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<(), StoreError> {
        write(&self.tags).remove(&(name.clone(), tag.clone()));
        Ok(())
    }

    async fn list_tags(&self) -> Result<Vec<TagEntry>, StoreError> {
        Ok(read(&self.tags)
            .iter()
            .map(|((name, tag), digest)| TagEntry {
                name: name.clone(),
                tag: tag.clone(),
                digest: *digest,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance_suite() {
        let store = super::MemoryStore::new();
        crate::conformance::run_all(&store).await;
        crate::conformance::tags(&store).await;
        crate::conformance::records(&store).await;
    }
}
