//! `prewarm sandbox create`: the create request, then the live warm state as a progress bar (step, percent, ETA).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};

use super::api::{check, sandbox_path, Api, ApiArgs};
use crate::cli_output;

#[derive(Args)]
pub(crate) struct CreateArgs {
    /// NAME:TAG or sha256:… of the runtime.
    runtime: String,
    /// Who the sandbox is for (the origin's scheduling and accounting key). Left out, the
    /// origin decides: a sandbox token's own user, else `default`. A sandbox token may only
    /// name its own user.
    #[arg(long)]
    user: Option<String>,
    /// A JSON file given to the sandbox as `$PREWARM_CONTEXT` and `.prewarm/context.json`.
    #[arg(long)]
    context_file: Option<PathBuf>,
    /// KEY=VALUE added to the sandbox's environment (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Queue priority: low, normal or high.
    #[arg(long, default_value = "normal")]
    priority: String,
    /// Give the sandbox's commands a network.
    #[arg(long)]
    network: bool,
    /// Wait until the sandbox is ready, showing the warm's live step and ETA.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    api: ApiArgs,
}

pub(super) async fn run(a: CreateArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&a.api)?;
    let mut body = json!({"runtime": a.runtime, "priority": a.priority});
    if let Some(u) = &a.user {
        body["user_id"] = json!(u);
    }
    if !a.env.is_empty() {
        body["env"] = env_map(&a.env)?;
    }
    if let Some(f) = &a.context_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading the context file {}", f.display()))?;
        body["context"] = serde_json::from_str(&text)
            .with_context(|| format!("the context file {} is not JSON", f.display()))?;
    }
    if a.network {
        body["network"] = json!(true);
    }
    let req = api.request(Method::POST, "/v1/sandboxes").json(&body);
    let mut info = api.json(req, "creating the sandbox").await?;
    let id = info["sandbox_id"]
        .as_str()
        .context("the origin's answer has no sandbox_id")?
        .to_string();
    if a.wait && info["status"] == "warming" {
        let bar = Bar::new(!a.api.json);
        let followed = follow_events(&api, &id, &bar).await;
        bar.done();
        if let Err(e) = followed {
            tracing::debug!("events stream unusable ({e:#}); polling");
        }
        info = poll_ready(&api, &id).await?;
    }
    if info["status"] == "failed" {
        let err = &info["error"];
        bail!(
            "sandbox {id}: warming {} failed at step {}: {}",
            a.runtime,
            err["step"].as_str().unwrap_or("?"),
            err["reason"].as_str().unwrap_or("no reason given")
        );
    }
    cli_output::result(&info, a.api.json, |_| id.clone());
    Ok(ExitCode::SUCCESS)
}

/// `KEY=VALUE`s as a JSON object.
pub(super) fn env_map(pairs: &[String]) -> anyhow::Result<Value> {
    let mut env = serde_json::Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--env {p:?} is not KEY=VALUE");
        };
        env.insert(k.to_string(), json!(v));
    }
    Ok(Value::Object(env))
}

/// Follows `GET …/events` as Server-Sent Events until a terminal state, drawing each.
async fn follow_events(api: &Api, id: &str, bar: &Bar) -> anyhow::Result<()> {
    let req = api
        .request(Method::GET, &sandbox_path(id, "/events"))
        .header("accept", "text/event-stream");
    let resp = req.send().await?;
    let resp = check(resp, "following the warm").await?;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(end) = find(&buf, b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let Some(data) = text.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let state: Value = serde_json::from_str(data.trim())?;
            bar.show(&state);
            if state["status"] != "warming" {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The sandbox's state once it is no longer warming (the authoritative last word).
async fn poll_ready(api: &Api, id: &str) -> anyhow::Result<Value> {
    let mut pause = Duration::from_millis(100);
    loop {
        let req = api.request(Method::GET, &sandbox_path(id, ""));
        let info = api.json(req, &format!("reading sandbox {id}")).await?;
        if info["status"] != "warming" {
            return Ok(info);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(Duration::from_secs(1));
    }
}

/// Re-posts a warm request (idempotent: it answers the job's state) until it is done.
pub(super) async fn poll_warm(api: &Api, body: &Value, show: bool) -> anyhow::Result<Value> {
    let bar = Bar::new(show);
    let mut pause = Duration::from_millis(100);
    loop {
        let req = api.request(Method::POST, "/v1/warm").json(body);
        let info = api.json(req, "warming").await?;
        bar.show(&info);
        if info["status"] != "warming" {
            bar.done();
            return Ok(info);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(Duration::from_secs(1));
    }
}

/// The warm's progress on stderr: step, percent, and the server's time-left estimate. Drawn
/// only on a terminal and without `--json`.
pub(super) struct Bar(Option<ProgressBar>);

impl Bar {
    pub(super) fn new(wanted: bool) -> Bar {
        if !wanted || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let style = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos:>3}% {prefix}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr())
            .with_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(Some(bar))
    }

    fn show(&self, state: &Value) {
        let Some(bar) = &self.0 else { return };
        let step = state["step"].as_str().unwrap_or("");
        bar.set_message(step.to_string());
        let progress = state["progress"].as_f64().unwrap_or(0.0).clamp(0.0, 1.0);
        bar.set_position((progress * 100.0).round() as u64);
        let eta = match (
            state["queue_position"].as_u64(),
            state["estimated_ms"].as_u64(),
        ) {
            (Some(q), _) => format!("queued, {q} ahead"),
            (None, Some(ms)) => format!("eta {:.1}s", ms as f64 / 1000.0),
            (None, None) => String::new(),
        };
        bar.set_prefix(eta);
    }

    pub(super) fn done(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
