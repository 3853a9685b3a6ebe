//! Outbound network for a sandbox that asks for it: its own network namespace, connected to the outside by slirp4netns, with no way to the host or to private networks.
//!
//! bubblewrap unshares the network namespace as for any sandbox. Once it runs, [`attach`]
//! finds bubblewrap's child (the first process in the new namespace) and starts
//! `slirp4netns --disable-host-loopback PID tap0` in the sandbox's cgroup: a user-space NAT
//! that makes every outbound connection from the host's namespace on the sandbox's behalf,
//! with DNS at `10.0.2.3`. `--disable-host-loopback` refuses connections to the host's
//! loopback (`127.0.0.0/8`, and `10.0.2.2`, slirp's alias for it).
//!
//! The origin then configures the namespace from the host's side (`nsenter --net` + `ip
//! -batch`, see [`filter`]): the address `10.0.2.100/24`, an `unreachable` route for each
//! private or reserved range and for each of the host's own addresses (so the origin's API
//! and Redis on a LAN address, other private machines and the cloud metadata service are out
//! of reach), and last the default route through slirp. The command itself waits, inside the
//! jail, for that default route ([`wait_for_route`]), so it never starts before its network,
//! nor before the filter. It holds no capability, so it cannot change the routes.

pub mod filter;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::cgroup::SandboxCgroup;
pub use filter::{CidrList, NetFilter};

/// The interface slirp4netns creates in the sandbox.
const TAP: &str = "tap0";

/// The sandbox interface's MTU (slirp4netns's recommended value for throughput).
const MTU: u32 = 65520;

/// Longest wait for bubblewrap's child to appear, for the tap device, and for the route.
const PATIENCE: Duration = Duration::from_secs(10);

/// The address slirp gives the sandbox's resolver (its DNS forwarder).
pub const DNS: &str = "10.0.2.3";

/// The host tools that give a sandbox its network, and what it may reach. Found once at
/// start: a node without all three gives no sandbox network.
#[derive(Debug, Clone)]
pub struct NetTools {
    pub slirp4netns: PathBuf,
    /// util-linux `nsenter`, to configure the sandbox's namespace from the host's side.
    pub nsenter: PathBuf,
    /// iproute2 `ip`.
    pub ip: PathBuf,
    pub filter: NetFilter,
}

impl NetTools {
    /// The tools on this host: `$PREWARM_SLIRP4NETNS`, `$PREWARM_NSENTER` and `$PREWARM_IP`,
    /// else each on `PATH`. `Err` names what is missing.
    pub fn find(filter: NetFilter) -> Result<NetTools, &'static str> {
        let find = super::bwrap::find_tool;
        Ok(NetTools {
            slirp4netns: find("PREWARM_SLIRP4NETNS", "slirp4netns").ok_or("slirp4netns")?,
            nsenter: find("PREWARM_NSENTER", "nsenter").ok_or("nsenter (util-linux)")?,
            ip: find("PREWARM_IP", "ip").ok_or("ip (iproute2)")?,
            filter,
        })
    }
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
/// `cgroup`, and configures the namespace with `net`'s filter. The returned process runs
/// until it is killed (it is killed when dropped).
pub async fn attach(
    net: &NetTools,
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
            c.args(rest).arg(&net.slirp4netns);
            c
        }
        None => tokio::process::Command::new(&net.slirp4netns),
    };
    c.args([
        &format!("--mtu={MTU}"),
        "--disable-host-loopback",
        &pid.to_string(),
        TAP,
    ])
    .env_clear()
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    let mut slirp = c.spawn()?;
    wait_for_tap(pid, &mut slirp).await?;
    configure(net, pid).await?;
    Ok(slirp)
}

/// Waits until slirp4netns has made [`TAP`] in `pid`'s namespace (`/proc/PID/net/dev`).
async fn wait_for_tap(pid: u32, slirp: &mut tokio::process::Child) -> std::io::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    let dev = format!("/proc/{pid}/net/dev");
    loop {
        let text = tokio::fs::read_to_string(&dev).await?;
        if text
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{TAP}:")))
        {
            return Ok(());
        }
        if let Some(status) = slirp.try_wait()? {
            return Err(std::io::Error::other(format!(
                "slirp4netns ended ({status}) before it made {TAP}"
            )));
        }
        if Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "slirp4netns made no {TAP} in {PATIENCE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Reads the host's addresses, then runs the filter's `ip -batch` script in `pid`'s network
/// namespace. Any failure is an error: a sandbox never runs with half a filter.
async fn configure(net: &NetTools, pid: u32) -> std::io::Result<()> {
    let out = tokio::process::Command::new(&net.ip)
        .args(["-json", "-4", "addr", "show"])
        .stdin(Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "`ip addr show` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let host = filter::host_addresses(&out.stdout)
        .map_err(|e| std::io::Error::other(format!("reading `ip -json addr show`: {e}")))?;
    let script = net.filter.script(TAP, MTU, &host);
    let mut child = tokio::process::Command::new(&net.nsenter)
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .arg(&net.ip)
        .args(["-batch", "-"])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(script.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "configuring the sandbox network ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
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
