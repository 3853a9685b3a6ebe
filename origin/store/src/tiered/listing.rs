//! The tiered store's listings for garbage collection: objects of every tier as one list, tags of the durable tier.

use std::collections::HashMap;

use prewarm_shared::{Digest, RuntimeName, Tag};

use super::super::metrics::inc;
use super::super::tier::Role;
use super::super::{Kind, Listed, StoreError, TagEntry};
use super::Tiered;

impl Tiered {
    /// Every object of `kind` in any tier, once, with the latest write time any tier reports
    /// (so a collector's grace period counts from the most recent copy). A tier that cannot be
    /// listed fails the whole listing: deciding what is garbage from part of the picture is
    /// not safe.
    pub(super) async fn list_all(&self, kind: Kind) -> Result<Vec<Listed>, StoreError> {
        let mut all: HashMap<Digest, Listed> = HashMap::new();
        for (n, t) in self.inner.tiers.iter().enumerate() {
            let listed = t.store.list(kind).await.inspect_err(|_| {
                inc(&self.inner.c(n).errors);
            })?;
            for l in listed {
                all.entry(l.digest)
                    .and_modify(|have| have.written = have.written.max(l.written))
                    .or_insert(l);
            }
        }
        let mut out: Vec<Listed> = all.into_values().collect();
        out.sort_by_key(|l| l.digest);
        Ok(out)
    }

    /// The durable tier's tags: the only complete set (the hot tier's expire).
    pub(super) async fn list_durable_tags(&self) -> Result<Vec<TagEntry>, StoreError> {
        let i = &self.inner;
        let durable = &i.tiers[i.durable];
        let tags = durable
            .tags
            .as_ref()
            .ok_or_else(|| StoreError::other(&durable.name, "the durable tier holds no tags"))?;
        tags.list_tags().await
    }

    /// Deletes the tag from the durable tier first, then from the hot tier, where a stale copy
    /// would otherwise resolve until its TTL.
    pub(super) async fn delete_tag_everywhere(
        &self,
        name: &RuntimeName,
        tag: &Tag,
    ) -> Result<(), StoreError> {
        let i = &self.inner;
        let durable = &i.tiers[i.durable];
        let tags = durable
            .tags
            .as_ref()
            .ok_or_else(|| StoreError::other(&durable.name, "the durable tier holds no tags"))?;
        if let Err(e) = tags.delete_tag(name, tag).await {
            inc(&i.c(i.durable).errors);
            return Err(e);
        }
        for (n, t) in i.tiers.iter().enumerate() {
            if n == i.durable || t.role != Role::Hot {
                continue;
            }
            if let Some(hot) = &t.tags {
                // A stale hot copy would keep resolving: this one must not fail open.
                hot.delete_tag(name, tag).await.inspect_err(|_| {
                    inc(&i.c(n).errors);
                })?;
            }
        }
        Ok(())
    }

    /// Quarantines the object in every tier and forgets it in memory.
    pub(super) async fn quarantine_all(
        &self,
        kind: Kind,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let i = &self.inner;
        i.take_parked(kind, digest);
        if let Some(r) = &i.ram {
            r.remove(kind, digest);
        }
        let mut first_err = None;
        for (n, t) in i.tiers.iter().enumerate() {
            if let Err(e) = t.store.quarantine(kind, digest).await {
                inc(&i.c(n).errors);
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
