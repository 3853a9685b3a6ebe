//! The image config mapped onto a runtime's `meta.json`: `Env` carried over, the rest reported by name.

use std::collections::BTreeMap;

use prewarm_shared::{LockFile, Meta, RelPath};

use crate::error::ImportError;
use crate::resolve::Resolved;
use crate::spec::Sidecar;

const DEFAULT_PREFIX: &str = "/runtime";

/// What the import will build: meta, lock, the image directory to take, and what of the
/// config could not be carried over.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) meta: Meta,
    pub(crate) lock: Option<LockFile>,
    /// The image directory that becomes the runtime; `None`: the whole filesystem.
    pub(crate) root: Option<RelPath>,
    pub(crate) unmapped: Vec<String>,
}

/// Why a config field has no place in a runtime.
fn reason(key: &str) -> &'static str {
    match key {
        "WorkingDir" => "sandboxes always start in /workspace",
        "User" => "sandboxed commands always run as the node's sandbox uid (--sandbox-uid)",
        "Entrypoint" | "Cmd" => {
            "a sandbox starts no process of its own; exec runs what it is given"
        }
        "ExposedPorts" => "sandboxes take no inbound connections",
        "Volumes" => "the runtime is read-only; a sandbox writes to /workspace",
        "Healthcheck" | "StopSignal" => "prewarm does not supervise a main process",
        _ => "no prewarm equivalent",
    }
}

fn is_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(false) => true,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn abs_to_rel(what: &str, p: &str) -> Result<Option<RelPath>, ImportError> {
    let inner = p
        .strip_prefix('/')
        .ok_or_else(|| ImportError::Spec(format!("{what} {p:?} must be an absolute path")))?;
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if inner.is_empty() {
        return Ok(None);
    }
    inner
        .parse()
        .map(Some)
        .map_err(|e| ImportError::Spec(format!("{what} {p:?}: {e}")))
}

pub(crate) fn map(
    image: &Resolved,
    name: &str,
    version: &str,
    spec: &Sidecar,
) -> Result<Mapped, ImportError> {
    let prefix = spec.prefix.clone().unwrap_or_else(|| DEFAULT_PREFIX.into());
    let root_path = spec.root.clone().unwrap_or_else(|| prefix.clone());
    let root = abs_to_rel("root", &root_path)?;
    let mut unmapped = Vec::new();
    let mut env = BTreeMap::new();
    let cfg = image.config_json.get("config").and_then(|c| c.as_object());
    for (key, value) in cfg.into_iter().flatten() {
        if key == "Env" {
            for kv in value.as_array().into_iter().flatten() {
                match kv.as_str().and_then(|s| s.split_once('=')) {
                    Some((k, v)) if !k.is_empty() => {
                        env.insert(k.to_string(), v.to_string());
                    }
                    _ => unmapped.push(format!("Env entry {kv}: not KEY=VALUE")),
                }
            }
        } else if !(is_empty(value) || key == "WorkingDir" && value == "/") {
            unmapped.push(format!("{key} {value}: {}", reason(key)));
        }
    }
    let root_dir = root_path.trim_end_matches('/');
    if root_dir != prefix {
        let under = |c: &str| c == root_dir || c.starts_with(&format!("{root_dir}/"));
        let moved: Vec<&String> = env
            .iter()
            .filter(|(_, v)| v.split(':').any(under))
            .map(|(k, _)| k)
            .collect();
        if !moved.is_empty() {
            unmapped.push(format!(
                "Env {moved:?} name paths under {root_path}, which sandboxes see at {prefix}: \
                 not rewritten (set them in the sidecar's [env])"
            ));
        }
    }
    env.extend(spec.env.clone());
    let layers: Vec<String> = image
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| match l.digest.or(l.tar_digest) {
            Some(d) => format!("{:02}-sha256-{}", i + 1, d.hex()),
            None => format!("{:02}", i + 1),
        })
        .collect();
    let mut meta_json = serde_json::json!({
        "name": name,
        "version": version,
        "layers": layers,
        "prefix": prefix,
        "env": env,
        "warm": spec.warm,
    });
    if let Some(i) = &spec.interpreters {
        let v =
            serde_json::to_value(i).map_err(|e| ImportError::Spec(format!("interpreters: {e}")))?;
        meta_json["interpreters"] = v;
    }
    let bytes =
        serde_json::to_vec(&meta_json).map_err(|e| ImportError::Spec(format!("meta.json: {e}")))?;
    let meta = Meta::parse(&bytes).map_err(|e| ImportError::Spec(e.to_string()))?;
    let lock = match &spec.lock {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(ImportError::io(p.display()))?;
            Some(LockFile::parse(&bytes, &meta).map_err(|e| ImportError::Spec(e.to_string()))?)
        }
        None => None,
    };
    Ok(Mapped {
        meta,
        lock,
        root,
        unmapped,
    })
}
