//! [`Records`] in S3: one small object per record at `<prefix>records-v1/<key>.json`, listed with ListObjectsV2.

use bytes::Bytes;

use super::{map_err, S3Store, NAME};
use crate::records::{check_size, RecordKey, Records};
use crate::StoreError;

/// Suffix of every record object, so `a/b` (`a/b.json`) and `a/b/c` (`a/b/c.json`) never collide.
const SUFFIX: &str = ".json";

impl S3Store {
    fn records_root(&self) -> String {
        format!("{}records-v1/", self.prefix)
    }

    fn record_key(&self, key: &RecordKey) -> String {
        format!("{}{key}{SUFFIX}", self.records_root())
    }
}

#[async_trait::async_trait]
impl Records for S3Store {
    async fn get_record(&self, key: &RecordKey) -> Result<Option<Bytes>, StoreError> {
        match self.get_key(&self.record_key(key), None).await? {
            Some(o) => Ok(Some(o.into_bytes().await?)),
            None => Ok(None),
        }
    }

    async fn put_record(&self, key: &RecordKey, doc: Bytes) -> Result<(), StoreError> {
        check_size(NAME, &doc)?;
        self.put_small(&self.record_key(key), doc).await
    }

    async fn delete_record(&self, key: &RecordKey) -> Result<(), StoreError> {
        let k = self.record_key(key);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&k)
            .send()
            .await
            .map_err(|e| map_err(&k, e))?;
        Ok(())
    }

    async fn list_records(&self, prefix: &RecordKey) -> Result<Vec<RecordKey>, StoreError> {
        let root = self.records_root();
        let want = format!("{root}{prefix}/");
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&want)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err(&want, e))?;
            for o in page.contents() {
                let Some(k) = o.key() else { continue };
                let parsed = k
                    .strip_prefix(&root)
                    .and_then(|k| k.strip_suffix(SUFFIX))
                    .and_then(|k| k.parse::<RecordKey>().ok());
                keys.extend(parsed);
            }
        }
        keys.sort();
        Ok(keys)
    }
}
