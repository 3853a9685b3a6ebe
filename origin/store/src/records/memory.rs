//! [`Records`] in memory, for tests: a sorted map in the [`MemoryStore`].

use bytes::Bytes;

use super::{check_size, RecordKey, Records};
use crate::memory::{read, write};
use crate::{MemoryStore, StoreError};

#[async_trait::async_trait]
impl Records for MemoryStore {
    async fn get_record(&self, key: &RecordKey) -> Result<Option<Bytes>, StoreError> {
        Ok(read(&self.records).get(key).cloned())
    }

    async fn put_record(&self, key: &RecordKey, doc: Bytes) -> Result<(), StoreError> {
        check_size("memory", &doc)?;
        write(&self.records).insert(key.clone(), doc);
        Ok(())
    }

    async fn delete_record(&self, key: &RecordKey) -> Result<(), StoreError> {
        write(&self.records).remove(key);
        Ok(())
    }

    async fn list_records(&self, prefix: &RecordKey) -> Result<Vec<RecordKey>, StoreError> {
        Ok(read(&self.records)
            .keys()
            .filter(|k| k.is_under(prefix))
            .cloned()
            .collect())
    }
}
