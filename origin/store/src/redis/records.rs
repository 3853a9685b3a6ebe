//! [`Records`] in Redis: one hash, `<namespace>:v1:records`, field = key, without a TTL.
//!
//! Records are not a cache: no TTL and no eviction policy of ours applies to them (a Redis
//! configured to evict `allkeys-*` can still drop them; the tiered stack keeps records in its
//! durable tier, never in Redis).

use bytes::Bytes;

use super::{RedisStore, NAME};
use crate::records::{check_size, RecordKey, Records};
use crate::StoreError;

impl RedisStore {
    fn records_hash(&self) -> String {
        format!("{}:v1:records", self.opts.namespace)
    }
}

#[async_trait::async_trait]
impl Records for RedisStore {
    async fn get_record(&self, key: &RecordKey) -> Result<Option<Bytes>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.records_hash()).arg(key.as_str());
        Ok(self.run::<Option<Vec<u8>>>(cmd).await?.map(Bytes::from))
    }

    async fn put_record(&self, key: &RecordKey, doc: Bytes) -> Result<(), StoreError> {
        check_size(NAME, &doc)?;
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.records_hash())
            .arg(key.as_str())
            .arg(doc.as_ref());
        self.run::<()>(cmd).await
    }

    async fn delete_record(&self, key: &RecordKey) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.records_hash()).arg(key.as_str());
        self.run::<()>(cmd).await
    }

    async fn list_records(&self, prefix: &RecordKey) -> Result<Vec<RecordKey>, StoreError> {
        // Key characters hold no glob metacharacters, so the prefix is a literal pattern.
        let pattern = format!("{prefix}/*");
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("HSCAN");
            cmd.arg(self.records_hash())
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, pairs): (u64, std::collections::HashMap<String, Vec<u8>>) =
                self.run(cmd).await?;
            keys.extend(pairs.into_keys().filter_map(|k| k.parse().ok()));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}
