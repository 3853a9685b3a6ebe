//! Redis listings for garbage collection: keys by SCAN, each object's write time from its remaining TTL.
//!
//! Every object key is written with `EX ttl` and never refreshed, so it was written about
//! `ttl − PTTL` ago. A key without an expiry (planted by hand) counts as written now, the
//! safe side for a collector that spares young objects.

use std::time::{Duration, SystemTime};

use super::{RedisStore, NAME};
use crate::listing::{digest_from_hex, tag_from_key};
use crate::{Kind, Listed, StoreError, TagEntry};

/// Keys fetched per SCAN step.
const SCAN_COUNT: u64 = 1000;

impl RedisStore {
    /// Every key matching `pattern` (a literal prefix and `*`).
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, batch): (u64, Vec<String>) = self.run(cmd).await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    pub(super) async fn list_objects(&self, kind: Kind) -> Result<Vec<Listed>, StoreError> {
        let prefix = format!("{}:v1:{}:", self.opts.namespace, kind.as_str());
        let keys = self.scan(&format!("{prefix}*")).await?;
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(500) {
            let mut pipe = redis::pipe();
            for k in batch {
                pipe.cmd("PTTL").arg(k).cmd("STRLEN").arg(k);
            }
            let mut conn = self.conn.clone();
            let answers: Vec<(i64, u64)> = self
                .bounded(async move { pipe.query_async(&mut conn).await })
                .await?;
            let now = SystemTime::now();
            for (k, (pttl, len)) in batch.iter().zip(answers) {
                let Some(digest) = k.strip_prefix(&prefix).and_then(digest_from_hex) else {
                    continue;
                };
                // -2: gone since the SCAN.
                if pttl == -2 {
                    continue;
                }
                let age = match u64::try_from(pttl) {
                    Ok(left) => self.opts.ttl.saturating_sub(Duration::from_millis(left)),
                    Err(_) => Duration::ZERO,
                };
                out.push(Listed {
                    digest,
                    size: len,
                    written: now.checked_sub(age).unwrap_or(now),
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn list_tag_keys(&self) -> Result<Vec<TagEntry>, StoreError> {
        let prefix = format!("{}:v1:tag:", self.opts.namespace);
        let keys = self.scan(&format!("{prefix}*")).await?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let (name, tag) = tag_from_key(NAME, &k, &prefix, ':')?;
            let Some(digest) = crate::TagStore::get_tag(self, &name, &tag).await? else {
                continue;
            };
            out.push(TagEntry { name, tag, digest });
        }
        Ok(out)
    }

    pub(super) async fn del(&self, key: String) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        self.run::<i64>(cmd).await?;
        Ok(())
    }
}
