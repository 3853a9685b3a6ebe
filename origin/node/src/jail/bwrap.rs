//! The command line every sandboxed process (warm commands and exec) runs under: joining the sandbox's cgroup, `prlimit` for resource limits, then bubblewrap, then `setpriv` to the sandbox uid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prewarm_shared::sandbox::WORKSPACE_DIR;

use super::cgroup::{Cgroups, SandboxCgroup};
use super::identity::{setpriv_args, setpriv_in_usr, SandboxUser, SETPRIV_CAPS};
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

/// What every jail on a node runs with: the host tools and the sandbox identity. Found and
/// checked once at start.
#[derive(Debug, Clone)]
pub struct JailTools {
    pub bwrap: PathBuf,
    /// util-linux `prlimit`, which applies the limits before it execs bubblewrap.
    pub prlimit: PathBuf,
    /// util-linux `setpriv`, which switches to `user` inside the jail (see [`super::identity`]).
    pub setpriv: PathBuf,
    pub user: SandboxUser,
    /// Where sandboxes' and warm jobs' cgroups go ([`Cgroups::none`]: nowhere).
    pub cgroups: Cgroups,
    /// What connects a sandbox that asks for network, and what it may reach ([`super::net`]);
    /// `None`: no sandbox gets network (`sandbox.network = "off"`, or a tool is missing).
    pub net: Option<super::net::NetTools>,
}

impl JailTools {
    /// The network tools for a sandbox with `network` (`None` without, or when this node
    /// gives no sandbox network).
    pub fn net_for(&self, network: bool) -> Option<&super::net::NetTools> {
        self.net.as_ref().filter(|_| network)
    }
}

/// How one sandboxed process is confined.
///
/// Always: the command runs as the unprivileged [`JailTools::user`] with no capabilities and
/// `no_new_privs` (so it cannot write or `chmod` any file root owns: the node's cache, sealed
/// runtimes); its own ipc, pid, net, uts and cgroup namespaces; `--die-with-parent` (killing
/// the origin kills the tree), `--new-session`, a clean environment, a private `/tmp`,
/// `/dev/shm`, `/proc` and `/dev`. The runtime is bound at its prefix, read-only unless
/// `runtime_writable` (warm-up only). Under `limits`, set by `prlimit` before it execs bwrap.
#[derive(Debug, Clone)]
pub struct Jail {
    pub tools: JailTools,
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
    /// `[sh -c JOIN… --] prlimit LIMITS… -- bwrap MOUNTS… --args FD -- setpriv TO-USER… --
    /// argv…`, ready to spawn (the shell joins the sandbox's cgroup and execs prlimit, which
    /// execs bwrap: one process). bwrap reads the environment (`--setenv` pairs) from FD, an
    /// unlinked file: a command line is readable by every process on the host (`ps`), and the
    /// context and a client's env are no one else's business. The mounts stay on the command
    /// line, where a restarted node finds bwraps it left behind (see `NodeLayout`). Its own
    /// process group, so a timeout can kill everything it started.
    ///
    /// # Errors
    /// Writing the options file failed.
    pub fn command(&self, argv: &[String]) -> std::io::Result<JailCommand> {
        use std::io::{Seek, Write};
        use std::os::fd::AsRawFd;
        let mut options = tempfile::tempfile()?;
        for a in self.env_args() {
            options.write_all(a.as_bytes())?;
            options.write_all(b"\0")?;
        }
        options.rewind()?;
        let join = self.cgroup.join_args();
        let mut c = match join.split_first() {
            Some((sh, rest)) => {
                let mut c = tokio::process::Command::new(sh);
                c.args(rest).arg(&self.tools.prlimit);
                c
            }
            None => tokio::process::Command::new(&self.tools.prlimit),
        };
        c.args(self.limits.prlimit_args())
            .arg("--")
            .arg(&self.tools.bwrap)
            .args(self.args())
            .arg("--args")
            .arg(options.as_raw_fd().to_string())
            .arg("--")
            .args(setpriv_args(&self.tools.setpriv, self.tools.user));
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
        Ok(JailCommand { cmd: c, options })
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
        // Directories bwrap creates for a mount point are root's and 0700: made 0755 first,
        // or the sandbox uid could not look inside them.
        push(&["--dir", "/etc"]);
        let etc = RO_ETC
            .iter()
            .chain(if self.network { RO_ETC_NET } else { &[] });
        for p in etc {
            push(&["--ro-bind-try", p, p]);
        }
        if let (true, Some(resolv)) = (self.network, &self.resolv_conf) {
            push(&["--ro-bind", &resolv.to_string_lossy(), "/etc/resolv.conf"]);
        }
        let setpriv = self.tools.setpriv.to_string_lossy();
        if !setpriv_in_usr(&self.tools.setpriv) {
            push(&["--ro-bind", &setpriv, &setpriv]);
        }
        push(&["--proc", "/proc", "--dev", "/dev"]);
        push(&["--perms", "1777", "--tmpfs", "/tmp"]);
        push(&["--perms", "1777", "--tmpfs", "/dev/shm"]);
        // No user namespace: bwrap runs as root, and one it created would map the sandbox's
        // uid to root outside. The uid switch is setpriv's (see `super::identity`).
        push(&[
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]);
        // Network or not, the network namespace is the sandbox's own: with `network`,
        // slirp4netns connects it (see `super::net`), never the host's.
        push(&["--unshare-net"]);
        push(&["--die-with-parent", "--new-session", "--cap-drop", "ALL"]);
        for cap in SETPRIV_CAPS {
            push(&["--cap-add", cap]);
        }
        push(&["--hostname", "sandbox", "--clearenv"]);
        for dir in Path::new(&self.prefix)
            .ancestors()
            .skip(1)
            .filter(|d| d.parent().is_some())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            push(&["--dir", &dir.to_string_lossy()]);
        }
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
        a
    }

    /// `--setenv KEY VALUE` for the whole environment: `env`, with `PATH` and `HOME` when it
    /// has none (after `--clearenv`, nothing else is set).
    fn env_args(&self) -> Vec<String> {
        let home = if self.workspace.is_some() {
            WORKSPACE_DIR
        } else {
            "/tmp"
        };
        let mut env = self.env.clone();
        env.entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        env.entry("HOME".into()).or_insert_with(|| home.into());
        env.into_iter()
            .flat_map(|(k, v)| ["--setenv".to_string(), k, v])
            .collect()
    }
}

/// A jailed command and the file bwrap reads its options from (see [`Jail::command`]).
pub struct JailCommand {
    cmd: tokio::process::Command,
    options: std::fs::File,
}

/// Held while the options file of one command is inheritable, so no other jail's process
/// (the origin starts no others) can inherit it.
static SPAWNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl JailCommand {
    /// Starts the command, handing the options file down to bwrap (which closes it once read).
    pub fn spawn(mut self) -> std::io::Result<tokio::process::Child> {
        let _only_one = SPAWNING.lock().unwrap_or_else(|p| p.into_inner());
        rustix::io::fcntl_setfd(&self.options, rustix::io::FdFlags::empty())?;
        let child = self.cmd.spawn();
        drop(self.options);
        child
    }

    /// Gives the command a pipe on stdin (else `/dev/null`): a long-lived interpreter reads
    /// its requests there.
    pub fn with_stdin_pipe(mut self) -> Self {
        self.cmd.stdin(std::process::Stdio::piped());
        self
    }

    /// The command line, as `ps` shows it.
    pub fn as_std(&self) -> &std::process::Command {
        self.cmd.as_std()
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
            tools: JailTools {
                bwrap: "bwrap".into(),
                prlimit: "prlimit".into(),
                setpriv: "/usr/bin/setpriv".into(),
                user: SandboxUser { uid: 7, gid: 8 },
                cgroups: Cgroups::none(),
                net: None,
            },
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
        assert!(find(&off, &["--unshare-net"]).is_some());
        assert!(find(&off, &resolv).is_none());
        let on = jail(true, false);
        // Network or not, the network namespace is the sandbox's own.
        assert!(find(&on, &["--unshare-net"]).is_some());
        assert!(find(&on, &resolv).is_some());
        // The command waits for the network inside the jail, as the sandbox user.
        let cmd = jail_of(true, false).command(&["true".into()]).unwrap();
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = find(&args, &["--", "/bin/sh", "-c"]).expect("the route wait after setpriv's --");
        assert!(find(&args, &["--no-new-privs"]) < Some(at), "{args:?}");
        assert!(args[at + 3].contains("/proc/net/route"), "{args:?}");
        assert_eq!(args[args.len() - 2..], ["sh", "true"]);
    }

    #[test]
    fn prlimit_sets_the_limits_then_runs_bwrap_then_the_command() {
        let mut jail = jail_of(false, false);
        jail.limits.cpu_secs = 7;
        let cmd = jail
            .command(&["python3".into(), "-c".into(), "1".into()])
            .unwrap();
        let std = cmd.as_std();
        assert_eq!(std.get_program(), "prlimit");
        let args: Vec<String> = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let bwrap = find(&args, &["--", "bwrap"]).expect("bwrap after prlimit's --");
        assert!(find(&args[bwrap..], &["--args"]).is_some(), "{args:?}");
        assert!(find(&args[..bwrap], &["--cpu=7:9"]).is_some(), "{args:?}");
        assert!(find(&args[..bwrap], &["--core=0"]).is_some(), "{args:?}");
        assert_eq!(args[args.len() - 4..], ["--", "python3", "-c", "1"]);
        // bwrap's command is setpriv, which becomes the sandbox user and then runs argv.
        let setpriv = find(&args, &["--", "/usr/bin/setpriv"]).expect("setpriv after bwrap's --");
        assert!(setpriv > bwrap);
        assert!(find(&args[setpriv..], &["--reuid=7", "--regid=8"]).is_some());
    }

    #[test]
    fn the_sandbox_user_gets_no_user_namespace_and_no_capability_but_setprivs() {
        for (network, writable) in [(false, false), (true, true)] {
            let a = jail(network, writable);
            for ns in ["--unshare-user", "--unshare-user-try", "--unshare-all"] {
                assert!(
                    find(&a, &[ns]).is_none(),
                    "{ns} maps the sandbox uid to root"
                );
            }
            for ns in ["--unshare-ipc", "--unshare-pid", "--unshare-uts"] {
                assert!(find(&a, &[ns]).is_some(), "{ns}");
            }
            let drop = find(&a, &["--cap-drop", "ALL"]).expect("caps dropped");
            let added: Vec<&str> = a
                .windows(2)
                .filter(|w| w[0] == "--cap-add")
                .map(|w| w[1].as_str())
                .collect();
            assert_eq!(added, SETPRIV_CAPS);
            assert!(find(&a, &["--cap-add"]) > Some(drop));
        }
    }

    #[test]
    fn everything_the_sandbox_user_needs_to_reach_is_searchable() {
        let mut j = jail_of(false, false);
        j.prefix = "/opt/lang/rt".into();
        let a = j.args();
        let at = |seq: &[&str]| find(&a, seq).unwrap_or_else(|| panic!("{seq:?}: {a:?}"));
        let bind = at(&["--ro-bind", "/node/runtimes/abc", "/opt/lang/rt"]);
        assert!(at(&["--dir", "/opt"]) < at(&["--dir", "/opt/lang"]));
        assert!(at(&["--dir", "/opt/lang"]) < bind);
        assert!(find(&a, &["--dir", "/"]).is_none());
        assert!(at(&["--dir", "/etc"]) < at(&["--ro-bind-try"]));
        at(&["--perms", "1777", "--tmpfs", "/tmp"]);
        assert!(at(&["--perms", "1777", "--tmpfs", "/dev/shm"]) > at(&["--dev", "/dev"]));
        // A setpriv outside /usr is bound where the command line names it.
        j.tools.setpriv = "/opt/util-linux/setpriv".into();
        let a = j.args();
        let p = "/opt/util-linux/setpriv";
        assert!(find(&a, &["--ro-bind", p, p]).is_some());
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
        let env = jail_of(false, false).env_args();
        assert!(find(&env, &["--setenv", "A", "1"]).is_some());
        assert!(find(&env, &["--setenv", "HOME", "/workspace"]).is_some());
    }

    #[test]
    fn the_environment_is_not_on_a_command_line() {
        use std::io::Read;
        let mut j = jail_of(false, false);
        j.env.insert("PREWARM_CONTEXT".into(), "secret".into());
        let cmd = j.command(&["env".into()]).unwrap();
        let line: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            !line.iter().any(|a| a.contains("secret") || a == "--setenv"),
            "{line:?}"
        );
        // bwrap reads them from the file whose descriptor follows `--args`.
        let mut options = String::new();
        cmd.options
            .try_clone()
            .unwrap()
            .read_to_string(&mut options)
            .unwrap();
        assert!(
            options.contains("--setenv\0PREWARM_CONTEXT\0secret\0"),
            "{options:?}"
        );
    }
}
