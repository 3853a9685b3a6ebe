//! `prewarm sandbox exec ID -- CMD…`: the exec WebSocket, output streamed to this process's stdout and stderr, its exit status ours.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::api::{sandbox_path, Api, ApiArgs};
use super::create::env_map;
use crate::cli_output;

#[derive(Args)]
pub(crate) struct ExecArgs {
    /// The sandbox.
    id: String,
    /// KEY=VALUE added to the command's environment (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Kill the command after this many seconds.
    #[arg(long)]
    timeout: Option<f64>,
    #[command(flatten)]
    api: ApiArgs,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    cmd: Vec<String>,
}

pub(super) async fn run(a: ExecArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&a.api)?;
    let mut body = json!({"cmd": a.cmd});
    if !a.env.is_empty() {
        body["env"] = env_map(&a.env)?;
    }
    if let Some(t) = a.timeout {
        if t.is_nan() || t <= 0.0 {
            bail!("--timeout must be a positive number of seconds");
        }
        body["timeout_ms"] = json!(((t * 1000.0) as u64).max(1));
    }
    let result = if a.api.json {
        // JSON wants the whole result: one request.
        let req = api
            .request(Method::POST, &sandbox_path(&a.id, "/exec"))
            .json(&body);
        api.json(req, &format!("running a command in {}", a.id))
            .await?
    } else {
        stream(&api, &a.id, &body).await?
    };
    if a.api.json {
        cli_output::result(&result, true, |_| String::new());
    } else if let Some(hit) = result["limit"]["message"].as_str() {
        cli_output::error(hit);
    } else if result["timed_out"] == true {
        cli_output::error("the command timed out and was killed");
    }
    Ok(ExitCode::from(exit_status(&result)))
}

/// Runs the command over `GET …/exec` (WebSocket), writing output as it comes; the result.
async fn stream(api: &Api, id: &str, body: &Value) -> anyhow::Result<Value> {
    let mut req = api
        .ws_url(&sandbox_path(id, "/exec"))
        .into_client_request()
        .context("the exec WebSocket URL")?;
    if let Some(t) = &api.token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse()?);
    }
    let (mut ws, _) = match tokio_tungstenite::connect_async(req).await {
        Ok(c) => c,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let text = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!(
                "running a command in {id}: {msg} (HTTP {})",
                resp.status().as_u16()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", api.base)),
    };
    ws.send(Message::text(body.to_string())).await?;
    while let Some(msg) = ws.next().await {
        let text = match msg? {
            Message::Text(t) => t,
            Message::Close(_) => break,
            _ => continue,
        };
        let v: Value = serde_json::from_str(text.as_str())?;
        if let Some(data) = v["data"].as_str() {
            cli_output::stream(v["stream"] == "stdout", data);
        } else if v.get("result").is_some() {
            return Ok(v["result"].clone());
        } else if let Some(e) = v.get("error") {
            bail!(
                "running a command in {id}: {} ({})",
                e["message"].as_str().unwrap_or("?"),
                e["code"].as_str().unwrap_or("?")
            );
        }
    }
    bail!("running a command in {id}: the stream ended without a result")
}

/// The shell's convention: the exit code; 128 + the signal's number when killed; 124 on a
/// timeout (as `timeout(1)`).
fn exit_status(r: &Value) -> u8 {
    if r["timed_out"] == true {
        return 124;
    }
    if let Some(c) = r["exit_code"].as_i64() {
        return c.clamp(0, 255) as u8;
    }
    let n = match r["signal"].as_str().unwrap_or("") {
        "SIGHUP" => 1,
        "SIGINT" => 2,
        "SIGQUIT" => 3,
        "SIGILL" => 4,
        "SIGABRT" => 6,
        "SIGBUS" => 7,
        "SIGFPE" => 8,
        "SIGKILL" => 9,
        "SIGSEGV" => 11,
        "SIGPIPE" => 13,
        "SIGTERM" => 15,
        "SIGXCPU" => 24,
        "SIGXFSZ" => 25,
        _ => 0,
    };
    128 + n
}
