//! The tiered store's tags (durable first, then the hot tier) and its health probes.

use prewarm_shared::{Digest, RuntimeName, Tag};

use super::super::metrics::{inc, Health, TierHealth};
use super::super::tier::Role;
use super::super::{StoreError, TagEntry, TagStore};
use super::Tiered;

impl Tiered {
    /// Probes every tier once, concurrently. Details of failures are logged, not returned.
    pub async fn health(&self) -> Health {
        let i = &self.inner;
        let probes = i.tiers.iter().map(|t| t.probe.probe());
        let results = futures::future::join_all(probes).await;
        let mut ready = true;
        let tiers = i
            .tiers
            .iter()
            .zip(results)
            .enumerate()
            .map(|(n, (t, r))| {
                let status = match &r {
                    Ok(()) => "ok",
                    Err(StoreError::Unavailable { .. }) => "unavailable",
                    Err(StoreError::Integrity { .. }) => "integrity",
                    Err(StoreError::Other { .. }) => "error",
                };
                if let Err(e) = &r {
                    tracing::warn!(tier = %t.name, error = %e, "tier probe failed");
                    ready &= !t.required;
                }
                TierHealth {
                    name: t.name.clone(),
                    role: t.role,
                    durable: n == i.durable,
                    required: t.required,
                    status,
                }
            })
            .collect();
        Health { ready, tiers }
    }

    /// Probes every tier and fails on the first that is down, naming it.
    pub async fn probe_all(&self) -> Result<(), StoreError> {
        for t in &self.inner.tiers {
            t.probe.probe().await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl TagStore for Tiered {
    async fn get_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Option<Digest>, StoreError> {
        let i = &self.inner;
        let durable = &i.tiers[i.durable];
        let hot = i
            .tiers
            .iter()
            .position(|t| t.role == Role::Hot)
            .filter(|_| durable.role == Role::Remote);
        if let Some(n) = hot {
            if let Some(tags) = &i.tiers[n].tags {
                match tags.get_tag(name, tag).await {
                    Ok(Some(d)) => {
                        inc(&i.c(n).hits);
                        return Ok(Some(d));
                    }
                    Ok(None) => inc(&i.c(n).misses),
                    Err(e) => i.tier_error(n, e)?,
                }
            }
        }
        let tags = durable
            .tags
            .as_ref()
            .ok_or_else(|| StoreError::other(&durable.name, "the durable tier holds no tags"))?;
        let found = match tags.get_tag(name, tag).await {
            Ok(found) => found,
            Err(e) => {
                inc(&i.c(i.durable).errors);
                return Err(e);
            }
        };
        if found.is_some() {
            inc(&i.c(i.durable).hits);
        }
        if let (Some(d), Some(n)) = (found, hot) {
            if let Some(hot_tags) = &i.tiers[n].tags {
                match hot_tags.set_tag(name, tag, &d).await {
                    Ok(()) => inc(&i.c(n).backfills),
                    Err(_) => inc(&i.c(n).errors),
                }
            }
        }
        Ok(found)
    }

    async fn set_tag(
        &self,
        name: &RuntimeName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let i = &self.inner;
        let durable = &i.tiers[i.durable];
        let tags = durable
            .tags
            .as_ref()
            .ok_or_else(|| StoreError::other(&durable.name, "the durable tier holds no tags"))?;
        if let Err(e) = tags.set_tag(name, tag, digest).await {
            inc(&i.c(i.durable).errors);
            return Err(e);
        }
        if durable.role == Role::Remote {
            for (n, t) in i
                .tiers
                .iter()
                .enumerate()
                .filter(|(_, t)| t.role == Role::Hot)
            {
                if let Some(hot) = &t.tags {
                    if let Err(e) = hot.set_tag(name, tag, digest).await {
                        inc(&i.c(n).errors);
                        tracing::warn!(tier = %t.name, error = %e, "tag not cached; the hot tier may serve the old one until its TTL");
                    }
                }
            }
        }
        Ok(())
    }

    async fn delete_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<(), StoreError> {
        self.delete_tag_everywhere(name, tag).await
    }

    async fn list_tags(&self) -> Result<Vec<TagEntry>, StoreError> {
        self.list_durable_tags().await
    }
}
