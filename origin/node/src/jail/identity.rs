//! The unprivileged uid/gid every sandboxed process runs as, and the `setpriv` step that switches to it inside the jail.
//!
//! The node's cache files and sealed runtimes belong to the origin (root). A sandboxed process
//! that ran as root, even with every capability dropped, would own those inodes and could
//! `chmod u+w` and rewrite a file hard-linked into every runtime on the node. So sandboxed
//! processes run as a dedicated uid that owns nothing on the host: the kernel refuses it
//! every write and mode change on a shared inode, rather than a guard noticing afterwards.
//!
//! bubblewrap runs as root, without a user namespace, so it resolves and mounts host paths
//! with root's access whatever the modes of the data dir above the node. Its child is
//! util-linux `setpriv`, holding only `CAP_SETUID`, `CAP_SETGID` and `CAP_SETPCAP`: it sets
//! the sandbox uid, gid and no supplementary groups, empties the bounding and inheritable
//! capability sets, sets `no_new_privs` and execs the command, which starts with no
//! capabilities and cannot gain any. (A user namespace created by root would map the inside
//! uid to outside uid 0: still the owner of every file.)

use std::path::{Path, PathBuf};

/// The host uid and gid sandboxed processes run as. Pick ids that own nothing on the host
/// and that no other service or user runs as: every sandbox shares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxUser {
    pub uid: u32,
    pub gid: u32,
}

impl SandboxUser {
    /// 65533: in the range Debian reserves and never allocates (65000–65533), below `nobody`
    /// (65534, which other daemons run as), and within the 16-bit range a container's user
    /// namespace usually maps.
    pub const DEFAULT: SandboxUser = SandboxUser {
        uid: 65533,
        gid: 65533,
    };

    /// Refuses root: a sandbox running as uid or gid 0 would own the node's files.
    pub fn checked(self) -> Result<Self, &'static str> {
        match (self.uid, self.gid) {
            (0, _) => Err("the sandbox uid cannot be 0 (root owns the node's files)"),
            (_, 0) => Err("the sandbox gid cannot be 0 (root's group owns the node's files)"),
            _ => Ok(self),
        }
    }
}

impl Default for SandboxUser {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Capabilities the jail keeps for `setpriv` alone; it gives them up before the command runs.
pub(super) const SETPRIV_CAPS: &[&str] = &["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"];

/// `setpriv …` up to and including its `--`: switch to `user` for good, then exec the command.
pub(super) fn setpriv_args(setpriv: &Path, user: SandboxUser) -> Vec<String> {
    vec![
        setpriv.to_string_lossy().into_owned(),
        format!("--reuid={}", user.uid),
        format!("--regid={}", user.gid),
        "--clear-groups".into(),
        "--inh-caps=-all".into(),
        "--bounding-set=-all".into(),
        "--no-new-privs".into(),
        "--".into(),
    ]
}

/// Whether the sandbox sees `setpriv` at its host path without an extra bind: it sees `/usr`.
pub(super) fn setpriv_in_usr(setpriv: &Path) -> bool {
    setpriv.starts_with("/usr")
}

/// util-linux's `setpriv`: `$PREWARM_SETPRIV`, else `setpriv` on `PATH`; canonicalised, so a
/// `/bin/…` found through a merged-usr symlink is named by its path under `/usr`.
pub fn find_setpriv() -> Option<PathBuf> {
    super::bwrap::find_tool("PREWARM_SETPRIV", "setpriv").and_then(|p| p.canonicalize().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_refused_as_the_sandbox_user() {
        assert!(SandboxUser { uid: 0, gid: 7 }.checked().is_err());
        assert!(SandboxUser { uid: 7, gid: 0 }.checked().is_err());
        assert_eq!(
            SandboxUser::DEFAULT.checked(),
            Ok(SandboxUser {
                uid: 65533,
                gid: 65533
            })
        );
    }

    #[test]
    fn setpriv_switches_for_good_and_leaves_no_capability() {
        let a = setpriv_args(
            Path::new("/usr/bin/setpriv"),
            SandboxUser { uid: 7, gid: 8 },
        );
        assert_eq!(a[0], "/usr/bin/setpriv");
        for flag in [
            "--reuid=7",
            "--regid=8",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
        ] {
            assert!(a.iter().any(|x| x == flag), "{flag} missing: {a:?}");
        }
        assert_eq!(a.last().map(String::as_str), Some("--"));
        assert!(setpriv_in_usr(Path::new("/usr/bin/setpriv")));
        assert!(!setpriv_in_usr(Path::new("/opt/util-linux/setpriv")));
        assert!(!setpriv_in_usr(Path::new("/usrx/setpriv")));
    }
}
