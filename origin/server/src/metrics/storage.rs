//! Block reuse and storage savings across every manifest the origin holds, brought up to date on each scrape: manifests are immutable, so each is read once.
//!
//! For every manifest (runtimes, warmed runtimes, snapshots): the blocks it references (each
//! counted once per manifest) and its logical bytes (the sum of its files' sizes: what storing
//! it on its own would take). Across all of them: the distinct blocks and their bytes (what is
//! stored). Block reuse = 1 − distinct blocks / references; storage savings = 1 − stored
//! bytes / logical bytes. A block's size is the end of the furthest chunk any manifest reads
//! from it (a block holds chunk data only), so no block is read or listed. A scrape lists the
//! manifests (every tier's), reads the new ones and forgets the gone ones; a manifest that
//! cannot be read or parsed is skipped and tried again next scrape.

use std::collections::{HashMap, HashSet};

use prewarm_shared::{Digest, Entry, Manifest};
use prewarm_store::{Kind, Store, StoreExt, Tiered};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// What one manifest holds: its distinct blocks with the size each is read to, and its bytes.
struct Summary {
    blocks: Vec<(Digest, u64)>,
    logical: u64,
}

/// Every manifest's summary and the reference count of every block.
#[derive(Default)]
struct Counts {
    manifests: HashMap<Digest, Summary>,
    /// Block → (references, size).
    blocks: HashMap<Digest, (u64, u64)>,
    logical: u64,
    refs: u64,
}

impl Counts {
    fn add(&mut self, d: Digest, s: Summary) {
        for (b, size) in &s.blocks {
            let e = self.blocks.entry(*b).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(*size);
        }
        self.refs += s.blocks.len() as u64;
        self.logical += s.logical;
        self.manifests.insert(d, s);
    }

    fn remove(&mut self, d: &Digest) {
        let Some(s) = self.manifests.remove(d) else {
            return;
        };
        for (b, _) in &s.blocks {
            if let Some(e) = self.blocks.get_mut(b) {
                e.0 -= 1;
                if e.0 == 0 {
                    self.blocks.remove(b);
                }
            }
        }
        self.refs -= s.blocks.len() as u64;
        self.logical -= s.logical;
    }

    fn stored(&self) -> u64 {
        self.blocks.values().map(|(_, size)| size).sum()
    }
}

/// One manifest's [`Summary`].
fn summarise(m: &Manifest) -> Summary {
    let mut ends: HashMap<Digest, u64> = HashMap::new();
    let mut logical = 0;
    for e in &m.entries {
        if let Entry::File { size, chunks, .. } = e {
            logical += size;
            for c in chunks {
                let end = ends.entry(c.block).or_insert(0);
                *end = (*end).max(c.offset + c.size);
            }
        }
    }
    Summary {
        blocks: ends.into_iter().collect(),
        logical,
    }
}

/// The gauges, and the counts behind them.
pub(crate) struct StorageStats {
    tiers: Tiered,
    counts: tokio::sync::Mutex<Counts>,
    manifests: Gauge,
    refs: Gauge,
    unique: Gauge,
    logical: Gauge,
    stored: Gauge,
    reuse: Gauge<f64, AtomicU64>,
    savings: Gauge<f64, AtomicU64>,
}

impl StorageStats {
    pub(crate) fn new(tiers: Tiered) -> Self {
        Self {
            tiers,
            counts: Default::default(),
            manifests: Gauge::default(),
            refs: Gauge::default(),
            unique: Gauge::default(),
            logical: Gauge::default(),
            stored: Gauge::default(),
            reuse: Gauge::default(),
            savings: Gauge::default(),
        }
    }

    pub(crate) fn register(&self, r: &mut Registry) {
        let s = r.sub_registry_with_prefix("store");
        s.register(
            "manifests",
            "Manifests the origin holds (runtimes, warmed runtimes, snapshots)",
            self.manifests.clone(),
        );
        s.register(
            "block_refs",
            "Block references: each manifest's distinct blocks, summed over manifests",
            self.refs.clone(),
        );
        s.register(
            "blocks_unique",
            "Distinct blocks those manifests reference",
            self.unique.clone(),
        );
        s.register(
            "logical_bytes",
            "Bytes of every manifest's files, as if each were stored on its own",
            self.logical.clone(),
        );
        s.register(
            "stored_bytes",
            "Bytes of the distinct blocks those manifests reference",
            self.stored.clone(),
        );
        s.register("block_reuse_ratio", "1 - distinct blocks / block references: how much of what manifests reference is shared", self.reuse.clone());
        s.register(
            "savings_ratio",
            "1 - stored bytes / logical bytes: storage saved by sharing blocks across manifests",
            self.savings.clone(),
        );
    }

    /// Lists the manifests, reads those not seen yet, forgets those gone, sets the gauges.
    /// A listing that fails leaves the last values (logged).
    pub(crate) async fn refresh(&self) {
        let listed = match self.tiers.list(Kind::Manifest).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("storage stats: listing manifests: {e}");
                return;
            }
        };
        let mut counts = self.counts.lock().await;
        let now: HashSet<Digest> = listed.iter().map(|l| l.digest).collect();
        let gone: Vec<Digest> = counts
            .manifests
            .keys()
            .filter(|d| !now.contains(d))
            .copied()
            .collect();
        for d in &gone {
            counts.remove(d);
        }
        for d in now {
            if counts.manifests.contains_key(&d) {
                continue;
            }
            match self.tiers.get_bytes(Kind::Manifest, &d).await {
                Ok(Some(bytes)) => match Manifest::parse(&bytes) {
                    Ok(m) => counts.add(d, summarise(&m)),
                    Err(e) => tracing::warn!("storage stats: manifest {d}: {e}"),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!("storage stats: reading manifest {d}: {e}"),
            }
        }
        let stored = counts.stored();
        let unique = counts.blocks.len() as u64;
        self.manifests.set(counts.manifests.len() as i64);
        self.refs.set(counts.refs as i64);
        self.unique.set(unique as i64);
        self.logical.set(counts.logical as i64);
        self.stored.set(stored as i64);
        self.reuse.set(one_minus(unique, counts.refs));
        self.savings.set(one_minus(stored, counts.logical));
    }
}

/// `1 - part / whole`, 0 for an empty whole.
fn one_minus(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        1.0 - part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_shared::Chunk;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn summary(blocks: &[(u8, u64)], logical: u64) -> Summary {
        Summary {
            blocks: blocks.iter().map(|(b, s)| (d(*b), *s)).collect(),
            logical,
        }
    }

    #[test]
    fn shared_blocks_count_as_reuse_and_savings_and_leave_with_their_last_manifest() {
        let mut c = Counts::default();
        c.add(d(100), summary(&[(1, 10), (2, 30)], 40));
        assert_eq!(
            (c.refs, c.blocks.len(), c.stored(), c.logical),
            (2, 2, 40, 40)
        );
        // A second runtime shares block 1 and adds block 3.
        c.add(d(101), summary(&[(1, 10), (3, 50)], 60));
        assert_eq!(
            (c.refs, c.blocks.len(), c.stored(), c.logical),
            (4, 3, 90, 100)
        );
        assert!((one_minus(3, 4) - 0.25).abs() < 1e-9);
        c.remove(&d(100));
        assert_eq!(
            (c.refs, c.blocks.len(), c.stored(), c.logical),
            (2, 2, 60, 60)
        );
        c.remove(&d(101));
        assert_eq!(
            (c.refs, c.blocks.len(), c.stored(), c.logical),
            (0, 0, 0, 0)
        );
        assert_eq!(one_minus(0, 0), 0.0);
    }

    #[test]
    fn a_block_is_counted_once_per_manifest_and_sized_by_its_furthest_chunk() {
        let file = |p: &str, size: u64, chunks: Vec<Chunk>| Entry::File {
            path: p.parse().unwrap(),
            mode: 0o644,
            size,
            digest: d(9),
            chunks,
        };
        let m = Manifest {
            schema: prewarm_shared::manifest::SCHEMA.into(),
            parent: None,
            runtime: None,
            meta: None,
            lock: None,
            pack_key: None,
            entries: vec![
                file(
                    "a",
                    4,
                    vec![Chunk {
                        block: d(1),
                        offset: 0,
                        size: 4,
                    }],
                ),
                file(
                    "b",
                    6,
                    vec![Chunk {
                        block: d(1),
                        offset: 4,
                        size: 6,
                    }],
                ),
                file(
                    "c",
                    5,
                    vec![Chunk {
                        block: d(2),
                        offset: 0,
                        size: 5,
                    }],
                ),
            ],
            warmed: None,
        };
        let s = summarise(&m);
        assert_eq!(s.logical, 15);
        let mut blocks = s.blocks.clone();
        blocks.sort();
        let mut want = vec![(d(1), 10), (d(2), 5)];
        want.sort();
        assert_eq!(blocks, want);
    }
}
