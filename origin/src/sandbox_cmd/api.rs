//! The sandbox commands' HTTP side: the origin URL and token, requests, and the API's errors as messages.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use prewarm_shared::wire::ErrorBody;
use reqwest::{Method, RequestBuilder, Response};

/// Where the origin is and how to authenticate, shared by every sandbox command.
#[derive(Args, Clone)]
pub(crate) struct ApiArgs {
    /// The origin (http://…).
    #[arg(long, env = "PREWARM_URL", default_value = "http://127.0.0.1:7070")]
    pub(crate) url: String,
    /// Bearer token for the origin's sandbox API.
    #[arg(
        long,
        env = "PREWARM_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub(crate) token: Option<String>,
    /// A file holding the bearer token (first line).
    #[arg(long, env = "PREWARM_TOKEN_FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A client of one origin's sandbox API.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub(crate) fn new(a: &ApiArgs) -> anyhow::Result<Api> {
        let base = a.url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--url {base:?} must start with http:// or https://");
        }
        let token = match (&a.token, &a.token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading the token file {}", f.display()))?;
                let t = text.lines().next().unwrap_or("").trim().to_string();
                if t.is_empty() {
                    bail!("the token file {} is empty", f.display());
                }
                Some(t)
            }
            (None, None) => None,
        }
        .filter(|t| !t.is_empty());
        let http = reqwest::Client::builder()
            .user_agent(concat!("prewarm-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Api { base, token, http })
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends `req`; a non-2xx answer becomes an error carrying the server's code and message.
    pub(crate) async fn send(&self, req: RequestBuilder, what: &str) -> anyhow::Result<Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("{what}: cannot reach {}", self.base))?;
        check(resp, what).await
    }

    pub(crate) async fn json(
        &self,
        req: RequestBuilder,
        what: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let resp = self.send(req, what).await?;
        resp.json()
            .await
            .with_context(|| format!("{what}: the answer is not JSON"))
    }

    /// The WebSocket URL of `path`, and the token header to send with it.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        let base = self
            .base
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        format!("{base}{path}")
    }
}

/// The API's error (`{"error":{"code","message"}}`) of a non-2xx answer, as an error.
pub(crate) async fn check(resp: Response, what: &str) -> anyhow::Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => bail!(
            "{what}: {} ({}, HTTP {})",
            b.error.message,
            b.error.code,
            status.as_u16()
        ),
        Err(_) => bail!(
            "{what}: HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        ),
    }
}

/// `/v1/sandboxes/{id}` and below, the id encoded.
pub(crate) fn sandbox_path(id: &str, rest: &str) -> String {
    format!("/v1/sandboxes/{}{rest}", encode(id))
}

/// Percent-encodes a path component by component (keeps `/`).
pub(crate) fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
