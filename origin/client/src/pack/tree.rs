//! The virtual tree layers are applied to, with the rules that keep a hostile layer inside it.
//!
//! Nothing here touches the filesystem: a path is a key, so an archive name can never become a
//! real path. The invariants: every node's ancestors are directories (a write beneath a symlink
//! or a file is refused, never followed), and each node remembers the layer that last touched
//! it, so whiteouts hide only what lower layers put there.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use prewarm_shared::{Digest, Entry, RelPath};

/// Mode given to parent directories a layer implies but does not list.
pub(crate) const SYNTH_DIR_MODE: u32 = 0o755;

/// Where a regular file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    /// In the unpack stash, under its digest.
    Stash(Digest),
    /// A file of a plain-directory source.
    Source(Arc<Path>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        size: u64,
        content: Content,
    },
    Symlink {
        target: String,
    },
}

#[derive(Debug)]
struct Slot {
    node: Node,
    /// The layer that created or last touched this node.
    layer: usize,
}

/// What [`Tree::subtree`] left out: counted, and the top-level names it lay under (sorted).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outside {
    pub entries: u64,
    /// Bytes of regular files.
    pub bytes: u64,
    pub top: Vec<String>,
}

/// A regular file of the final tree, for the chunk planner.
#[derive(Debug)]
pub(crate) struct FileNode {
    pub(crate) path: RelPath,
    pub(crate) mode: u32,
    pub(crate) size: u64,
    pub(crate) content: Content,
}

/// path → node, keyed by the path's string so that a subtree is one contiguous range.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    nodes: BTreeMap<String, Slot>,
    layer: usize,
}

impl Tree {
    /// Subsequent changes belong to layer `layer` (layers are applied in increasing order).
    pub(crate) fn set_layer(&mut self, layer: usize) {
        self.layer = layer;
    }

    pub(crate) fn get(&self, path: &RelPath) -> Option<&Node> {
        self.nodes.get(path.as_str()).map(|s| &s.node)
    }

    /// Refuses `path` if any ancestor is a symlink or a regular file: writing there would
    /// mean following a link (the classic escape) or silently replacing a file by a directory.
    pub(crate) fn check_parents(&self, path: &RelPath) -> Result<(), String> {
        for a in path.ancestors() {
            match self.nodes.get(a.as_str()).map(|s| &s.node) {
                Some(Node::Symlink { target }) => {
                    return Err(format!(
                    "lies beneath symlink {:?} (→ {target:?}); writing through a link is refused",
                    a.as_str()
                ))
                }
                Some(Node::File { .. }) => {
                    return Err(format!("lies beneath regular file {:?}", a.as_str()))
                }
                Some(Node::Dir { .. }) | None => {}
            }
        }
        Ok(())
    }

    /// Creates missing ancestors (mode 0755) and marks existing ones as touched by this layer.
    fn ensure_parents(&mut self, path: &RelPath) -> Result<(), String> {
        self.check_parents(path)?;
        for a in path.ancestors() {
            let slot = self.nodes.entry(a.as_str().to_string()).or_insert(Slot {
                node: Node::Dir {
                    mode: SYNTH_DIR_MODE,
                },
                layer: self.layer,
            });
            slot.layer = self.layer;
        }
        Ok(())
    }

    /// Adds or replaces `path`. A directory over a directory keeps its children (tar merges
    /// them); anything else replaces the old node and its whole subtree.
    pub(crate) fn insert(&mut self, path: &RelPath, node: Node) -> Result<(), String> {
        self.ensure_parents(path)?;
        let keep_children = matches!(
            (self.get(path), &node),
            (Some(Node::Dir { .. }), Node::Dir { .. })
        );
        if !keep_children {
            self.remove_below(path.as_str(), usize::MAX);
        }
        self.nodes.insert(
            path.as_str().to_string(),
            Slot {
                node,
                layer: self.layer,
            },
        );
        Ok(())
    }

    /// A tar hard link: a copy of the content reference of an existing regular file.
    pub(crate) fn hard_link(&mut self, path: &RelPath, target: &RelPath) -> Result<u64, String> {
        let node = match self.get(target) {
            Some(n @ Node::File { .. }) => n.clone(),
            Some(_) => {
                return Err(format!(
                    "hard link target {:?} is not a regular file",
                    target.as_str()
                ))
            }
            None => {
                return Err(format!(
                    "hard link target {:?} is not an earlier regular file of the tree",
                    target.as_str()
                ))
            }
        };
        let size = match node {
            Node::File { size, .. } => size,
            _ => 0,
        };
        self.insert(path, node)?;
        Ok(size)
    }

    /// `.wh.NAME`: hides `path` and everything beneath it that lower layers put there.
    pub(crate) fn whiteout(&mut self, path: &RelPath) -> Result<(), String> {
        self.check_parents(path)?;
        let below = self.layer;
        if self
            .nodes
            .get(path.as_str())
            .is_some_and(|s| s.layer < below)
        {
            self.nodes.remove(path.as_str());
        }
        self.remove_below(path.as_str(), below);
        Ok(())
    }

    /// `.wh..wh..opq` in `dir` (`None`: the root): hides what lower layers put beneath it.
    pub(crate) fn opaque(&mut self, dir: Option<&RelPath>) -> Result<(), String> {
        let below = self.layer;
        match dir {
            Some(d) => {
                self.check_parents(d)?;
                if matches!(self.get(d), Some(Node::Symlink { .. } | Node::File { .. })) {
                    return Err(format!(
                        "opaque marker inside non-directory {:?}",
                        d.as_str()
                    ));
                }
                self.insert_dir_if_missing(d)?;
                self.remove_below(d.as_str(), below);
            }
            None => self.nodes.retain(|_, s| s.layer >= below),
        }
        Ok(())
    }

    fn insert_dir_if_missing(&mut self, d: &RelPath) -> Result<(), String> {
        self.ensure_parents(d)?;
        let layer = self.layer;
        let slot = self.nodes.entry(d.as_str().to_string()).or_insert(Slot {
            node: Node::Dir {
                mode: SYNTH_DIR_MODE,
            },
            layer,
        });
        slot.layer = layer;
        Ok(())
    }

    /// Removes the strict descendants of `path` whose layer is below `below`.
    fn remove_below(&mut self, path: &str, below: usize) {
        let lo = format!("{path}/");
        // '0' is the byte after '/', so [lo, hi) is exactly the subtree.
        let hi = format!("{path}0");
        let doomed: Vec<String> = self
            .nodes
            .range::<str, _>((Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str())))
            .filter(|(_, s)| s.layer < below)
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    /// The subtree at `root` as a tree of its own (paths relative to `root`), and what lay
    /// outside it. `root` must be a directory of this tree.
    pub(crate) fn subtree(self, root: &RelPath) -> Result<(Tree, Outside), String> {
        match self.get(root) {
            Some(Node::Dir { .. }) => {}
            Some(Node::File { .. }) => {
                return Err(format!("{:?} is a regular file", root.as_str()))
            }
            Some(Node::Symlink { target }) => {
                return Err(format!(
                    "{:?} is a symlink (→ {target:?}); name the directory it points to",
                    root.as_str()
                ))
            }
            None => return Err(format!("{:?} does not exist", root.as_str())),
        }
        let lo = format!("{}/", root.as_str());
        let mut inner = Tree {
            nodes: BTreeMap::new(),
            layer: self.layer,
        };
        let mut outside = Outside::default();
        for (k, slot) in self.nodes {
            if let Some(rest) = k.strip_prefix(&lo) {
                inner.nodes.insert(rest.to_string(), slot);
                continue;
            }
            if k == root.as_str() || root.as_str().starts_with(&format!("{k}/")) {
                continue;
            }
            outside.entries += 1;
            if let Node::File { size, .. } = slot.node {
                outside.bytes += size;
            }
            let top = k.split('/').next().unwrap_or(&k).to_string();
            if !outside.top.contains(&top) {
                outside.top.push(top);
            }
        }
        Ok((inner, outside))
    }

    /// Splits the final tree into directory/symlink entries and regular files (path order).
    pub(crate) fn into_parts(self) -> (Vec<Entry>, Vec<FileNode>) {
        let mut entries = Vec::new();
        let mut files = Vec::new();
        for (k, slot) in self.nodes {
            // Keys were RelPaths when inserted.
            let Ok(path) = k.parse::<RelPath>() else {
                continue;
            };
            match slot.node {
                Node::Dir { mode } => entries.push(Entry::Dir { path, mode }),
                Node::Symlink { target } => entries.push(Entry::Symlink { path, target }),
                Node::File {
                    mode,
                    size,
                    content,
                } => files.push(FileNode {
                    path,
                    mode,
                    size,
                    content,
                }),
            }
        }
        (entries, files)
    }
}
