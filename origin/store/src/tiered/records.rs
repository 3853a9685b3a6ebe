//! The tiered store's records: the durable tier's alone (S3 when configured, else the local disk), never cached.
//!
//! Records are mutable and few; a cached copy in Redis or RAM could serve an owner or a pause
//! state another origin already changed, so every read goes to the durable tier.

use bytes::Bytes;

use super::super::metrics::inc;
use super::super::{RecordKey, Records, StoreError};
use super::Tiered;

impl Tiered {
    fn durable_records(&self) -> Result<&dyn Records, StoreError> {
        let t = &self.inner.tiers[self.inner.durable];
        t.records
            .as_deref()
            .ok_or_else(|| StoreError::other(&t.name, "the durable tier holds no records"))
    }

    fn count<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.is_err() {
            inc(&self.inner.c(self.inner.durable).errors);
        }
        r
    }
}

#[async_trait::async_trait]
impl Records for Tiered {
    async fn get_record(&self, key: &RecordKey) -> Result<Option<Bytes>, StoreError> {
        let r = self.durable_records()?.get_record(key).await;
        self.count(r)
    }

    async fn put_record(&self, key: &RecordKey, doc: Bytes) -> Result<(), StoreError> {
        let r = self.durable_records()?.put_record(key, doc).await;
        self.count(r)
    }

    async fn delete_record(&self, key: &RecordKey) -> Result<(), StoreError> {
        let r = self.durable_records()?.delete_record(key).await;
        self.count(r)
    }

    async fn list_records(&self, prefix: &RecordKey) -> Result<Vec<RecordKey>, StoreError> {
        let r = self.durable_records()?.list_records(prefix).await;
        self.count(r)
    }
}
