//! S3 listings for garbage collection (ListObjectsV2, `LastModified` as the write time), tag deletes, and quarantine by copy-aside.
//!
//! ```text
//! s3://BUCKET/PREFIXquarantine-v1/<kind>/<64 hex>.<rnd>   damaged objects moved aside
//! ```

use std::time::SystemTime;

use prewarm_shared::Digest;

use super::{map_err, S3Store, NAME};
use crate::listing::{digest_from_hex, tag_from_key};
use crate::{Kind, Listed, StoreError, TagEntry};

impl S3Store {
    /// Every key under `prefix`, with its size and `LastModified`.
    pub(super) async fn list_keys(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, u64, SystemTime)>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err(prefix, e))?;
            for o in page.contents() {
                let Some(k) = o.key() else { continue };
                // Without a time, the safe side for a collector is "just written".
                let written = o
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or_else(SystemTime::now);
                let size = o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
                out.push((k.to_string(), size, written));
            }
        }
        Ok(out)
    }

    pub(super) async fn list_objects(&self, kind: Kind) -> Result<Vec<Listed>, StoreError> {
        let top = self.object_key(kind, &Digest::of(b""));
        let prefix = &top[..top.len() - 64];
        Ok(self
            .list_keys(prefix)
            .await?
            .into_iter()
            .filter_map(|(k, size, written)| {
                let digest = k.strip_prefix(prefix).and_then(digest_from_hex)?;
                Some(Listed {
                    digest,
                    size,
                    written,
                })
            })
            .collect())
    }

    pub(super) async fn list_tag_keys(&self) -> Result<Vec<TagEntry>, StoreError> {
        let prefix = format!("{}tags-v1/", self.prefix);
        let mut out = Vec::new();
        for (k, _, _) in self.list_keys(&prefix).await? {
            let (name, tag) = tag_from_key(NAME, &k, &prefix, '/')?;
            let Some(digest) = crate::TagStore::get_tag(self, &name, &tag).await? else {
                continue;
            };
            out.push(TagEntry { name, tag, digest });
        }
        Ok(out)
    }

    pub(super) async fn delete_key(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err(key, e))?;
        Ok(())
    }

    /// Copies the object under `quarantine-v1/` (kept for inspection), then deletes it.
    pub(super) async fn quarantine_object(
        &self,
        kind: Kind,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let key = self.object_key(kind, digest);
        let aside = format!(
            "{}quarantine-v1/{}/{}.{:08x}",
            self.prefix,
            kind.as_str(),
            digest.hex(),
            rand::random::<u32>()
        );
        match self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{key}", self.bucket))
            .key(&aside)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if super::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(map_err(&key, e)),
        }
        tracing::error!(%key, moved_to = %aside, "damaged object quarantined in S3; it is reported missing until pushed again");
        self.delete_key(&key).await
    }
}
