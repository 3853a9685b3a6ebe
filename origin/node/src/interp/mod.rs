//! Long-lived interpreters in a sandbox's jail: the Python driver, its JSON-lines protocol over pipes, one call at a time.
//!
//! An [`Interp`] is one interpreter process started exactly as exec starts a command
//! ([`Jail::command`]: the sandbox's cgroup, prlimit limits, bubblewrap, the sandbox uid, the
//! read-only runtime) with the driver (`driver.py`, embedded) as its program. The driver reads
//! requests on stdin and answers on stdout; the protocol is written at the top of
//! `driver.py`. User code travels only as a JSON string on the pipe: it is never part of a
//! command line or of source text.
//!
//! A call that times out, or an interpreter that dies (a signal, `os._exit`, the OOM killer,
//! a protocol violation), leaves the [`Interp`] dead: the caller drops it and starts a fresh
//! one for the next call.
//!
//! The interpreter's rlimits are per process and it lives across calls: its CPU seconds
//! (`cpu_secs`) are counted over its whole life, not per call.

mod rss;

pub use rss::rss_of;

use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prewarm_shared::pack::Interpreter;
use prewarm_shared::run::RunError;
use rustix::process::{kill_process_group, Pid, Signal};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_util::sync::CancellationToken;

use crate::jail::cgroup::SandboxCgroup;
use crate::jail::exec::{LiveOutput, Pipe};
use crate::jail::limits::signal_name;
use crate::jail::Jail;

/// The Python driver, run with `python3 -c DRIVER CONFIG`.
pub const PYTHON_DRIVER: &str = include_str!("driver.py");

/// Longest protocol line the node reads (output arrives in pieces of at most 64 KiB, JSON
/// escaped); a longer one is a protocol violation and kills the interpreter.
const MAX_LINE: u64 = 4 << 20;
/// Bytes kept of what the interpreter wrote to its real stderr before the driver took it over
/// (a crash of the interpreter itself, bubblewrap's own complaints).
const STDERR_TAIL: usize = 4 << 10;

/// One running interpreter and its pipes.
pub struct Interp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    pgid: Option<Pid>,
    /// slirp4netns, for a sandbox with network: lives as long as the interpreter.
    _net: Option<Child>,
    /// What the driver reported once its preloads were imported.
    pub ready: Ready,
}

/// The driver's first message.
#[derive(Debug, Clone, Default)]
pub struct Ready {
    /// The interpreter's own resident set, as it measured it (host-side measures are in [`rss_of`]).
    pub rss_bytes: u64,
    /// Preloads that failed to import: `module: error`.
    pub preload_failed: Vec<String>,
    /// From spawn to ready.
    pub start_ms: u64,
}

/// How one call ended.
#[derive(Debug, Default)]
pub struct Call {
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub result: Option<String>,
    pub error: Option<RunError>,
    /// The call ran out of time (the interpreter was killed).
    pub timed_out: bool,
    /// The interpreter is gone (killed on timeout or stop, or died): what happened, unless
    /// it was the timeout or a stop.
    pub died: Option<String>,
    /// The signal the interpreter died of.
    pub signal: Option<String>,
    /// False once the interpreter is gone: drop it.
    pub alive: bool,
}

/// Why an interpreter could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("starting bubblewrap: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the interpreter exited before it was ready: {0}")]
    Exited(String),
    #[error("the interpreter was not ready within {0} s")]
    Timeout(u64),
}

impl Interp {
    /// Starts `spec` in `jail` with the driver, importing `preload` first, and waits (at most
    /// `patience`) for it to be ready. With `net` (slirp4netns and the cgroup), its network
    /// namespace is connected as exec's is.
    pub async fn start(
        jail: &Jail,
        spec: &Interpreter,
        preload: &[String],
        net: Option<(&crate::jail::net::NetTools, &SandboxCgroup)>,
        patience: Duration,
    ) -> Result<Interp, StartError> {
        let started = Instant::now();
        let mut argv = spec.cmd.clone();
        argv.push("-c".into());
        argv.push(PYTHON_DRIVER.into());
        argv.push(json!({ "preload": preload }).to_string());
        let cmd = jail
            .command(&argv)
            .map_err(StartError::Spawn)?
            .with_stdin_pipe();
        let mut child = cmd.spawn().map_err(StartError::Spawn)?;
        let pgid = child.id().and_then(|id| Pid::from_raw(id as i32));
        let net = match (net, child.id()) {
            (Some((tools, cgroup)), Some(pid)) => {
                match crate::jail::net::attach(tools, pid, cgroup).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        kill(pgid, &mut child).await;
                        return Err(StartError::Spawn(e));
                    }
                }
            }
            _ => None,
        };
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill(pgid, &mut child).await;
            return Err(StartError::Spawn(std::io::Error::other("no pipes")));
        };
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = stderr_tail.clone();
        // Ends with the pipe, when the interpreter's last process is gone.
        tokio::spawn(async move {
            let mut r = stderr;
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.extend_from_slice(&buf[..n]);
                let excess = t.len().saturating_sub(STDERR_TAIL);
                t.drain(..excess);
            }
        });
        let mut it = Interp {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr_tail,
            pgid,
            _net: net,
            ready: Ready::default(),
        };
        let first = tokio::time::timeout(patience, it.next_message()).await;
        match first {
            Ok(Ok(Some(m))) if m.get("ready").is_some() => {
                let r = &m["ready"];
                it.ready = Ready {
                    rss_bytes: r["rss_bytes"].as_u64().unwrap_or(0),
                    preload_failed: r["preload_failed"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|f| {
                                    format!("{}: {}", str_of(&f["module"]), str_of(&f["error"]))
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    start_ms: started.elapsed().as_millis() as u64,
                };
                Ok(it)
            }
            Ok(_) => {
                let status = it.kill().await;
                Err(StartError::Exited(format!(
                    "{}; {}",
                    describe(status),
                    it.stderr_tail().trim()
                )))
            }
            Err(_) => {
                it.kill().await;
                Err(StartError::Timeout(patience.as_secs()))
            }
        }
    }

    /// Applies a sandbox's env and context (`PREWARM_CONTEXT`) to `os.environ` before any of
    /// its code runs: how a pooled interpreter, started before its sandbox existed, gets them.
    /// Written without waiting: the driver handles requests in order.
    pub async fn setup(
        &mut self,
        env: &std::collections::BTreeMap<String, String>,
        context: Option<&str>,
    ) -> std::io::Result<()> {
        self.send(&json!({"op": "setup", "env": env, "context": context}))
            .await
    }

    /// Runs `code`: at most `timeout`, each stream's first `cap` bytes kept (all of it sent to
    /// `live` as it comes). `stop` (the sandbox is deleted) kills the interpreter.
    pub async fn run(
        &mut self,
        code: &str,
        timeout: Duration,
        cap: usize,
        live: Option<LiveOutput>,
        stop: &CancellationToken,
    ) -> Call {
        let mut call = Call {
            alive: true,
            ..Call::default()
        };
        if self
            .send(&json!({"op": "run", "code": code}))
            .await
            .is_err()
        {
            return self.gone(call).await;
        }
        let mut out = (Vec::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + timeout;
        let end = loop {
            let msg = tokio::select! {
                m = self.next_message() => m,
                _ = tokio::time::sleep_until(deadline) => break End::Timeout,
                _ = stop.cancelled() => break End::Stopped,
            };
            let m = match msg {
                Ok(Some(m)) => m,
                Ok(None) => break End::Eof,
                Err(e) => {
                    call.died = Some(format!("protocol violation: {e}"));
                    break End::Stopped;
                }
            };
            if let (Some(stream), Some(data)) = (m["stream"].as_str(), m["data"].as_str()) {
                let (pipe, kept) = match stream {
                    "stderr" => (Pipe::Stderr, &mut out.1),
                    _ => (Pipe::Stdout, &mut out.0),
                };
                if let Some(l) = &live {
                    let _ = l.send((pipe, data.as_bytes().to_vec())).await;
                }
                let room = cap.saturating_sub(kept.len());
                let take = floor_char_boundary(data, room);
                kept.extend_from_slice(&data.as_bytes()[..take]);
                call.truncated |= take < data.len();
            } else if let Some(done) = m.get("done") {
                call.result = done["result"].as_str().map(str::to_string);
                call.error = serde_json::from_value(done["error"].clone()).ok();
                break End::Done;
            }
        };
        call.stdout = String::from_utf8_lossy(&out.0).into_owned();
        call.stderr = String::from_utf8_lossy(&out.1).into_owned();
        match end {
            End::Done => call,
            End::Eof => self.gone(call).await,
            End::Timeout | End::Stopped => {
                call.timed_out = matches!(end, End::Timeout);
                let status = self.kill().await;
                call.alive = false;
                call.signal = signal_of(status).filter(|s| s != "SIGKILL");
                call
            }
        }
    }

    /// The interpreter ended by itself: wait for it and say how.
    async fn gone(&mut self, mut call: Call) -> Call {
        let status = self.kill().await;
        call.alive = false;
        call.signal = signal_of(status);
        let tail = self.stderr_tail();
        let mut how = describe(status);
        if !tail.trim().is_empty() {
            how = format!("{how}: {}", tail.trim());
        }
        call.died.get_or_insert(how);
        call
    }

    /// Kills the interpreter's process group (bubblewrap and, with `--die-with-parent`, its
    /// pid namespace) and waits for it.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        kill(self.pgid, &mut self.child).await
    }

    fn stderr_tail(&self) -> String {
        let t = self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&t).into_owned()
    }

    /// The host pid of the interpreter's bubblewrap.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn send(&mut self, msg: &Value) -> std::io::Result<()> {
        let mut line = msg.to_string().into_bytes();
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await
    }

    /// The next protocol message; `None` at the end of the pipe.
    async fn next_message(&mut self) -> std::io::Result<Option<Value>> {
        let mut buf = Vec::new();
        let n = (&mut self.stdout)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') {
            if n as u64 >= MAX_LINE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a line over the limit",
                ));
            }
            return Ok(None);
        }
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Why a call's wait for messages ended.
enum End {
    Done,
    Eof,
    Timeout,
    Stopped,
}

async fn kill(pgid: Option<Pid>, child: &mut Child) -> Option<ExitStatus> {
    if let Some(pg) = pgid {
        // The group may be gone already; nothing to do then.
        let _ = kill_process_group(pg, Signal::Kill);
    }
    let _ = child.start_kill();
    child.wait().await.ok()
}

/// The signal the interpreter died of: its own, or bubblewrap's 128 + N for it.
fn signal_of(status: Option<ExitStatus>) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let s = status?;
    s.signal()
        .or_else(|| crate::jail::exec::signalled(s.code()))
        .map(signal_name)
}

fn describe(status: Option<ExitStatus>) -> String {
    match (signal_of(status), status.and_then(|s| s.code())) {
        (Some(sig), _) => format!("the interpreter was killed by {sig}"),
        (None, Some(c)) => format!("the interpreter exited with status {c}"),
        (None, None) => "the interpreter ended".into(),
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// The largest index ≤ `at` on a character boundary of `s`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0)
}

#[cfg(test)]
mod tests;
