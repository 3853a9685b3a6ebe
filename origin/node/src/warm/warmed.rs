//! Warmed runtimes across the fleet: finding another node's warmed manifest, and building one from a warm tree.
//!
//! A warmed manifest is the runtime's manifest with the files warm-up added or changed
//! (bytecode, caches) as new blocks and every other entry as it was, `parent` = the runtime's
//! manifest and `warmed` = who warmed it with which [`WarmInputs`]. It is tagged
//! `prewarm-warmed:w-<key hex>` ([`WarmKey::tag`]) through the origin's tiers. See
//! docs/FORMAT.md, "Warmed runtimes".

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prewarm_client::pack::{pack, PackLimits, Packed};
use prewarm_client::pull::{fetch_manifest, hash_file, FileCache};
use prewarm_client::transfer::{Sink, Source, TransferError};
use prewarm_shared::warmed::{WarmInputs, WarmKey, WarmedBy};
use prewarm_shared::{Digest, Entry, Manifest, RelPath, RuntimeRef};
use serde::{Deserialize, Serialize};

use super::lease::Leases;

/// `node.warmed` (`--warmed`): whether this node trusts and shares warmed runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarmedMode {
    /// Fetch another node's warmed runtime when there is one; publish what is warmed here.
    #[default]
    Use,
    /// Never fetch one (warm here, trusting no other node); still publish for others.
    PublishOnly,
    /// Neither fetch nor publish: warm here as if alone.
    Ignore,
}

impl WarmedMode {
    pub fn fetches(self) -> bool {
        self == WarmedMode::Use
    }
    pub fn publishes(self) -> bool {
        self != WarmedMode::Ignore
    }
}

/// How a runtime on this node came to be warm (the index's `warmed` and the stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmedHow {
    /// Its warm commands ran here (or it has none); not published.
    #[default]
    WarmedHere,
    /// Another node's warmed manifest was fetched: no warm command ran here.
    FetchedWarmed,
    /// Warmed here and published as a warmed manifest.
    WarmedAndPublished,
}

/// What the node shares warmed runtimes with: the mode, where to publish, the fleet lease.
#[derive(Clone)]
pub struct Fleet {
    pub mode: WarmedMode,
    /// Where warmed manifests go: the origin's tiers. `None`: this node cannot publish
    /// (no shared tier it may write to).
    pub sink: Option<Arc<dyn Sink>>,
    pub leases: Leases,
}

impl Fleet {
    /// Alone: nothing fetched, nothing published, no fleet lease.
    pub fn alone() -> Self {
        Self {
            mode: WarmedMode::Ignore,
            sink: None,
            leases: Leases::none(),
        }
    }
}

/// The warmed manifest published for `inputs`, if there is a valid one: its tag resolves,
/// the manifest verifies, its `parent` is the runtime and its recorded inputs are exactly
/// `inputs`. Anything else (absent, unreachable, mismatched) is `None`, logged when odd.
pub async fn lookup(source: &dyn Source, inputs: &WarmInputs) -> Option<(Digest, Manifest)> {
    let (name, tag) = inputs.key().tag();
    let digest = match source.resolve_tag(&name, &tag).await {
        Ok(d) => d,
        Err(TransferError::NotFound { .. }) => return None,
        Err(e) => {
            tracing::warn!(%e, "could not look for a warmed runtime; warming here");
            return None;
        }
    };
    let (digest, m) = match fetch_manifest(source, &RuntimeRef::Digest(digest)).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(%digest, %e, "the warmed manifest could not be fetched; warming here");
            return None;
        }
    };
    let inputs_ok = m.warmed.as_ref().is_some_and(|w| w.inputs == *inputs);
    if m.parent != Some(inputs.runtime) || !inputs_ok {
        tracing::warn!(%digest, "the warmed manifest's parent or inputs do not match its key; ignoring it");
        return None;
    }
    Some((digest, m))
}

/// A warmed manifest built from a warm tree, and its new blocks (read from the tree).
pub struct Delta {
    pub manifest: Manifest,
    /// Packs only the files warm-up added or changed; `None` when there are none.
    packed: Option<Packed>,
    /// Hard links to those files, which the packed blocks are read from.
    scratch: PathBuf,
    pub changed_files: u64,
}

impl Drop for Delta {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// Builds the warmed manifest of `root` (warmed, taken back, not sealed yet) against the
/// runtime manifest `base` it was materialised from. A file whose inode is still the cache's
/// or whose bytes still hash to the base digest keeps its base entry (and blocks); new and
/// changed files are hard-linked into `scratch` (same filesystem) and packed into new blocks;
/// removed entries are dropped. Blocking.
pub fn delta(
    base: &Manifest,
    cache: &FileCache,
    root: &Path,
    scratch: &Path,
    warmed: WarmedBy,
) -> io::Result<Delta> {
    let old: HashMap<&str, &Entry> = base
        .entries
        .iter()
        .map(|e| (e.path().as_str(), e))
        .collect();
    let mut entries = Vec::new();
    let mut changed = 0u64;
    fs::create_dir_all(scratch)?;
    let mut out = Delta {
        manifest: Manifest::new(Vec::new()),
        packed: None,
        scratch: scratch.to_path_buf(),
        changed_files: 0,
    };
    for e in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let e = e.map_err(io::Error::other)?;
        let rel_os = e.path().strip_prefix(root).map_err(io::Error::other)?;
        let rel_str = rel_os
            .to_str()
            .ok_or_else(|| io::Error::other(format!("{} is not UTF-8", rel_os.display())))?;
        let rel: RelPath = rel_str
            .parse()
            .map_err(|err| io::Error::other(format!("{rel_str}: {err}")))?;
        let m = e.path().symlink_metadata()?;
        let prev = old.get(rel_str).copied();
        let ft = m.file_type();
        if ft.is_dir() {
            entries.push(match prev {
                Some(p @ Entry::Dir { .. }) => p.clone(),
                _ => Entry::Dir {
                    path: rel,
                    mode: m.mode() & 0o777,
                },
            });
        } else if ft.is_symlink() {
            let target = fs::read_link(e.path())?;
            let target = target
                .to_str()
                .ok_or_else(|| io::Error::other(format!("{rel_str}: symlink target is not UTF-8")))?
                .to_string();
            entries.push(Entry::Symlink { path: rel, target });
        } else if ft.is_file() {
            if let Some(Entry::File {
                mode, size, digest, ..
            }) = prev
            {
                if unchanged(cache, e.path(), &m, *mode, *size, digest)? {
                    entries.push(prev.cloned().expect("matched above"));
                    continue;
                }
            }
            if rel_str == "meta.json" {
                // A tree holding `meta.json` packs as a runtime pack, not as files.
                return Err(io::Error::other(
                    "warm-up wrote meta.json at the runtime's root; not publishing",
                ));
            }
            let dst = scratch.join(rel_os);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::hard_link(e.path(), &dst)?;
            changed += 1;
        }
        // Sockets, fifos, devices: sealing keeps them out of sandboxes' way; never published.
    }
    if changed > 0 {
        let packed = pack(scratch, &PackLimits::default()).map_err(io::Error::other)?;
        entries.extend(
            packed
                .manifest
                .entries
                .iter()
                .filter(|e| matches!(e, Entry::File { .. }))
                .cloned(),
        );
        out.packed = Some(packed);
    }
    let mut manifest = Manifest::new(entries);
    manifest.parent = Some(base.digest());
    manifest.meta = base.meta.clone();
    manifest.lock = base.lock.clone();
    manifest.pack_key = base.pack_key.clone();
    manifest.warmed = Some(warmed);
    manifest
        .validate()
        .map_err(|e| io::Error::other(format!("the warmed tree is not a valid manifest: {e}")))?;
    out.manifest = manifest;
    out.changed_files = changed;
    Ok(out)
}

/// Whether the file at `path` is still the base entry's: the same inode as its cache file
/// (which the guard checked), or, if placed otherwise (copied), the same size and bytes.
fn unchanged(
    cache: &FileCache,
    path: &Path,
    m: &fs::Metadata,
    mode: u32,
    size: u64,
    digest: &Digest,
) -> io::Result<bool> {
    if let Ok(c) = fs::symlink_metadata(cache.path_for(digest, mode)) {
        if c.dev() == m.dev() && c.ino() == m.ino() {
            return Ok(true);
        }
    }
    if m.len() != size || m.mode() & 0o777 != mode {
        return Ok(false);
    }
    Ok(hash_file(path)? == *digest)
}

/// Uploads `delta`'s new blocks the sink lacks, then its manifest, then moves the key's tag to
/// it. Returns the warmed manifest's digest.
pub async fn publish(
    sink: &dyn Sink,
    delta: Arc<Delta>,
    key: &WarmKey,
) -> Result<Digest, TransferError> {
    if let Some(packed) = &delta.packed {
        let all: Vec<Digest> = packed.blocks.iter().map(|b| b.digest).collect();
        let missing: std::collections::HashSet<Digest> =
            sink.missing_blocks(&all).await?.into_iter().collect();
        for i in 0..packed.blocks.len() {
            let digest = packed.blocks[i].digest;
            if !missing.contains(&digest) {
                continue;
            }
            let d = delta.clone();
            let bytes = tokio::task::spawn_blocking(move || {
                let p = d.packed.as_ref().expect("checked above");
                p.read_block(&p.blocks[i])
            })
            .await
            .map_err(|e| other(sink, e.to_string()))?
            .map_err(|e| other(sink, e.to_string()))?;
            sink.put_block(&digest, bytes).await?;
        }
    }
    let bytes = delta.manifest.to_canonical_json();
    let digest = Digest::of(&bytes);
    sink.put_manifest(&digest, bytes.into()).await?;
    let (name, tag) = key.tag();
    sink.set_tag(&name, &tag, &digest).await?;
    Ok(digest)
}

fn other(sink: &dyn Sink, message: String) -> TransferError {
    TransferError::Other {
        at: sink.location(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::os::unix::fs::PermissionsExt;

    use bytes::Bytes;
    use prewarm_client::pull::{fetch_missing, materialise, LinkMode, MATERIALISED_MTIME};
    use prewarm_client::transfer::Fetched;
    use prewarm_shared::{RuntimeName, Tag};

    use super::*;

    /// Blocks by digest, from packed trees.
    #[derive(Default)]
    struct Blocks(HashMap<Digest, Bytes>);

    impl Blocks {
        fn add(&mut self, p: &Packed) {
            for b in &p.blocks {
                self.0.insert(b.digest, p.read_block(b).unwrap());
            }
        }
    }

    #[async_trait::async_trait]
    impl Source for Blocks {
        fn location(&self) -> String {
            "blocks".into()
        }
        async fn resolve_tag(&self, _: &RuntimeName, _: &Tag) -> Result<Digest, TransferError> {
            unreachable!()
        }
        async fn fetch_manifest(&self, _: &Digest) -> Result<Bytes, TransferError> {
            unreachable!()
        }
        async fn fetch_block(&self, d: &Digest) -> Result<Fetched, TransferError> {
            Ok(Fetched::identity(self.0[d].clone()))
        }
    }

    async fn place(m: &Manifest, blocks: &Blocks, cache: &FileCache, dest: &Path) {
        fetch_missing(blocks, m, cache, 2, &|_| {}).await.unwrap();
        let never = tokio_util::sync::CancellationToken::new();
        materialise(m, cache, dest, LinkMode::Auto, false, &never, &|_| {}).unwrap();
    }

    fn by_path(m: &Manifest) -> BTreeMap<String, Entry> {
        m.entries
            .iter()
            .map(|e| (e.path().as_str().to_string(), e.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_warmed_manifest_has_new_blocks_only_for_what_warm_up_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("lib")).unwrap();
        for (f, body) in [
            ("a.py", "a = 1\n"),
            ("b.py", "b = 1\n"),
            ("c.py", "c = 1\n"),
        ] {
            fs::write(src.join("lib").join(f), body).unwrap();
        }
        let base = pack(&src, &PackLimits::default()).unwrap();
        let mut blocks = Blocks::default();
        blocks.add(&base);
        let cache = FileCache::open(&tmp.path().join("cache")).unwrap();
        let root = tmp.path().join("rt");
        place(&base.manifest, &blocks, &cache, &root).await;
        assert_eq!(
            fs::metadata(root.join("lib/a.py")).unwrap().mtime(),
            MATERIALISED_MTIME
        );

        // Warm-up: bytecode beside a source, a source replaced, one removed.
        let lib = root.join("lib");
        fs::create_dir(lib.join("__pycache__")).unwrap();
        fs::write(lib.join("__pycache__/a.pyc"), b"bytecode").unwrap();
        fs::remove_file(lib.join("b.py")).unwrap();
        fs::write(lib.join("b.py"), "b = 2\n").unwrap();
        fs::set_permissions(lib.join("b.py"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::remove_file(lib.join("c.py")).unwrap();
        let inputs = WarmInputs::here(
            base.manifest.digest(),
            vec![vec!["w".into()]],
            BTreeMap::new(),
        );
        let by = WarmedBy {
            node: "a".into(),
            prewarm: "test".into(),
            inputs: inputs.clone(),
        };
        let scratch = tmp.path().join(".publish");
        let d = delta(&base.manifest, &cache, &root, &scratch, by.clone()).unwrap();

        let m = &d.manifest;
        assert_eq!(m.parent, Some(base.manifest.digest()));
        assert_eq!(m.warmed.as_ref(), Some(&by));
        assert_eq!(d.changed_files, 2);
        let (old, new) = (by_path(&base.manifest), by_path(m));
        assert_eq!(
            new["lib/a.py"], old["lib/a.py"],
            "unchanged: same entry, same blocks"
        );
        assert!(!new.contains_key("lib/c.py"));
        assert!(matches!(new["lib/__pycache__"], Entry::Dir { .. }));
        let new_blocks: std::collections::BTreeSet<Digest> = d
            .packed
            .as_ref()
            .unwrap()
            .blocks
            .iter()
            .map(|b| b.digest)
            .collect();
        for (path, e) in &new {
            if let Entry::File { chunks, .. } = e {
                let fresh = chunks.iter().all(|c| new_blocks.contains(&c.block));
                let expect_fresh = path == "lib/b.py" || path == "lib/__pycache__/a.pyc";
                assert_eq!(fresh, expect_fresh, "{path}");
            }
        }
        // Round trip: another node materialises the same tree from the old and new blocks.
        blocks.add(d.packed.as_ref().unwrap());
        let cache2 = FileCache::open(&tmp.path().join("cache2")).unwrap();
        let other = tmp.path().join("rt2");
        place(m, &blocks, &cache2, &other).await;
        assert_eq!(fs::read(other.join("lib/b.py")).unwrap(), b"b = 2\n");
        assert_eq!(
            fs::read(other.join("lib/__pycache__/a.pyc")).unwrap(),
            b"bytecode"
        );
        assert!(!other.join("lib/c.py").exists());
        for f in ["lib/a.py", "lib/b.py", "lib/__pycache__/a.pyc"] {
            assert_eq!(
                fs::metadata(other.join(f)).unwrap().mtime(),
                MATERIALISED_MTIME,
                "{f}"
            );
        }
        drop(d);
        assert!(!scratch.exists(), "the scratch links go with the delta");
    }
}
