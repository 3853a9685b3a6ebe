//! Materialised snapshot bases on this node: built once per snapshot (hard links from the file cache plus a metadata layer), pinned while clones use them, evicted least recently used.
//!
//! ```text
//! <node dir>/snapshots-v1/
//! ├── <manifest hex>/          a base, complete once `ready` exists
//! │   ├── data/                the snapshot's tree: hard links into the node's file cache
//! │   ├── meta/                metacopy layer: every entry the sandbox user's, manifest modes
//! │   └── ready                `overlay` or `copy`: how clones of this base are made
//! └── .build-<hex>-<rand>/     a base being built; renamed to <hex> when complete
//! ```

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use prewarm_client::pull::{fetch_missing, materialise, LinkMode};
use prewarm_shared::{Digest, Entry, Manifest};

use super::overlay::{build_meta, CloneKind};
use crate::jail::identity::SandboxUser;
use crate::warm::layout::remove_tree;
use crate::warm::Warmer;

/// Versioned name of the bases directory inside the node directory.
pub const BASES_DIR: &str = "snapshots-v1";

/// Each file's and directory's manifest mode, by path.
type Modes = Arc<HashMap<PathBuf, u32>>;

struct Known {
    pins: usize,
    last_used: Instant,
    bytes: u64,
    /// Once a clone has made or used it in this process: what the next clone needs without
    /// reading the manifest again (its runtime, how clones are made, the modes).
    ready: Option<(Digest, CloneKind, Modes)>,
}

/// The node's snapshot bases. Cheap to clone.
#[derive(Clone)]
pub struct Bases {
    root: PathBuf,
    known: Arc<Mutex<HashMap<Digest, Known>>>,
    /// One build at a time: a second create of the same snapshot waits, then finds it ready.
    building: Arc<tokio::sync::Mutex<()>>,
}

/// A base a clone uses; unpinned by [`Bases::unpin`] when the clone goes.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub digest: Digest,
    pub dir: PathBuf,
    pub kind: CloneKind,
    /// Each file's and directory's mode, for the copy fallback.
    pub modes: Arc<HashMap<PathBuf, u32>>,
}

/// Why a base could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error(transparent)]
    Pull(#[from] prewarm_client::pull::PullError),
    #[error("{action}: {source}")]
    Io {
        action: &'static str,
        source: io::Error,
    },
}

fn io_err(action: &'static str) -> impl FnOnce(io::Error) -> BaseError {
    move |source| BaseError::Io { action, source }
}

impl Bases {
    /// Opens `<node dir>/snapshots-v1`, keeping complete bases and removing half-built ones.
    /// Call after [`super::overlay::sweep_mounts`].
    pub fn open(node_dir: &Path) -> io::Result<Self> {
        let root = node_dir.join(BASES_DIR);
        std::fs::create_dir_all(&root)?;
        let mut known = HashMap::new();
        for e in std::fs::read_dir(&root)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{name}").parse::<Digest>().ok();
            match digest {
                Some(d) if e.path().join("ready").exists() => {
                    known.insert(
                        d,
                        Known {
                            pins: 0,
                            last_used: Instant::now(),
                            bytes: 0,
                            ready: None,
                        },
                    );
                }
                _ => remove_tree(&e.path()),
            }
        }
        Ok(Self {
            root,
            known: Arc::default(),
            building: Arc::default(),
        }
        .with_known(known))
    }

    fn with_known(self, k: HashMap<Digest, Known>) -> Self {
        *self.lock() = k;
        self
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bases on this node now.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Makes sure `manifest`'s base is on this node (fetching missing blocks into the file
    /// cache, linking, the metadata layer) and pins it.
    pub async fn ensure(
        &self,
        warmer: &Warmer,
        digest: Digest,
        manifest: Arc<Manifest>,
        user: SandboxUser,
    ) -> Result<Pinned, BaseError> {
        let modes: Arc<HashMap<PathBuf, u32>> = Arc::new(
            manifest
                .entries
                .iter()
                .filter_map(|e| match e {
                    Entry::File { path, mode, .. } | Entry::Dir { path, mode } => {
                        Some((PathBuf::from(path.as_str()), *mode))
                    }
                    Entry::Symlink { .. } => None,
                })
                .collect(),
        );
        let dir = self.root.join(digest.hex());
        let _one = self.building.lock().await;
        let built = !dir.join("ready").exists();
        if built {
            self.build(warmer, &digest, &manifest, &dir, user, modes.clone())
                .await?;
        }
        let kind = match std::fs::read_to_string(dir.join("ready")).as_deref() {
            Ok("overlay") => CloneKind::Overlay,
            _ => CloneKind::Copy,
        };
        {
            let mut k = self.lock();
            let e = k.entry(digest).or_insert(Known {
                pins: 0,
                last_used: Instant::now(),
                bytes: 0,
                ready: None,
            });
            e.pins += 1;
            e.last_used = Instant::now();
            e.bytes = manifest.bytes_total();
            e.ready = manifest.runtime.map(|r| (r, kind, modes.clone()));
        }
        if built {
            // Under the node's disk budget (the warm runtimes' figure), never a pinned base.
            let (me, budget) = (self.clone(), warmer.parts().cfg.disk_budget);
            let evicted = tokio::task::spawn_blocking(move || me.evict(budget))
                .await
                .unwrap_or(0);
            if evicted > 0 {
                tracing::info!(evicted, "snapshot bases evicted, least recently used first");
            }
        }
        Ok(Pinned {
            digest,
            dir,
            kind,
            modes,
        })
    }

    async fn build(
        &self,
        warmer: &Warmer,
        digest: &Digest,
        manifest: &Arc<Manifest>,
        dir: &Path,
        user: SandboxUser,
        modes: Arc<HashMap<PathBuf, u32>>,
    ) -> Result<(), BaseError> {
        let parts = warmer.parts();
        // Cache pruning must not take what we fetch before it is linked.
        let _gate = parts.cache_gate.read().await;
        fetch_missing(
            &*parts.source,
            manifest,
            &parts.cache,
            parts.cfg.fetch_concurrency,
            &|_| {},
        )
        .await?;
        let build = self.root.join(format!(
            ".build-{}-{:016x}",
            digest.hex(),
            rand::random::<u64>()
        ));
        let (m, cache, b, d) = (
            manifest.clone(),
            parts.cache.clone(),
            build.clone(),
            dir.to_path_buf(),
        );
        let res = tokio::task::spawn_blocking(move || {
            std::fs::create_dir(&b).map_err(io_err("creating a base"))?;
            let never = tokio_util::sync::CancellationToken::new();
            materialise(
                &m,
                &cache,
                &b.join("data"),
                LinkMode::Auto,
                false,
                &never,
                &|_| {},
            )?;
            let mode_of = |p: &Path| modes.get(p).copied();
            let overlay =
                build_meta(&b, user, &mode_of).map_err(io_err("building the metadata layer"))?;
            let kind = if overlay { "overlay" } else { "copy" };
            std::fs::write(b.join("ready"), kind).map_err(io_err("marking a base ready"))?;
            std::fs::rename(&b, &d).map_err(io_err("installing a base"))?;
            Ok::<(), BaseError>(())
        })
        .await
        .map_err(|e| BaseError::Io {
            action: "building a base",
            source: io::Error::other(e),
        })?;
        if res.is_err() {
            remove_tree(&build);
        }
        res
    }

    /// Pins `digest`'s base if this process already made or used it: a clone then costs no
    /// manifest read, only the mount. Returns the runtime it records.
    pub fn pin_ready(&self, digest: &Digest) -> Option<(Digest, Pinned)> {
        let dir = self.root.join(digest.hex());
        let mut k = self.lock();
        let e = k.get_mut(digest)?;
        let (runtime, kind, modes) = e.ready.clone()?;
        e.pins += 1;
        e.last_used = Instant::now();
        Some((
            runtime,
            Pinned {
                digest: *digest,
                dir,
                kind,
                modes,
            },
        ))
    }

    /// One clone stopped using `digest`'s base.
    pub fn unpin(&self, digest: &Digest) {
        if let Some(k) = self.lock().get_mut(digest) {
            k.pins = k.pins.saturating_sub(1);
            k.last_used = Instant::now();
        }
    }

    /// Removes unpinned bases, least recently used first, until the rest take at most
    /// `budget` bytes (as their manifests count them). Never a pinned one. Blocking.
    pub fn evict(&self, budget: u64) -> usize {
        let victims: Vec<Digest> = {
            let mut k = self.lock();
            let mut total: u64 = k.values().map(|e| e.bytes).sum();
            let mut idle: Vec<(Instant, Digest, u64)> = k
                .iter()
                .filter(|(_, e)| e.pins == 0)
                .map(|(d, e)| (e.last_used, *d, e.bytes))
                .collect();
            idle.sort();
            let mut out = Vec::new();
            for (_, d, bytes) in idle {
                if total <= budget {
                    break;
                }
                total -= bytes;
                k.remove(&d);
                out.push(d);
            }
            out
        };
        for d in &victims {
            remove_tree(&self.root.join(d.hex()));
        }
        victims.len()
    }
}
