//! Outbound network for a sandbox that asks for it: its own network namespace, connected to the outside by slirp4netns, with no way to the host's loopback.
//!
//! bubblewrap unshares the network namespace as for any sandbox. Once it runs,
//! [`attach`] finds bubblewrap's child (the first process in the new namespace) and starts
//! `slirp4netns --configure --disable-host-loopback PID tap0` in the sandbox's cgroup: a user-space
//! NAT that gives the namespace `10.0.2.100/24`, a default route through `10.0.2.2` and DNS
//! at `10.0.2.3`, and makes every outbound connection from the host's namespace on the
//! sandbox's behalf. `--disable-host-loopback` refuses connections to the host's loopback
//! (`127.0.0.0/8`, and `10.0.2.2`, slirp's alias for it): the origin's Redis and API on
//! `127.0.0.1` are out of reach. The command itself waits, inside the jail, for the default
//! route ([`wait_for_route`]), so it never starts before its network does.
//!
//! What it does not do: filter destinations beyond loopback. The host's other addresses and
//! private networks stay reachable, so a service listening on `0.0.0.0` or on a private
//! address is reachable too; keeping those out needs a firewall rule on the host for
//! slirp4netns's connections (not done here).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cgroup::SandboxCgroup;

/// The interface slirp4netns creates in the sandbox.
const TAP: &str = "tap0";

/// Longest wait for bubblewrap's child to appear, and for the sandbox's route.
const PATIENCE: Duration = Duration::from_secs(10);

/// The address slirp gives the sandbox's resolver (its DNS forwarder).
pub const DNS: &str = "10.0.2.3";

/// The slirp4netns binary: `$PREWARM_SLIRP4NETNS`, else `slirp4netns` on `PATH`.
pub fn find_slirp4netns() -> Option<PathBuf> {
    super::bwrap::find_tool("PREWARM_SLIRP4NETNS", "slirp4netns")
}

/// `argv` run after the sandbox's default route through [`TAP`] exists: `/bin/sh` inside the
/// jail polls `/proc/net/route`, and gives up with status 125 after [`PATIENCE`].
pub fn wait_for_route(argv: &[String]) -> Vec<String> {
    let tries = PATIENCE.as_millis() / 10;
    let script = format!(
        "i=0; while ! grep -q '^{TAP}\t00000000' /proc/net/route; do i=$((i+1)); if [ $i -gt {tries} ]; then echo 'prewarm: the sandbox network did not come up' >&2; exit 125; fi; sleep 0.01; done; exec \"$@\""
    );
    let mut a = vec!["/bin/sh".to_string(), "-c".into(), script, "sh".into()];
    a.extend(argv.iter().cloned());
    a
}

/// Starts slirp4netns for the network namespace of bubblewrap `bwrap_pid`'s child, in
/// `cgroup`. The returned process runs until it is killed (it is killed when dropped).
pub async fn attach(
    slirp4netns: &Path,
    bwrap_pid: u32,
    cgroup: &SandboxCgroup,
) -> std::io::Result<tokio::process::Child> {
    let pid = tokio::task::spawn_blocking(move || namespace_pid(bwrap_pid))
        .await
        .map_err(std::io::Error::other)??;
    let join = cgroup.join_args();
    let mut c = match join.split_first() {
        Some((sh, rest)) => {
            let mut c = tokio::process::Command::new(sh);
            c.args(rest).arg(slirp4netns);
            c
        }
        None => tokio::process::Command::new(slirp4netns),
    };
    c.args([
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        &pid.to_string(),
        TAP,
    ])
    .env_clear()
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true);
    c.spawn()
}

/// The child of `bwrap_pid` in another network namespace than ours: the first process of
/// the sandbox. Polls until it appears.
fn namespace_pid(bwrap_pid: u32) -> std::io::Result<u32> {
    let ours = std::fs::read_link("/proc/self/ns/net")?;
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(pid) = children(bwrap_pid)
            .into_iter()
            .find(|p| std::fs::read_link(format!("/proc/{p}/ns/net")).is_ok_and(|ns| ns != ours))
        {
            return Ok(pid);
        }
        if Instant::now() > deadline || !Path::new(&format!("/proc/{bwrap_pid}")).exists() {
            return Err(std::io::Error::other(
                "bubblewrap's sandbox process did not appear",
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The pids whose parent is `pid`, from `/proc/*/stat`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| parent_of(&s))
                == Some(pid)
        })
        .collect()
}

/// The parent pid in a `/proc/PID/stat` line: the second field after the `(comm)`.
fn parent_of(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split(' ').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parent_even_when_the_name_has_spaces_and_parens() {
        assert_eq!(parent_of("42 (bwrap) S 41 42 42 0"), Some(41));
        assert_eq!(parent_of("42 (a) b (c) R 7 1"), Some(7));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn the_command_waits_for_the_route_then_runs_as_given() {
        let a = wait_for_route(&["python3".into(), "-c".into(), "print(1)".into()]);
        assert_eq!(a[..2], ["/bin/sh", "-c"]);
        assert!(a[2].contains("/proc/net/route") && a[2].contains("exec \"$@\""));
        assert_eq!(a[3..], ["sh", "python3", "-c", "print(1)"]);
    }

    #[test]
    fn finds_a_child_by_its_parent() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(children(me).contains(&child.id()));
        let _ = child.kill();
        let _ = child.wait();
    }
}
