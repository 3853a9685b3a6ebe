//! Test fixtures for pull: a scriptable in-memory `Source`, a manifest builder, a tree reader.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use prewarm_shared::{Chunk, Digest, Entry, Manifest, RuntimeName, Tag};

use crate::pull::FileCache;
use crate::transfer::{Fetched, Source, TransferError};

/// Files up to this size share the bundle block; bigger ones are cut into blocks of this size.
const SMALL: usize = 64;

/// A node of a test tree: (path, content, mode), (path, mode), (path, target).
pub(super) enum Node {
    File(&'static str, Vec<u8>, u32),
    Dir(&'static str, u32),
    Link(&'static str, &'static str),
}

/// A manifest and the blocks that carry it.
pub(super) struct Built {
    pub(super) manifest: Manifest,
    pub(super) digest: Digest,
    pub(super) blocks: BTreeMap<Digest, Bytes>,
}

impl Built {
    /// The blocks file `path` is made of.
    pub(super) fn blocks_of(&self, path: &str) -> Vec<Digest> {
        let (_, _, _, chunks) = self
            .manifest
            .files()
            .find(|f| f.0.as_str() == path)
            .expect("no such file");
        chunks.iter().map(|c| c.block).collect()
    }
}

/// Small files go into one bundle block at increasing offsets; big files span several blocks.
pub(super) fn build(nodes: &[Node]) -> Built {
    let mut bundle = Vec::new();
    let mut blocks = BTreeMap::new();
    let mut entries = Vec::new();
    let mut small = Vec::new();
    for n in nodes {
        match n {
            Node::Dir(p, mode) => entries.push(Entry::Dir {
                path: p.parse().unwrap(),
                mode: *mode,
            }),
            Node::Link(p, target) => entries.push(Entry::Symlink {
                path: p.parse().unwrap(),
                target: target.to_string(),
            }),
            Node::File(p, bytes, mode) => {
                let chunks = if bytes.is_empty() {
                    Vec::new()
                } else if bytes.len() <= SMALL {
                    small.push(entries.len());
                    let offset = bundle.len() as u64;
                    bundle.extend_from_slice(bytes);
                    vec![Chunk {
                        block: Digest::of(b"placeholder"),
                        offset,
                        size: bytes.len() as u64,
                    }]
                } else {
                    bytes
                        .chunks(SMALL)
                        .map(|piece| {
                            let block = Digest::of(piece);
                            blocks.insert(block, Bytes::copy_from_slice(piece));
                            Chunk {
                                block,
                                offset: 0,
                                size: piece.len() as u64,
                            }
                        })
                        .collect()
                };
                entries.push(Entry::File {
                    path: p.parse().unwrap(),
                    mode: *mode,
                    size: bytes.len() as u64,
                    digest: Digest::of(bytes),
                    chunks,
                });
            }
        }
    }
    let bundle_digest = Digest::of(&bundle);
    for i in small {
        if let Entry::File { chunks, .. } = &mut entries[i] {
            chunks[0].block = bundle_digest;
        }
    }
    if !bundle.is_empty() {
        blocks.insert(bundle_digest, Bytes::from(bundle));
    }
    let manifest = Manifest::new(entries);
    manifest.validate().expect("test tree is valid");
    Built {
        digest: manifest.digest(),
        manifest,
        blocks,
    }
}

/// A `Source` over maps. It does NOT verify what it returns, so tests can check that pull does.
#[derive(Default)]
pub(super) struct FakeSource {
    manifests: Mutex<HashMap<Digest, Bytes>>,
    blocks: Mutex<HashMap<Digest, Bytes>>,
    tags: Mutex<HashMap<String, Digest>>,
    /// Blocks answered with `TransferError::Integrity`, as an honest source would.
    refused: Mutex<HashSet<Digest>>,
    fetched: Mutex<Vec<Digest>>,
}

impl FakeSource {
    /// Stores `built` and points `demo:<tag>` at it.
    pub(super) fn publish(&self, tag: &str, built: &Built) {
        let bytes = Bytes::from(built.manifest.to_canonical_json());
        self.manifests.lock().unwrap().insert(built.digest, bytes);
        self.blocks.lock().unwrap().extend(built.blocks.clone());
        self.tags
            .lock()
            .unwrap()
            .insert(format!("demo:{tag}"), built.digest);
    }

    /// Serves `bytes` under manifest digest `digest`, whatever they hash to.
    pub(super) fn put_manifest_raw(&self, digest: Digest, bytes: Vec<u8>) {
        self.manifests
            .lock()
            .unwrap()
            .insert(digest, Bytes::from(bytes));
    }

    /// Flips a byte of block `d`, silently (a source breaking its contract).
    pub(super) fn corrupt_block(&self, d: &Digest) {
        let mut blocks = self.blocks.lock().unwrap();
        let mut bytes = blocks[d].to_vec();
        bytes[0] ^= 0xff;
        blocks.insert(*d, Bytes::from(bytes));
    }

    /// Truncates block `d` to `len` bytes, silently.
    pub(super) fn truncate_block(&self, d: &Digest, len: usize) {
        let mut blocks = self.blocks.lock().unwrap();
        let short = blocks[d].slice(..len);
        blocks.insert(*d, short);
    }

    pub(super) fn refuse_block(&self, d: &Digest) {
        self.refused.lock().unwrap().insert(*d);
    }

    /// The blocks fetched since the last call, sorted.
    pub(super) fn take_fetched(&self) -> Vec<Digest> {
        let mut v = std::mem::take(&mut *self.fetched.lock().unwrap());
        v.sort();
        v
    }
}

fn not_found(what: String) -> TransferError {
    TransferError::NotFound {
        what,
        at: "fake".into(),
    }
}

#[async_trait::async_trait]
impl Source for FakeSource {
    fn location(&self) -> String {
        "fake".into()
    }

    async fn resolve_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Digest, TransferError> {
        let key = format!("{name}:{tag}");
        let found = self.tags.lock().unwrap().get(&key).copied();
        found.ok_or_else(|| not_found(format!("tag {key}")))
    }

    async fn fetch_manifest(&self, digest: &Digest) -> Result<Bytes, TransferError> {
        let found = self.manifests.lock().unwrap().get(digest).cloned();
        found.ok_or_else(|| not_found(format!("manifest {digest}")))
    }

    async fn fetch_block(&self, digest: &Digest) -> Result<Fetched, TransferError> {
        tokio::task::yield_now().await;
        self.fetched.lock().unwrap().push(*digest);
        if self.refused.lock().unwrap().contains(digest) {
            return Err(TransferError::Integrity {
                what: format!("block {digest}"),
                at: "fake".into(),
                expected: *digest,
                actual: Digest::of(b"something else"),
            });
        }
        let found = self.blocks.lock().unwrap().get(digest).cloned();
        found
            .map(Fetched::identity)
            .ok_or_else(|| not_found(format!("block {digest}")))
    }
}

/// What a path in a tree is, as a user would see it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Seen {
    File(Vec<u8>, u32),
    Dir(u32),
    Link(String),
}

/// Reads a tree on disk: path → what is there (modes as permission bits).
pub(super) fn read_tree(root: &Path) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let seen = if meta.is_symlink() {
            Seen::Link(fs::read_link(e.path()).unwrap().to_str().unwrap().into())
        } else if meta.is_dir() {
            Seen::Dir(mode)
        } else {
            Seen::File(fs::read(e.path()).unwrap(), mode)
        };
        out.insert(rel, seen);
    }
    out
}

/// The tree `nodes` should materialise as. With hard links, files show their cache mode.
pub(super) fn expected_tree(nodes: &[Node], exact_modes: bool) -> BTreeMap<String, Seen> {
    nodes
        .iter()
        .map(|n| match n {
            Node::File(p, b, m) => {
                let mode = if exact_modes {
                    *m
                } else {
                    FileCache::cache_mode(*m)
                };
                (p.to_string(), Seen::File(b.clone(), mode))
            }
            Node::Dir(p, m) => (p.to_string(), Seen::Dir(*m)),
            Node::Link(p, t) => (p.to_string(), Seen::Link(t.to_string())),
        })
        .collect()
}
