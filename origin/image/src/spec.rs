//! What an image lacks and the user supplies: the sidecar file (`prewarm.toml`-style) and the flags over it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ImportError;

/// The sidecar, e.g. `python-ml.prewarm.toml`:
///
/// ```toml
/// prefix = "/opt/python"           # where sandboxes mount the runtime (default /runtime)
/// root = "/opt/python"             # the image directory that becomes the runtime (default: prefix)
/// warm = [["/opt/python/bin/python3", "-m", "compileall", "-q", "/opt/python/lib"]]
/// lock = "lock.json"               # relative to the sidecar
/// [env]                            # added to (and over) the image's Env
/// PYTHONDONTWRITEBYTECODE = "1"
/// [interpreters.python]            # copied into meta.json as it is
/// cmd = ["/opt/python/bin/python3"]
/// ```
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub prefix: Option<String>,
    pub root: Option<String>,
    #[serde(default)]
    pub warm: Vec<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub lock: Option<PathBuf>,
    pub interpreters: Option<toml::Table>,
}

impl Sidecar {
    /// Reads and parses a sidecar; `lock` becomes relative to the sidecar's directory.
    ///
    /// # Errors
    /// [`ImportError::Spec`] naming the file and the key.
    pub fn read(path: &Path) -> Result<Self, ImportError> {
        let text = std::fs::read_to_string(path).map_err(ImportError::io(path.display()))?;
        let mut s: Sidecar = toml::from_str(&text)
            .map_err(|e| ImportError::Spec(format!("{}: {e}", path.display())))?;
        if let (Some(l), Some(dir)) = (&s.lock, path.parent()) {
            s.lock = Some(dir.join(l));
        }
        Ok(s)
    }

    /// Flags win over the sidecar: `prefix`, `root`, `lock` replace; `env` adds and replaces
    /// keys; `warm` commands given as flags replace the sidecar's list.
    pub fn overlay(mut self, flags: Sidecar) -> Self {
        if flags.prefix.is_some() {
            self.prefix = flags.prefix;
        }
        if flags.root.is_some() {
            self.root = flags.root;
        }
        if flags.lock.is_some() {
            self.lock = flags.lock;
        }
        if !flags.warm.is_empty() {
            self.warm = flags.warm;
        }
        if flags.interpreters.is_some() {
            self.interpreters = flags.interpreters;
        }
        self.env.extend(flags.env);
        self
    }
}
