//! `prewarm sandbox ls|rm|cp`: a sandbox's state and files; copies in and out like `docker cp` (files streamed, directories as tar).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use futures::TryStreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use super::api::{check, encode, sandbox_path, Api, ApiArgs};
use super::{delete_sandbox, split_target};
use crate::cli_output;

/// Bytes in flight between tar and the network.
const PIPE_BYTES: usize = 256 << 10;

#[derive(Args)]
pub(crate) struct LsArgs {
    /// `ID` (the sandbox's state) or `ID:PATH` (a directory's entries; `ID:` is the workspace).
    target: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub(crate) struct RmArgs {
    /// `ID` (the sandbox) or `ID:PATH` (a file, symlink or directory in it).
    target: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub(crate) struct CpArgs {
    /// `LOCAL` or `ID:PATH`.
    src: String,
    /// `ID:PATH` or `LOCAL` (the other side of SRC).
    dst: String,
    #[command(flatten)]
    api: ApiArgs,
}

fn files_path(id: &str, path: &str) -> String {
    if path.is_empty() {
        sandbox_path(id, "/files")
    } else {
        sandbox_path(id, &format!("/files/{}", encode(path)))
    }
}

pub(super) async fn ls(a: LsArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&a.api)?;
    let (id, path) = split_target(&a.target);
    let Some(path) = path else {
        let req = api.request(Method::GET, &sandbox_path(id, ""));
        let info = api.json(req, &format!("reading sandbox {id}")).await?;
        cli_output::result(&info, a.api.json, |i| {
            format!(
                "{id} {} {} {}",
                i["runtime"].as_str().unwrap_or("?"),
                i["status"].as_str().unwrap_or("?"),
                i["step"].as_str().unwrap_or("?")
            )
        });
        return Ok(ExitCode::SUCCESS);
    };
    let req = api.request(Method::GET, &format!("{}?list", files_path(id, path)));
    let listing = api.json(req, &format!("listing {id}:{path}")).await?;
    cli_output::result(&listing, a.api.json, |l| {
        let rows: Vec<String> = l["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let link = e["target"]
                    .as_str()
                    .map(|t| format!(" -> {t}"))
                    .unwrap_or_default();
                format!(
                    "{:<7} {:04o} {:>12} {}{link}",
                    e["type"].as_str().unwrap_or("?"),
                    e["mode"].as_u64().unwrap_or(0),
                    e["size"].as_u64().unwrap_or(0),
                    e["name"].as_str().unwrap_or("?")
                )
            })
            .collect();
        rows.join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn rm(a: RmArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&a.api)?;
    let (id, path) = split_target(&a.target);
    match path {
        None => delete_sandbox(&api, id).await?,
        Some("") => bail!(
            "{}: give a path to remove, or just the id to delete the sandbox",
            a.target
        ),
        Some(p) => {
            let req = api.request(Method::DELETE, &files_path(id, p));
            api.send(req, &format!("removing {id}:{p}")).await?;
        }
    }
    let done = serde_json::json!({"removed": a.target});
    cli_output::result(&done, a.api.json, |_| format!("removed {}", a.target));
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn cp(a: CpArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&a.api)?;
    let report = match (remote(&a.src), remote(&a.dst)) {
        (None, Some((id, path))) => upload(&api, Path::new(&a.src), id, path).await?,
        (Some((id, path)), None) => download(&api, id, path, Path::new(&a.dst)).await?,
        _ => bail!("cp copies between this host and a sandbox: one of SRC and DST must be ID:PATH, the other a local path"),
    };
    cli_output::result(&report, a.api.json, |r| {
        format!(
            "{} -> {}",
            r["from"].as_str().unwrap_or(""),
            r["to"].as_str().unwrap_or("")
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// `ID:PATH` as (id, path); a local path (with no `:` before its first `/`) is `None`.
fn remote(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    if s[..colon].contains('/') || colon == 0 {
        return None;
    }
    let (id, path) = split_target(s);
    Some((id, path.unwrap_or("")))
}

/// Whether `path` is a directory in the sandbox (`?list` answers).
async fn remote_dir(api: &Api, id: &str, path: &str) -> anyhow::Result<bool> {
    let resp = api
        .request(Method::GET, &format!("{}?list", files_path(id, path)))
        .send()
        .await?;
    Ok(resp.status().is_success())
}

fn join(dir: &str, name: &str) -> String {
    match dir.trim_end_matches('/') {
        "" => name.to_string(),
        d => format!("{d}/{name}"),
    }
}

async fn upload(api: &Api, src: &Path, id: &str, path: &str) -> anyhow::Result<Value> {
    let meta = std::fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    let name = src
        .file_name()
        .and_then(|n| n.to_str())
        .context("the source has no usable file name")?
        .to_string();
    // Into an existing directory (or the workspace, `ID:`), under the source's own name.
    let dest = if path.is_empty() || path.ends_with('/') || remote_dir(api, id, path).await? {
        join(path, &name)
    } else {
        path.to_string()
    };
    let what = format!("copying {} to {id}:{dest}", src.display());
    if meta.is_dir() {
        let (reader, writer) = tokio::io::duplex(PIPE_BYTES);
        let mut out = SyncIoBridge::new(writer);
        let from = src.to_path_buf();
        let packing = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut tar = tar::Builder::new(&mut out);
            tar.follow_symlinks(false);
            tar.append_dir_all(".", &from)?;
            tar.finish()
        });
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(reader, PIPE_BYTES));
        let url = format!(
            "{}?dir={}",
            sandbox_path(id, "/files:upload"),
            encode(&dest)
        );
        let sent = api
            .json(api.request(Method::POST, &url).body(body), &what)
            .await;
        packing
            .await?
            .with_context(|| format!("reading {}", src.display()))?;
        let r = sent?;
        return Ok(
            serde_json::json!({"from": src, "to": format!("{id}:{dest}"), "entries": r["entries"]}),
        );
    }
    let file = tokio::fs::File::open(src)
        .await
        .with_context(|| format!("opening {}", src.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, PIPE_BYTES));
    let url = format!("{}?mode={mode:o}", files_path(id, &dest));
    let r = api
        .json(
            api.request(Method::PUT, &url)
                .header("content-length", meta.len())
                .body(body),
            &what,
        )
        .await?;
    Ok(serde_json::json!({"from": src, "to": format!("{id}:{dest}"), "size": r["size"]}))
}

async fn download(api: &Api, id: &str, path: &str, dst: &Path) -> anyhow::Result<Value> {
    let name = path.rsplit('/').next().unwrap_or("").to_string();
    let into_dir = dst.is_dir();
    let what = format!("copying {id}:{path} to {}", dst.display());
    let resp = if path.is_empty() {
        None
    } else {
        let r = api
            .request(Method::GET, &files_path(id, path))
            .send()
            .await?;
        (r.status() != StatusCode::CONFLICT).then_some(r)
    };
    if let Some(resp) = resp {
        // A file: written beside its destination and renamed over it.
        let resp = check(resp, &what).await?;
        let target = if into_dir {
            dst.join(&name)
        } else {
            dst.to_path_buf()
        };
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("writing into {}", dir.display()))?;
        let mut out = tokio::fs::File::from_std(tmp.reopen()?);
        let mut body =
            StreamReader::new(Box::pin(resp.bytes_stream().map_err(std::io::Error::other)));
        let n = tokio::io::copy(&mut body, &mut out)
            .await
            .with_context(|| what.clone())?;
        out.sync_all().await?;
        tmp.persist(&target)
            .with_context(|| format!("placing {}", target.display()))?;
        return Ok(serde_json::json!({"from": format!("{id}:{path}"), "to": target, "size": n}));
    }
    // A directory: its tar, unpacked where `cp -r` would put it.
    let target: PathBuf = if into_dir && !name.is_empty() {
        dst.join(&name)
    } else {
        dst.to_path_buf()
    };
    let resp = api
        .send(
            api.request(
                Method::GET,
                &format!("{}?archive=tar", files_path(id, path)),
            ),
            &what,
        )
        .await?;
    std::fs::create_dir_all(&target).with_context(|| format!("making {}", target.display()))?;
    let reader = SyncIoBridge::new(StreamReader::new(Box::pin(
        resp.bytes_stream().map_err(std::io::Error::other),
    )));
    let into = target.clone();
    tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.unpack(&into)
    })
    .await?
    .with_context(|| what.clone())?;
    Ok(serde_json::json!({"from": format!("{id}:{path}"), "to": target}))
}
