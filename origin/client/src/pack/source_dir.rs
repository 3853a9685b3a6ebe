//! Reading a plain directory into the virtual tree: regular files, directories and symlinks only.
//!
//! File contents stay where they are; the tree records the source path and the chunk planner
//! and `read_block` read them from there (and notice if they changed meanwhile).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prewarm_shared::RelPath;

use super::tree::{Content, Node, Tree};
use super::{Budget, PackError};

/// Walks `src` (symlinks are recorded, never followed) into a tree.
pub(crate) fn read_dir(src: &Path, budget: &mut Budget) -> Result<Tree, PackError> {
    let origin = format!("directory {}", src.display());
    let err = |entry: &Path, reason: String| PackError::Entry {
        origin: origin.clone(),
        entry: entry.display().to_string(),
        reason,
    };
    let limit = |entry: &Path, (limit, max): (&'static str, u64)| PackError::Limit {
        origin: origin.clone(),
        entry: entry.display().to_string(),
        limit,
        max,
    };
    let mut tree = Tree::default();
    for item in walkdir::WalkDir::new(src).follow_links(false).min_depth(1) {
        let item = item.map_err(|e| {
            let at = e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| src.into());
            PackError::Io {
                context: format!("walking {}", at.display()),
                source: e.into(),
            }
        })?;
        let rel_os: PathBuf = item
            .path()
            .strip_prefix(src)
            .map(Path::to_path_buf)
            .map_err(|_| err(item.path(), "outside the source".into()))?;
        let rel = RelPath::try_from(rel_os.as_path()).map_err(|e| err(&rel_os, format!("{e}")))?;
        budget.entry().map_err(|hit| limit(&rel_os, hit))?;
        let md = item
            .metadata()
            .map_err(|e| PackError::io(format!("{}", item.path().display()))(e.into()))?;
        let ft = md.file_type();
        let mode = md.permissions().mode() & 0o777;
        let node = if ft.is_dir() {
            Node::Dir { mode }
        } else if ft.is_file() {
            budget.bytes(md.len()).map_err(|hit| limit(&rel_os, hit))?;
            Node::File {
                mode,
                size: md.len(),
                content: Content::Source(Arc::from(item.path())),
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(item.path())
                .map_err(PackError::io(format!("{}", item.path().display())))?;
            let target = target
                .to_str()
                .ok_or_else(|| err(&rel_os, "symlink target is not UTF-8".into()))?;
            if target.is_empty() || target.contains('\0') {
                return Err(err(&rel_os, "symlink target is empty".into()));
            }
            Node::Symlink {
                target: target.to_string(),
            }
        } else {
            let kind = if ft.is_fifo() {
                "a fifo"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device node"
            } else {
                "of an unknown type"
            };
            return Err(err(
                &rel_os,
                format!("is {kind}; only regular files, directories and symlinks can be packed"),
            ));
        };
        tree.insert(&rel, node).map_err(|r| err(&rel_os, r))?;
    }
    Ok(tree)
}
