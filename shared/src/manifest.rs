//! The snapshot manifest (`prewarm.snapshot.v1`): a runtime tree as files → blocks, in one canonical JSON form.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::pack::{LockFile, Meta};
use crate::path::RelPath;

/// The schema string every v1 manifest carries.
pub const SCHEMA: &str = "prewarm.snapshot.v1";

/// Where a piece of a file's bytes lives: `size` bytes at `offset` inside block `block`.
/// Big files span several content-defined blocks (offset 0 each); small files share one
/// bundle block at different offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    pub block: Digest,
    pub offset: u64,
    pub size: u64,
}

/// One node of the tree. Only permission bits (`mode & 0o777`) are recorded: setuid, setgid
/// and sticky bits never travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Entry {
    File {
        path: RelPath,
        mode: u32,
        size: u64,
        digest: Digest,
        chunks: Vec<Chunk>,
    },
    Dir {
        path: RelPath,
        mode: u32,
    },
    /// The target is kept verbatim, even if it points outside the tree: it is data, and no
    /// other entry may be written through it.
    Symlink {
        path: RelPath,
        target: String,
    },
}

impl Entry {
    pub fn path(&self) -> &RelPath {
        match self {
            Entry::File { path, .. } | Entry::Dir { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// A runtime snapshot. Its digest is the SHA-256 of [`Manifest::to_canonical_json`]; the same
/// tree yields the same bytes on every machine, whatever order a filesystem lists it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: String,
    /// The manifest this one was derived from (clones, new versions). Ancestry only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_key: Option<String>,
    /// Sorted by path (byte order), each path once; every parent is a `dir` entry.
    pub entries: Vec<Entry>,
    /// Set on a warmed runtime: who warmed `parent` and with which inputs. Absent on every
    /// other manifest, so their bytes and digests are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmed: Option<crate::warmed::WarmedBy>,
}

/// Why manifest bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for {SCHEMA}: {0}")]
    Json(String),
    #[error("manifest schema is {0:?}, expected {SCHEMA:?}")]
    Schema(String),
    #[error("manifest entries are not sorted and unique at {0:?}")]
    Order(String),
    #[error("entry {0:?}: its parent is not a directory in the manifest")]
    Orphan(String),
    #[error("entry {0:?}: mode {1:o} has bits beyond 0o777")]
    Mode(String, u32),
    #[error("file {0:?}: chunks add up to {1} bytes but size is {2}")]
    Size(String, u64, u64),
    #[error("symlink {0:?}: target is empty or contains NUL")]
    Target(String),
    #[error("manifest bytes are not in canonical form (compact JSON, fields in schema order)")]
    NotCanonical,
}

impl ManifestError {
    /// Stable machine code for API error bodies.
    pub fn code(&self) -> &'static str {
        "bad_manifest"
    }
}

impl Manifest {
    /// A manifest from entries in any order: sorts them, so filesystem order never leaks in.
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| {
            a.path()
                .as_str()
                .as_bytes()
                .cmp(b.path().as_str().as_bytes())
        });
        Self {
            schema: SCHEMA.to_string(),
            parent: None,
            meta: None,
            lock: None,
            pack_key: None,
            entries,
            warmed: None,
        }
    }

    /// The one byte form that is hashed and stored.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialisation cannot fail: all keys are strings")
    }

    pub fn digest(&self) -> Digest {
        Digest::of(&self.to_canonical_json())
    }

    /// Parses stored bytes: valid JSON, valid tree, and canonical (so one tree has one digest).
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        m.validate()?;
        if m.to_canonical_json() != bytes {
            return Err(ManifestError::NotCanonical);
        }
        Ok(m)
    }

    /// Checks the tree invariants that the type system cannot.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.schema != SCHEMA {
            return Err(ManifestError::Schema(self.schema.clone()));
        }
        let mut kinds: HashMap<&str, bool> = HashMap::with_capacity(self.entries.len());
        let mut prev: Option<&str> = None;
        for e in &self.entries {
            let p = e.path().as_str();
            if prev.is_some_and(|q| q.as_bytes() >= p.as_bytes()) {
                return Err(ManifestError::Order(p.to_string()));
            }
            prev = Some(p);
            if let Some(parent) = e.path().parent() {
                // Sorted order puts a parent before its children, so it is already known.
                if kinds.get(parent.as_str()) != Some(&true) {
                    return Err(ManifestError::Orphan(p.to_string()));
                }
            }
            match e {
                Entry::File {
                    mode, size, chunks, ..
                } => {
                    check_mode(p, *mode)?;
                    let sum: u64 = chunks.iter().map(|c| c.size).sum();
                    if sum != *size {
                        return Err(ManifestError::Size(p.to_string(), sum, *size));
                    }
                }
                Entry::Dir { mode, .. } => check_mode(p, *mode)?,
                Entry::Symlink { target, .. } => {
                    if target.is_empty() || target.contains('\0') {
                        return Err(ManifestError::Target(p.to_string()));
                    }
                }
            }
            kinds.insert(p, matches!(e, Entry::Dir { .. }));
        }
        Ok(())
    }

    /// Every distinct block the tree needs, sorted.
    pub fn blocks(&self) -> BTreeSet<Digest> {
        self.files()
            .flat_map(|(_, _, _, chunks)| chunks.iter().map(|c| c.block))
            .collect()
    }

    /// Regular files as `(path, mode, digest, chunks)`.
    pub fn files(&self) -> impl Iterator<Item = (&RelPath, u32, &Digest, &[Chunk])> {
        self.entries.iter().filter_map(|e| match e {
            Entry::File {
                path,
                mode,
                digest,
                chunks,
                ..
            } => Some((path, *mode, digest, chunks.as_slice())),
            _ => None,
        })
    }

    /// Total bytes of regular files.
    pub fn bytes_total(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| {
                if let Entry::File { size, .. } = e {
                    *size
                } else {
                    0
                }
            })
            .sum()
    }
}

fn check_mode(path: &str, mode: u32) -> Result<(), ManifestError> {
    if mode & !0o777 != 0 {
        return Err(ManifestError::Mode(path.to_string(), mode));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        s.parse().unwrap()
    }

    /// The fixed small tree from docs/FORMAT.md.
    pub(crate) fn vector_tree() -> Manifest {
        let hello = b"hello prewarm\n";
        let block = Digest::of(hello);
        Manifest::new(vec![
            Entry::Symlink {
                path: p("bin/py"),
                target: "../lib/hello.txt".into(),
            },
            Entry::File {
                path: p("lib/hello.txt"),
                mode: 0o644,
                size: hello.len() as u64,
                digest: Digest::of(hello),
                chunks: vec![Chunk {
                    block,
                    offset: 0,
                    size: hello.len() as u64,
                }],
            },
            Entry::Dir {
                path: p("lib"),
                mode: 0o755,
            },
            Entry::Dir {
                path: p("bin"),
                mode: 0o755,
            },
            Entry::Dir {
                path: p("empty"),
                mode: 0o700,
            },
        ])
    }

    #[test]
    fn known_tree_known_digest() {
        let m = vector_tree();
        let json = String::from_utf8(m.to_canonical_json()).unwrap();
        assert_eq!(
            json,
            r#"{"schema":"prewarm.snapshot.v1","entries":[{"type":"dir","path":"bin","mode":493},{"type":"symlink","path":"bin/py","target":"../lib/hello.txt"},{"type":"dir","path":"empty","mode":448},{"type":"dir","path":"lib","mode":493},{"type":"file","path":"lib/hello.txt","mode":420,"size":14,"digest":"sha256:7126e9632a8c613c0f4392c9680bebfdfb6fb92c188fd9b40c2d841a0477b8f1","chunks":[{"block":"sha256:7126e9632a8c613c0f4392c9680bebfdfb6fb92c188fd9b40c2d841a0477b8f1","offset":0,"size":14}]}]}"#
        );
        assert_eq!(
            m.digest().to_string(),
            "sha256:a0003ad6a4ae825fd0938f7686171dc3040ca3f96598c9f7c41d6cef733f34a6"
        );
    }

    #[test]
    fn order_independent_and_round_trips() {
        let mut shuffled = vector_tree().entries;
        shuffled.reverse();
        assert_eq!(Manifest::new(shuffled).digest(), vector_tree().digest());
        let bytes = vector_tree().to_canonical_json();
        assert_eq!(Manifest::parse(&bytes).unwrap(), vector_tree());
        assert_eq!(vector_tree().blocks().len(), 1);
    }

    #[test]
    fn refuses_bad_trees() {
        let mut m = vector_tree();
        m.entries.swap(2, 3);
        assert!(matches!(m.validate(), Err(ManifestError::Order(_))));

        let mut m = vector_tree();
        m.entries.retain(|e| e.path().as_str() != "lib");
        assert!(matches!(m.validate(), Err(ManifestError::Orphan(_))));

        // Writing beneath a symlink is an orphan: its parent is not a directory.
        let mut m = vector_tree();
        m.entries.push(Entry::Dir {
            path: p("bin/py/x"),
            mode: 0o755,
        });
        let m = Manifest::new(m.entries);
        assert!(matches!(m.validate(), Err(ManifestError::Orphan(_))));

        let mut m = vector_tree();
        if let Entry::File { size, .. } = &mut m.entries[4] {
            *size += 1;
        }
        assert!(matches!(m.validate(), Err(ManifestError::Size(..))));

        let mut json = String::from_utf8(vector_tree().to_canonical_json()).unwrap();
        json.push(' ');
        assert_eq!(
            Manifest::parse(json.as_bytes()),
            Err(ManifestError::NotCanonical)
        );
        let bad = json.replace("\"path\":\"lib\"", "\"path\":\"../lib\"");
        assert!(matches!(
            Manifest::parse(bad.as_bytes()),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            Manifest::parse(b"{\"schema\":\"other\",\"entries\":[]}"),
            Err(ManifestError::Schema(_))
        ));
    }
}
