//! Finding where this process's cgroup v1 hierarchies are mounted, from `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

/// One mounted cgroup v1 hierarchy: where it is mounted, the hierarchy path mounted there,
/// and its controllers (`cpu,cpuacct` when co-mounted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct V1Mount {
    pub(super) mount_point: PathBuf,
    pub(super) root: String,
    pub(super) controllers: Vec<String>,
}

/// The cgroup v1 mounts in a `/proc/self/mountinfo` text. A line is
/// `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER_OPTIONS`;
/// the controllers are among the super options.
pub(super) fn v1_mounts(mountinfo: &str) -> Vec<V1Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            if right.next()? != "cgroup" {
                return None;
            }
            let opts = right.nth(1)?;
            Some(V1Mount {
                root: unescape(left.get(3)?),
                mount_point: PathBuf::from(unescape(left.get(4)?)),
                controllers: opts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

/// Whether a `/proc/self/mountinfo` text has a cgroup v2 mount (the unified hierarchy).
pub(super) fn has_v2(mountinfo: &str) -> bool {
    mountinfo
        .lines()
        .filter_map(|l| l.split_once(" - "))
        .any(|(_, right)| right.starts_with("cgroup2 "))
}

/// This process's path in the v1 hierarchy holding `controller`, from a `/proc/self/cgroup`
/// text (`ID:CONTROLLERS:PATH` lines).
pub(super) fn own_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// The directory of this process's own cgroup for `controller`: the mount point plus its
/// path below the mounted root. `None` without such a mount, or when this process's cgroup
/// is outside the mounted part of the hierarchy.
pub(super) fn own_dir(mounts: &[V1Mount], proc_cgroup: &str, controller: &str) -> Option<PathBuf> {
    let m = mounts
        .iter()
        .find(|m| m.controllers.iter().any(|c| c == controller))?;
    let own = own_path(proc_cgroup, controller)?;
    let below = if m.root == "/" {
        own.as_str()
    } else {
        own.strip_prefix(m.root.as_str())?
    };
    let below = below.trim_start_matches('/');
    if Path::new(below)
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    Some(m.mount_point.join(below))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This host's: v1 controllers under a tmpfs, `cpu` and `cpuacct` apart, v2 alongside.
    const MOUNTINFO: &str = "\
25 1 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime shared:5 - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
28 25 0:26 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
29 25 0:27 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
30 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
31 25 0:29 /docker/abc /sys/fs/cgroup/my\\040blkio rw - cgroup cgroup rw,blkio,xattr
";
    const PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/docker/abc/inner
4:memory:/process_api/66fd
1:cpu:/
0::/
";

    #[test]
    fn finds_each_controllers_mount_and_this_process_in_it() {
        let m = v1_mounts(MOUNTINFO);
        assert_eq!(m.len(), 5, "{m:?}");
        assert_eq!(m[0].controllers, ["cpu"]);
        assert!(
            m[3].controllers.is_empty(),
            "named hierarchies have no controller"
        );
        assert!(has_v2(MOUNTINFO));
        assert_eq!(
            own_dir(&m, PROC_CGROUP, "memory"),
            Some("/sys/fs/cgroup/memory/process_api/66fd".into())
        );
        assert_eq!(
            own_dir(&m, PROC_CGROUP, "pids"),
            Some("/sys/fs/cgroup/pids".into())
        );
        // Mounted from /docker/abc; the process is below it.
        assert_eq!(
            own_dir(&m, PROC_CGROUP, "blkio"),
            Some("/sys/fs/cgroup/my blkio/inner".into())
        );
        assert_eq!(own_dir(&m, PROC_CGROUP, "freezer"), None);
        let outside = "7:blkio:/elsewhere\n";
        assert_eq!(own_dir(&m, outside, "blkio"), None);
    }

    #[test]
    fn co_mounted_controllers_share_a_line() {
        let mi = "26 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let m = v1_mounts(mi);
        assert_eq!(m[0].controllers, ["cpu", "cpuacct"]);
        let own = own_dir(&m, "3:cpu,cpuacct:/a/b\n", "cpu");
        assert_eq!(own, Some("/sys/fs/cgroup/cpu,cpuacct/a/b".into()));
        assert!(!has_v2(mi));
    }
}
