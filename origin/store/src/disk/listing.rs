//! The disk store's listings for garbage collection: objects with their mtime (a put renames a fresh file into place), and tags.

use std::path::Path;

use prewarm_shared::{Digest, RuntimeName, Tag};

use super::verify::list;
use super::{err, DiskStore};
use crate::listing::digest_from_hex;
use crate::{Kind, Listed, StoreError, TagEntry};

impl DiskStore {
    /// Every object file of `kind` whose name is a digest in its fan-out directory. Anything
    /// else there (strays, damage) is left to `prewarm store verify`.
    pub(super) async fn list_objects(&self, kind: Kind) -> Result<Vec<Listed>, StoreError> {
        let top = self.kind_dir(kind);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for first in list(&top).map_err(err)? {
                for second in list(&first).map_err(err)? {
                    for file in list(&second).map_err(err)? {
                        out.extend(listed(&file).map_err(err)?);
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::other(super::NAME, e))?
    }

    /// Every `tags-v1/<name>/<tag>` file; one that does not parse is an error.
    pub(super) async fn list_tag_files(&self) -> Result<Vec<TagEntry>, StoreError> {
        let top = self.root.join("tags-v1");
        let mut out = Vec::new();
        let names = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            for dir in list(&top)? {
                for file in list(&dir)? {
                    v.push(file);
                }
            }
            Ok::<_, std::io::Error>(v)
        })
        .await
        .map_err(|e| StoreError::other(super::NAME, e))?
        .map_err(err)?;
        for file in names {
            let (Some(tag), Some(name)) = (
                file.file_name().and_then(|n| n.to_str()),
                file.parent()
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str()),
            ) else {
                continue;
            };
            let bad = |what: String| {
                StoreError::other(super::NAME, format!("tag file {}: {what}", file.display()))
            };
            let name: RuntimeName = name.parse().map_err(|e| bad(format!("{e}")))?;
            let tag: Tag = tag.parse().map_err(|e| bad(format!("{e}")))?;
            let Some(digest) = crate::TagStore::get_tag(self, &name, &tag).await? else {
                continue;
            };
            out.push(TagEntry { name, tag, digest });
        }
        Ok(out)
    }

    /// Moves the object's file into `quarantine-v1/`, whatever its bytes are now.
    pub(super) fn quarantine_object(&self, kind: Kind, digest: &Digest) {
        let path = self.object_path(kind, digest);
        self.quarantine(&path, None, super::Damage::HashMismatch);
    }
}

/// A listing entry for `file`, if it is a regular file named by a digest.
fn listed(file: &Path) -> std::io::Result<Option<Listed>> {
    let Some(digest) = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(digest_from_hex)
    else {
        return Ok(None);
    };
    let m = match std::fs::symlink_metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !m.is_file() {
        return Ok(None);
    }
    Ok(Some(Listed {
        digest,
        size: m.len(),
        written: m.modified()?,
    }))
}
