//! `prewarm sandbox …`, `prewarm warm` and `prewarm status`: the origin's sandbox API from the command line.
//!
//! Client-only: these talk HTTP (and WebSocket / SSE) to an origin and link no server code, so
//! they are in the `--no-default-features` build too. `--url` / `$PREWARM_URL` picks the
//! origin; `--token`, `--token-file` or `$PREWARM_TOKEN` authenticate; `--json` prints JSON.

mod api;
mod create;
mod exec;
mod files;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use api::{sandbox_path, Api, ApiArgs};

use crate::cli_output;

#[derive(Args)]
pub(crate) struct SandboxArgs {
    #[command(subcommand)]
    command: SandboxCommand,
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Create a sandbox of RUNTIME (NAME:TAG or sha256:…); prints its id.
    Create(create::CreateArgs),
    /// Run a command in a sandbox, streaming its output; exits with the command's status.
    Exec(exec::ExecArgs),
    /// A sandbox's state (`ID`), or the files of a directory in it (`ID:PATH`).
    Ls(files::LsArgs),
    /// Delete a sandbox (`ID`), or a file or directory in it (`ID:PATH`).
    Rm(files::RmArgs),
    /// Copy files in or out, like `docker cp`: `cp LOCAL ID:PATH` or `cp ID:PATH LOCAL`.
    Cp(files::CpArgs),
}

pub(crate) async fn run(a: SandboxArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        SandboxCommand::Create(a) => create::run(a).await,
        SandboxCommand::Exec(a) => exec::run(a).await,
        SandboxCommand::Ls(a) => files::ls(a).await,
        SandboxCommand::Rm(a) => files::rm(a).await,
        SandboxCommand::Cp(a) => files::cp(a).await,
    }
}

#[derive(Args)]
pub(crate) struct WarmArgs {
    /// NAME:TAG or sha256:… to warm on the origin's node.
    runtime: String,
    /// Queue priority: low, normal or high.
    #[arg(long, default_value = "normal")]
    priority: String,
    /// Wait until the runtime is warm, with a progress bar.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// `prewarm warm RUNTIME`: starts warming without a sandbox (`POST /v1/warm`).
pub(crate) async fn warm(a: WarmArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&a.api)?;
    let body = json!({"runtime": a.runtime, "priority": a.priority});
    let req = api.request(Method::POST, "/v1/warm").json(&body);
    let mut info = api.json(req, "warming").await?;
    if a.wait && info["status"] == "warming" {
        // Warming has no events stream of its own: poll the same route (it is idempotent and
        // answers with the job's current state).
        info = create::poll_warm(&api, &body, !a.api.json).await?;
    }
    cli_output::result(&info, a.api.json, |i| {
        let state = if i["hot"] == true {
            "warm already".to_string()
        } else {
            format!(
                "{} ({})",
                i["status"].as_str().unwrap_or("?"),
                i["step"].as_str().unwrap_or("?")
            )
        };
        format!(
            "{} {}: {state}",
            a.runtime,
            i["digest"].as_str().unwrap_or("")
        )
    });
    Ok(if info["status"] == "failed" {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    api: ApiArgs,
}

/// `prewarm status`: the origin's tiers (`/readyz`), and its node's warm runtimes, queue and
/// sandboxes (`/v1/warm/stats`).
pub(crate) async fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&a.api)?;
    // /readyz answers 503 with the same body when a tier is down: that is a status, not an error.
    let ready = api
        .request(Method::GET, "/readyz")
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", api.base))?;
    let tiers: Value = ready.json().await.unwrap_or(Value::Null);
    let stats_resp = api.request(Method::GET, "/v1/warm/stats").send().await?;
    let node = if stats_resp.status().is_success() {
        stats_resp.json().await.unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let out =
        json!({"url": api.base, "ready": tiers["ready"], "tiers": tiers["tiers"], "node": node});
    cli_output::result(&out, a.api.json, |o| {
        let mut lines = vec![format!(
            "{}: {}",
            o["url"].as_str().unwrap_or(""),
            if o["ready"] == true {
                "ready"
            } else {
                "NOT READY"
            }
        )];
        for t in o["tiers"].as_array().into_iter().flatten() {
            let name = t["name"].as_str().or(t["tier"].as_str()).unwrap_or("?");
            lines.push(format!("  tier {name}: {}", compact(t)));
        }
        if o["node"].is_null() {
            lines.push("  sandboxes: not enabled on this origin".into());
        } else {
            let n = &o["node"];
            lines.push(format!(
                "  warm runtimes {}, sandboxes {}, queue {} waiting / {} running, warms {} ok / {} failed, evictions {}",
                n["warm_runtimes"], n["sandboxes"], n["queued"], n["running"],
                n["warms_succeeded"], n["warms_failed"], n["evictions"]
            ));
        }
        lines.join("\n")
    });
    Ok(if tiers["ready"] == false {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A JSON object on one line without its braces' noise, for human output.
fn compact(v: &Value) -> String {
    match v.as_object() {
        Some(o) => o
            .iter()
            .filter(|(k, _)| *k != "name")
            .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(" "),
        None => v.to_string(),
    }
}

/// `ID` or `ID:PATH`.
fn split_target(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((id, path)) => (
            id,
            Some(
                path.trim_start_matches("/workspace/")
                    .trim_start_matches('/'),
            ),
        ),
        None => (s, None),
    }
}

/// Deletes a sandbox (`DELETE /v1/sandboxes/{id}`).
async fn delete_sandbox(api: &Api, id: &str) -> anyhow::Result<()> {
    let req = api.request(Method::DELETE, &sandbox_path(id, ""));
    api.send(req, &format!("deleting sandbox {id}")).await?;
    Ok(())
}
