//! `prewarm import` argument parsing and wiring (the work is in `prewarm_image`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use prewarm_client::pack::PackLimits;
use prewarm_client::push::PushOptions;
use prewarm_image::{import, ImportRequest, Platform, Sidecar};

use crate::cli_output;

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// An OCI image layout directory, an OCI archive, or a `docker save` archive (gzip or zstd
    /// compressed archives too).
    image: PathBuf,
    /// NAME:TAG to publish under.
    #[arg(long)]
    name: String,
    /// Destination: an origin URL (`http://…`) or a local store directory.
    #[arg(long)]
    to: String,
    /// Bearer token for the origin's writes.
    #[arg(long, env = "PREWARM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// OS/ARCH[/VARIANT] to take from a multi-platform index (default: this machine's).
    #[arg(long)]
    platform: Option<String>,
    /// Which image of an archive or layout holding several (its ref name or repo tag).
    #[arg(long = "ref")]
    reference: Option<String>,
    /// TOML giving what the image lacks: prefix, root, warm, env, lock, interpreters.
    #[arg(long)]
    sidecar: Option<PathBuf>,
    /// Where sandboxes mount the runtime (default /runtime).
    #[arg(long)]
    prefix: Option<String>,
    /// The image directory that becomes the runtime (default: the prefix; `/`: everything).
    #[arg(long)]
    root: Option<String>,
    /// A warm command as a JSON array, e.g. '["python3","-m","compileall","-q","/opt/py"]';
    /// repeat for several (replaces the sidecar's).
    #[arg(long = "warm")]
    warm: Vec<String>,
    /// KEY=VALUE added to the runtime's env (over the image's Env and the sidecar's).
    #[arg(long = "env")]
    env: Vec<String>,
    /// A lock.json for the runtime.
    #[arg(long)]
    lock: Option<PathBuf>,
    /// Print a JSON report instead of the digest.
    #[arg(long)]
    json: bool,
    /// Refuse images whose layers unpack to more than this many bytes in total.
    #[arg(long, default_value_t = PackLimits::default().max_total_bytes)]
    max_unpacked_bytes: u64,
    /// Refuse images whose layers hold more than this many entries in total.
    #[arg(long, default_value_t = PackLimits::default().max_entries)]
    max_entries: u64,
}

pub(crate) async fn run(a: ImportArgs) -> anyhow::Result<()> {
    let (name, tag) = crate::parse_name_tag(&a.name)?;
    let platform = match &a.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let mut warm = Vec::new();
    for w in &a.warm {
        let argv: Vec<String> = serde_json::from_str(w)
            .with_context(|| format!("--warm {w:?}: expected a JSON array of strings"))?;
        warm.push(argv);
    }
    let mut env = BTreeMap::new();
    for kv in &a.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_string(), v.to_string());
            }
            _ => bail!("--env {kv:?}: expected KEY=VALUE"),
        }
    }
    let flags = Sidecar {
        prefix: a.prefix,
        root: a.root,
        warm,
        env,
        lock: a.lock,
        interpreters: None,
    };
    let spec = match &a.sidecar {
        Some(p) => Sidecar::read(p)?.overlay(flags),
        None => flags,
    };
    let sink = crate::sink_for(&a.to, a.token).await?;
    let req = ImportRequest {
        image: a.image.clone(),
        name,
        tag,
        platform,
        reference: a.reference,
        spec,
        limits: PackLimits {
            max_total_bytes: a.max_unpacked_bytes,
            max_entries: a.max_entries,
        },
    };
    let report = import(req, sink.as_ref(), PushOptions::default())
        .await
        .with_context(|| format!("importing {} to {}", a.image.display(), a.to))?;
    cli_output::result(&report, a.json, |r| r.push.digest.to_string());
    Ok(())
}
