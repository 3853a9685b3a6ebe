//! The command line every sandboxed process (warm commands and exec) runs under: joining the sandbox's cgroup, `prlimit` for resource limits, then bubblewrap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prewarm_shared::sandbox::WORKSPACE_DIR;

use super::cgroup::SandboxCgroup;
use super::limits::ResourceLimits;

/// Host paths a sandbox sees read-only when they exist: the OS (`/usr`, with the merged-usr
/// symlinks) and the few files in `/etc` that dynamic linking, time zones and TLS need.
/// Nothing under the node dir: no cache, no other runtime, no other workspace.
const RO_ETC: &[&str] = &[
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
];
/// Only with `network: true`: name resolution (`/etc/resolv.conf` is the sandbox's own, see
/// [`Jail::resolv_conf`]).
const RO_ETC_NET: &[&str] = &["/etc/hosts", "/etc/nsswitch.conf"];

/// Default `PATH` when the runtime's env has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How one sandboxed process is confined.
///
/// Always: every namespace unshared (`--unshare-all`: user, ipc, pid, net, uts, cgroup),
/// `--die-with-parent` (killing the origin kills the tree), `--new-session`, all capabilities
/// dropped (so uid 0 inside cannot override file modes), a clean environment, a private
/// `/tmp`, `/proc` and `/dev`. The runtime is bound at its prefix, read-only unless
/// `runtime_writable` (warm-up only). Under `limits`, set by `prlimit` before it execs bwrap.
#[derive(Debug, Clone)]
pub struct Jail {
    pub bwrap: PathBuf,
    pub prlimit: PathBuf,
    pub limits: ResourceLimits,
    pub runtime: PathBuf,
    pub prefix: String,
    pub runtime_writable: bool,
    /// Bound read-write at [`WORKSPACE_DIR`] and made the working directory; else `/tmp`.
    pub workspace: Option<PathBuf>,
    /// Outbound network: the sandbox still gets a network namespace of its own, which
    /// [`super::net::attach`] connects once bwrap runs; the command waits for it.
    pub network: bool,
    /// With `network`: the file bound at `/etc/resolv.conf` (naming slirp's DNS forwarder).
    pub resolv_conf: Option<PathBuf>,
    /// The complete environment (nothing is inherited from the origin).
    pub env: BTreeMap<String, String>,
    /// The cgroup the command joins before anything else runs (none: no sandbox-wide limits).
    pub cgroup: SandboxCgroup,
}

impl Jail {
    /// `[sh -c JOIN… --] prlimit LIMITS… -- bwrap ARGS… -- argv…`, ready to spawn (the shell
    /// joins the cgroup and execs prlimit, which execs bwrap: one process). Its own process
    /// group, so a timeout can kill everything it started.
    pub fn command(&self, argv: &[String]) -> tokio::process::Command {
        let join = self.cgroup.join_args();
        let mut c = match join.split_first() {
            Some((sh, rest)) => {
                let mut c = tokio::process::Command::new(sh);
                c.args(rest).arg(&self.prlimit);
                c
            }
            None => tokio::process::Command::new(&self.prlimit),
        };
        c.args(self.limits.prlimit_args())
            .arg("--")
            .arg(&self.bwrap)
            .args(self.args())
            .arg("--");
        if self.network {
            c.args(super::net::wait_for_route(argv));
        } else {
            c.args(argv);
        }
        c.env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        c
    }

    fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::with_capacity(64);
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&["--ro-bind", "/usr", "/usr"]);
        for (link, target) in [
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
        ] {
            if Path::new(link).exists() {
                push(&["--symlink", target, link]);
            }
        }
        let etc = RO_ETC
            .iter()
            .chain(if self.network { RO_ETC_NET } else { &[] });
        for p in etc {
            push(&["--ro-bind-try", p, p]);
        }
        if let (true, Some(resolv)) = (self.network, &self.resolv_conf) {
            push(&["--ro-bind", &resolv.to_string_lossy(), "/etc/resolv.conf"]);
        }
        push(&["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        // Network or not, the sandbox's network namespace is its own.
        push(&["--unshare-all"]);
        push(&[
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            "sandbox",
            "--clearenv",
        ]);
        let runtime = self.runtime.to_string_lossy();
        let bind = if self.runtime_writable {
            "--bind"
        } else {
            "--ro-bind"
        };
        push(&[bind, &runtime, &self.prefix]);
        match &self.workspace {
            Some(ws) => {
                let ws = ws.to_string_lossy();
                push(&["--bind", &ws, WORKSPACE_DIR, "--chdir", WORKSPACE_DIR]);
            }
            None => push(&["--chdir", "/tmp"]),
        }
        let home = if self.workspace.is_some() {
            WORKSPACE_DIR
        } else {
            "/tmp"
        };
        let mut env = self.env.clone();
        env.entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        env.entry("HOME".into()).or_insert_with(|| home.into());
        for (k, v) in &env {
            push(&["--setenv", k, v]);
        }
        a
    }
}

/// Checks an environment map before it reaches a command line: keys non-empty without `=`
/// or NUL, values without NUL. Returns the offending key.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<(), String> {
    match env
        .iter()
        .find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
    {
        Some((k, _)) => Err(k.clone()),
        None => Ok(()),
    }
}

/// The `bwrap` binary: `$PREWARM_BWRAP`, else `bwrap` on `PATH`.
pub fn find_bwrap() -> Option<PathBuf> {
    find_tool("PREWARM_BWRAP", "bwrap")
}

/// util-linux's `prlimit`: `$PREWARM_PRLIMIT`, else `prlimit` on `PATH`.
pub fn find_prlimit() -> Option<PathBuf> {
    find_tool("PREWARM_PRLIMIT", "prlimit")
}

/// `$VAR` if set (and a file), else `NAME` in a directory of `PATH`.
pub(super) fn find_tool(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail(network: bool, runtime_writable: bool) -> Vec<String> {
        jail_of(network, runtime_writable).args()
    }

    fn jail_of(network: bool, runtime_writable: bool) -> Jail {
        Jail {
            bwrap: "bwrap".into(),
            prlimit: "prlimit".into(),
            limits: ResourceLimits::default(),
            runtime: "/node/runtimes/abc".into(),
            prefix: "/opt/rt".into(),
            runtime_writable,
            workspace: Some("/node/sandboxes/sb-1/workspace".into()),
            network,
            resolv_conf: Some("/node/sandboxes/sb-1/resolv.conf".into()),
            env: BTreeMap::from([("A".into(), "1".into())]),
            cgroup: SandboxCgroup::default(),
        }
    }

    /// Where `seq` first appears in `a`.
    fn find(a: &[String], seq: &[&str]) -> Option<usize> {
        a.windows(seq.len()).position(|w| w == seq)
    }

    #[test]
    fn network_is_never_the_hosts_and_resolves_through_slirp_when_asked_for() {
        let resolv = [
            "--ro-bind",
            "/node/sandboxes/sb-1/resolv.conf",
            "/etc/resolv.conf",
        ];
        let off = jail(false, false);
        assert!(find(&off, &["--unshare-all"]).is_some());
        assert!(find(&off, &["--share-net"]).is_none());
        assert!(find(&off, &resolv).is_none());
        let on = jail(true, false);
        assert!(find(&on, &["--unshare-all"]).is_some());
        assert!(find(&on, &["--share-net"]).is_none());
        assert!(find(&on, &resolv).is_some());
        // The command waits for the network inside the jail.
        let cmd = jail_of(true, false).command(&["true".into()]);
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = find(&args, &["--", "/bin/sh", "-c"]).expect("the route wait after bwrap's --");
        assert!(args[at + 3].contains("/proc/net/route"), "{args:?}");
        assert_eq!(args[args.len() - 2..], ["sh", "true"]);
    }

    #[test]
    fn prlimit_sets_the_limits_then_runs_bwrap_then_the_command() {
        let mut jail = jail_of(false, false);
        jail.limits.cpu_secs = 7;
        let cmd = jail.command(&["python3".into(), "-c".into(), "1".into()]);
        let std = cmd.as_std();
        assert_eq!(std.get_program(), "prlimit");
        let args: Vec<String> = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let bwrap = find(&args, &["--", "bwrap"]).expect("bwrap after prlimit's --");
        assert!(find(&args[..bwrap], &["--cpu=7:9"]).is_some(), "{args:?}");
        assert!(find(&args[..bwrap], &["--core=0"]).is_some(), "{args:?}");
        assert_eq!(args[args.len() - 4..], ["--", "python3", "-c", "1"]);
    }

    #[test]
    fn runtime_is_read_only_except_for_warm_up() {
        let exec = jail(false, false);
        assert!(find(&exec, &["--ro-bind", "/node/runtimes/abc", "/opt/rt"]).is_some());
        assert!(find(&exec, &["--bind", "/node/runtimes/abc", "/opt/rt"]).is_none());
        let warm = jail(false, true);
        assert!(find(&warm, &["--bind", "/node/runtimes/abc", "/opt/rt"]).is_some());
        assert!(find(&exec, &["--cap-drop", "ALL"]).is_some());
        assert!(find(&exec, &["--chdir", "/workspace"]).is_some());
        assert!(find(&exec, &["--setenv", "A", "1"]).is_some());
    }
}
