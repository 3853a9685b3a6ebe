//! The mark phase of gc: read the roots (tags, snapshot and paused records, young manifests) and follow manifests to their blocks, parents and runtimes.

use std::collections::HashSet;
use std::time::SystemTime;

use prewarm_shared::{Digest, Manifest};
use prewarm_store::{Kind, Listed, RecordKey, StoreExt};
use serde::Deserialize;

use super::{Dangling, GcError, GcReport, GcStores};

/// The name every warmed runtime's tag is under (`prewarm-warmed:w-<key>`).
const WARMED_NAME: &str = "prewarm-warmed";

/// The references a snapshot record (`snapshots/<hex>`) or a paused record (`paused/<id>`,
/// which has only `snapshot`) holds; the rest of the record is not gc's business, so a field
/// added there later cannot make gc fail (see `snapshots/records.rs`).
#[derive(Deserialize)]
struct RecordRefs {
    snapshot: Digest,
    #[serde(default)]
    runtime: Option<Digest>,
    #[serde(default)]
    parent: Option<Digest>,
}

/// What is reachable so far, and which roots were already followed (so a re-check reads only
/// what is new).
#[derive(Default)]
pub(super) struct Marks {
    pub(super) manifests: HashSet<Digest>,
    pub(super) blocks: HashSet<Digest>,
    /// Manifests whose marking was started (found or dangling).
    visited: HashSet<Digest>,
    /// `name:tag=digest` of every tag followed: a tag moved since is followed again.
    tags: HashSet<String>,
    records: HashSet<RecordKey>,
}

impl Marks {
    /// Marks from every root not followed yet. `manifests` is a listing of all manifests:
    /// those written after `cutoff` are roots.
    pub(super) async fn roots(
        &mut self,
        s: &GcStores<'_>,
        manifests: &[Listed],
        cutoff: SystemTime,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        for t in s.tags.list_tags().await? {
            let from = format!("{}:{}", t.name, t.tag);
            if !self.tags.insert(format!("{from}={}", t.digest)) {
                continue;
            }
            report.roots.tags += 1;
            if t.name.as_str() == WARMED_NAME {
                report.roots.warmed_tags += 1;
            }
            self.mark(s, t.digest, from, report).await?;
        }
        for dir in ["snapshots", "paused"] {
            for key in s.records.list_records(&record_dir(dir)).await? {
                let Some(r) = self.record(s, &key).await? else {
                    continue;
                };
                if dir == "paused" {
                    report.roots.paused_records += 1;
                } else {
                    report.roots.snapshot_records += 1;
                }
                for d in [Some(r.snapshot), r.runtime, r.parent]
                    .into_iter()
                    .flatten()
                {
                    self.mark(s, d, key.to_string(), report).await?;
                }
            }
        }
        for l in manifests {
            if l.written > cutoff && !self.visited.contains(&l.digest) {
                report.roots.young_manifests += 1;
                self.mark(s, l.digest, "a young manifest".into(), report)
                    .await?;
            }
        }
        Ok(())
    }

    /// The record at `key`, unless it was followed already or is gone since the listing.
    async fn record(
        &mut self,
        s: &GcStores<'_>,
        key: &RecordKey,
    ) -> Result<Option<RecordRefs>, GcError> {
        if self.records.contains(key) {
            return Ok(None);
        }
        let Some(bytes) = s.records.get_record(key).await? else {
            return Ok(None);
        };
        let r = serde_json::from_slice(&bytes).map_err(|e| GcError::Unreadable {
            what: format!("record {key}"),
            why: e.to_string(),
        })?;
        self.records.insert(key.clone());
        Ok(Some(r))
    }

    /// Marks `root` and everything it reaches: blocks, parent, runtime.
    async fn mark(
        &mut self,
        s: &GcStores<'_>,
        root: Digest,
        from: String,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        let mut queue = vec![(root, from)];
        while let Some((d, from)) = queue.pop() {
            if !self.visited.insert(d) {
                continue;
            }
            let Some(bytes) = s.objects.get_bytes(Kind::Manifest, &d).await? else {
                tracing::warn!(%from, missing = %d, "gc: a reference to a manifest no tier holds");
                report.dangling.push(Dangling { from, missing: d });
                continue;
            };
            let m = Manifest::parse(&bytes).map_err(|e| GcError::Unreadable {
                what: format!("manifest {d}"),
                why: e.to_string(),
            })?;
            self.manifests.insert(d);
            self.blocks.extend(m.blocks());
            for next in [m.parent, m.runtime].into_iter().flatten() {
                queue.push((next, format!("manifest {d}")));
            }
        }
        Ok(())
    }
}

fn record_dir(name: &str) -> RecordKey {
    name.parse().expect("a constant one-segment key")
}
