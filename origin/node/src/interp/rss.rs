//! Resident memory of an idle interpreter, measured from the host (`/proc/<pid>/status` of every process in its cgroup).

use crate::jail::cgroup::SandboxCgroup;

/// The resident set of every process in `cgroup` (the interpreter, bubblewrap and its init),
/// from the host's `/proc`: what the sandbox cannot misreport. `None` without a cgroup to
/// list (then only the driver's own figure is left).
pub fn rss_of(cgroup: &SandboxCgroup) -> Option<u64> {
    let pids = cgroup.procs();
    if pids.is_empty() {
        return None;
    }
    Some(
        pids.iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|s| vm_rss(&s))
            .sum(),
    )
}

/// `VmRSS:` of a `/proc/<pid>/status`, in bytes.
fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_in_bytes() {
        let status = "Name:\tpython3\nVmPeak:\t  20000 kB\nVmRSS:\t   11736 kB\nThreads:\t2\n";
        assert_eq!(vm_rss(status), Some(11736 * 1024));
        assert_eq!(vm_rss("Name:\tkthreadd\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_rss(&own).unwrap() > 0);
    }
}
