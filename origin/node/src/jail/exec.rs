//! Running one sandboxed command to completion: timeout that kills the whole tree, capped output.

use std::time::{Duration, Instant};

use prewarm_shared::sandbox::ExecResult;
use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::cgroup::SandboxCgroup;
use super::limits::signal_name;

/// Which pipe a piece of live output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    Stdout,
    Stderr,
}

/// Where live output goes while a command runs (all of it, not just the capped copy kept for
/// the result). Bounded: a slow reader slows the command down rather than growing memory.
pub type LiveOutput = mpsc::Sender<(Pipe, Vec<u8>)>;

/// How long to keep draining pipes after the process is gone (a grandchild could hold them).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Spawns `cmd` (built by [`super::bwrap::Jail::command`], so in its own process group) and
/// waits for it, at most `timeout`. On timeout the whole process group gets SIGKILL; the
/// sandbox's pid namespace dies with bwrap (`--die-with-parent`), taking every descendant.
/// Each of stdout and stderr keeps its first `cap` bytes; the rest is read and discarded
/// (so the command never blocks on a full pipe) and `truncated` is set. With `live`, every
/// piece of output is also sent there as it arrives; a receiver that went away is ignored.
/// When `stop` fires (its sandbox is deleted), the process group is killed as on a timeout,
/// but `timed_out` stays false. `signal` names the signal the command died of; `limit` is left
/// for the caller, who knows the limits. With `net` (slirp4netns and the sandbox's cgroup),
/// the command's network namespace is connected once it exists ([`super::net::attach`]), until
/// the command ends.
pub async fn run(
    cmd: super::bwrap::JailCommand,
    timeout: Duration,
    cap: usize,
    live: Option<LiveOutput>,
    stop: Option<&CancellationToken>,
    net: Option<(&super::net::NetTools, &SandboxCgroup)>,
) -> std::io::Result<ExecResult> {
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pgid = child.id().and_then(|id| Pid::from_raw(id as i32));
    let _slirp = match (net, child.id()) {
        (Some((tools, cgroup)), Some(pid)) => match super::net::attach(tools, pid, cgroup).await {
            Ok(s) => Some(s),
            Err(e) => {
                if let Some(pg) = pgid {
                    let _ = kill_process_group(pg, Signal::Kill);
                }
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("connecting the sandbox network: {e}"),
                ));
            }
        },
        _ => None,
    };
    let out = child.stdout.take();
    let err = child.stderr.take();
    // Pipes are drained while the command runs, or a chatty command would block on them.
    let readers = tokio::time::timeout(timeout + DRAIN_GRACE, async {
        tokio::join!(
            read_capped(out, cap, live.clone().map(|l| (l, Pipe::Stdout))),
            read_capped(err, cap, live.map(|l| (l, Pipe::Stderr)))
        )
    });
    let stopped = async {
        match stop {
            Some(t) => t.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let waiter = async {
        let timed_out = tokio::select! {
            s = child.wait() => return s.map(|s| (s, false)),
            _ = tokio::time::sleep(timeout) => true,
            _ = stopped => false,
        };
        if let Some(pg) = pgid {
            // The group may be gone already; nothing to do then.
            let _ = kill_process_group(pg, Signal::Kill);
        }
        let _ = child.start_kill();
        child.wait().await.map(|s| (s, timed_out))
    };
    let (status, drained) = tokio::join!(waiter, readers);
    let (status, timed_out) = status?;
    let ((stdout, t1), (stderr, t2)) = drained.unwrap_or(((Vec::new(), true), (Vec::new(), true)));
    use std::os::unix::process::ExitStatusExt;
    let exit_code = if status.signal().is_some() {
        None
    } else {
        status.code()
    };
    Ok(ExecResult {
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        duration_ms: started.elapsed().as_millis() as u64,
        timed_out,
        truncated: t1 || t2,
        signal: status
            .signal()
            .or_else(|| signalled(exit_code))
            .map(signal_name),
        limit: None,
    })
}

/// The signal a command inside the sandbox died of: bubblewrap exits with 128 + N for it.
pub(crate) fn signalled(exit_code: Option<i32>) -> Option<i32> {
    exit_code
        .filter(|c| (129..=128 + 31).contains(c))
        .map(|c| c - 128)
}

/// Reads a pipe to its end, keeping the first `cap` bytes; true if more was discarded.
async fn read_capped<R: AsyncRead + Unpin>(
    r: Option<R>,
    cap: usize,
    live: Option<(LiveOutput, Pipe)>,
) -> (Vec<u8>, bool) {
    let Some(mut r) = r else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut truncated = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, truncated),
            Ok(n) => {
                if let Some((tx, pipe)) = &live {
                    let _ = tx.send((*pipe, buf[..n].to_vec())).await;
                }
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bwraps_128_plus_n_reads_as_signal_n() {
        assert_eq!(signalled(Some(128 + 24)), Some(24));
        assert_eq!(signalled(Some(137)), Some(9));
        for plain in [None, Some(0), Some(1), Some(128), Some(200)] {
            assert_eq!(signalled(plain), None, "{plain:?}");
        }
    }
}
