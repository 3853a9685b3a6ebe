//! A runtime pack's declared metadata (`meta.json`, `lock.json`) and its cache key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Why `meta.json` or `lock.json` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("{file}: {message}")]
    Invalid { file: &'static str, message: String },
}

impl PackError {
    /// Stable machine code for API error bodies.
    pub fn code(&self) -> &'static str {
        "bad_pack"
    }
}

fn default_prefix() -> String {
    "/runtime".to_string()
}

/// `meta.json`. Unknown keys are an error: a typo in `warm` must not silently skip warm-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub name: String,
    pub version: String,
    /// Layer names, applied in this order; `layers/<name>.tar{,.gz,.zst}` each.
    pub layers: Vec<String>,
    /// Absolute path where the runtime expects to live; sandboxes mount it exactly there,
    /// because runtimes (CPython among them) are often not relocatable.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Commands run once after materialising, in the runtime's environment (e.g. compileall).
    #[serde(default)]
    pub warm: Vec<Vec<String>>,
    /// Long-lived interpreters sandboxes of this runtime can `run` code in, by language
    /// (only `python` today); see [`Interpreter`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub interpreters: BTreeMap<String, Interpreter>,
}

/// One entry of `meta.json`'s `interpreters`: how to start the language's interpreter, and what
/// to import before a pooled sandbox with it is handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interpreter {
    /// The interpreter's command (`["/opt/python-data/bin/python3"]`); the node appends the
    /// driver's own arguments.
    pub cmd: Vec<String>,
    /// Modules imported before a pooled interpreter is handed out (`["numpy", "pandas"]`).
    #[serde(default)]
    pub preload: Vec<String>,
}

/// The languages a node has a driver for (`meta.json` `interpreters` keys).
pub const INTERPRETER_LANGUAGES: &[&str] = &["python"];

impl Meta {
    /// Parses and checks `meta.json` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, PackError> {
        let meta: Meta =
            serde_json::from_slice(bytes).map_err(|e| invalid("meta.json", e.to_string()))?;
        meta.validate()?;
        Ok(meta)
    }

    /// Checks what serde cannot: names, prefix, commands.
    pub fn validate(&self) -> Result<(), PackError> {
        let bad = |m: String| Err(invalid("meta.json", m));
        if self.name.is_empty() || self.version.is_empty() {
            return bad("`name` and `version` must be non-empty".into());
        }
        for l in &self.layers {
            if l.is_empty()
                || l.starts_with('.')
                || !l
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return bad(format!(
                    "layer name {l:?} must be letters, digits, . _ - and not start with ."
                ));
            }
        }
        if let Some(dup) = self
            .layers
            .iter()
            .enumerate()
            .find(|(i, l)| self.layers[..*i].contains(l))
        {
            return bad(format!("layer {:?} is listed twice", dup.1));
        }
        let prefix_ok = self.prefix.starts_with('/')
            && self.prefix.len() > 1
            && !self.prefix.ends_with('/')
            && self.prefix[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..")
            && !self.prefix.contains('\0');
        if !prefix_ok {
            return bad(format!(
                "`prefix` {:?} must be an absolute, normalised path other than /",
                self.prefix
            ));
        }
        crate::sandbox::check_env("env", &self.env)
            .map_err(|e| invalid("meta.json", e.to_string()))?;
        for (i, c) in self.warm.iter().enumerate() {
            crate::sandbox::check_argv(&format!("warm command #{i}"), c)
                .map_err(|e| invalid("meta.json", e.to_string()))?;
        }
        for (lang, i) in &self.interpreters {
            if !INTERPRETER_LANGUAGES.contains(&lang.as_str()) {
                return bad(format!(
                    "interpreters: no driver for language {lang:?} (known: {})",
                    INTERPRETER_LANGUAGES.join(", ")
                ));
            }
            crate::sandbox::check_argv(&format!("interpreters.{lang}.cmd"), &i.cmd)
                .map_err(|e| invalid("meta.json", e.to_string()))?;
            for m in &i.preload {
                let ok = !m.is_empty()
                    && m.len() <= 256
                    && m.split('.').all(|part| {
                        part.chars()
                            .next()
                            .is_some_and(|c| c.is_alphabetic() || c == '_')
                            && part.chars().all(|c| c.is_alphanumeric() || c == '_')
                    });
                if !ok {
                    return bad(format!(
                        "interpreters.{lang}.preload: {m:?} is not a dotted module name"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One locked package and the layer that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

/// `lock.json`: what is installed, in install order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub packages: Vec<LockedPackage>,
}

impl LockFile {
    /// Parses `lock.json` and checks that every named layer exists in `meta`.
    pub fn parse(bytes: &[u8], meta: &Meta) -> Result<Self, PackError> {
        let lock: LockFile =
            serde_json::from_slice(bytes).map_err(|e| invalid("lock.json", e.to_string()))?;
        for p in &lock.packages {
            if let Some(l) = &p.layer {
                if !meta.layers.contains(l) {
                    return Err(invalid(
                        "lock.json",
                        format!(
                            "package {:?} names layer {l:?}, which meta.json does not list",
                            p.name
                        ),
                    ));
                }
            }
        }
        Ok(lock)
    }
}

fn invalid(file: &'static str, message: String) -> PackError {
    PackError::Invalid { file, message }
}

/// The pack cache key: `runtime-pack:v1:` + hex SHA-256 over the ordered layer digests, each
/// in its text form followed by `\n`. Same layers in the same order → same key, anywhere.
pub fn pack_key(layer_digests: &[Digest]) -> String {
    let mut h = crate::digest::Hasher::new();
    for d in layer_digests {
        h.update(d.to_string().as_bytes());
        h.update(b"\n");
    }
    format!("runtime-pack:v1:{}", h.finish().hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let e = Meta::parse(br#"{"name":"p","version":"1","layers":[],"wram":[]}"#).unwrap_err();
        assert!(e.to_string().contains("wram"), "{e}");
        let meta = Meta::parse(br#"{"name":"p","version":"1","layers":["base"]}"#).unwrap();
        assert_eq!(meta.prefix, "/runtime");
        let e = LockFile::parse(
            br#"{"packages":[{"name":"a","version":"1","layr":"x"}]}"#,
            &meta,
        )
        .unwrap_err();
        assert!(e.to_string().contains("layr"), "{e}");
        let e = LockFile::parse(
            br#"{"packages":[{"name":"a","version":"1","layer":"x"}]}"#,
            &meta,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"x\""), "{e}");
    }

    #[test]
    fn bad_meta_values() {
        for bad in [
            r#"{"name":"p","version":"1","layers":["../x"]}"#,
            r#"{"name":"p","version":"1","layers":["a","a"]}"#,
            r#"{"name":"p","version":"1","layers":[],"prefix":"rel"}"#,
            r#"{"name":"p","version":"1","layers":[],"prefix":"/a/../b"}"#,
            r#"{"name":"p","version":"1","layers":[],"warm":[[]]}"#,
        ] {
            assert!(Meta::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        // Nothing a command could be started with: refused at push, naming the key.
        for (bad, names) in [
            (
                r#"{"name":"p","version":"1","layers":[],"env":{"LANG":"C\u0000"}}"#,
                "env.LANG",
            ),
            (
                r#"{"name":"p","version":"1","layers":[],"env":{"A=B":"1"}}"#,
                "\"A=B\"",
            ),
            (
                r#"{"name":"p","version":"1","layers":[],"warm":[["x","\u0000"]]}"#,
                "warm command #0[1]",
            ),
        ] {
            let e = Meta::parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(
                e.starts_with("meta.json") && e.contains(names),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn interpreters_are_checked() {
        let ok = Meta::parse(
            br#"{"name":"p","version":"1","layers":[],"interpreters":{"python":{"cmd":["/opt/p/bin/python3"],"preload":["numpy","os.path"]}}}"#,
        )
        .unwrap();
        assert_eq!(ok.interpreters["python"].preload, ["numpy", "os.path"]);
        for (bad, names) in [
            (r#"{"python":{"cmd":[]}}"#, "interpreters.python.cmd"),
            (r#"{"ruby":{"cmd":["ruby"]}}"#, "\"ruby\""),
            (
                r#"{"python":{"cmd":["p"],"preload":["os; rm"]}}"#,
                "preload",
            ),
            (r#"{"python":{"cmd":["p"],"prelaod":[]}}"#, "prelaod"),
        ] {
            let meta = format!(r#"{{"name":"p","version":"1","layers":[],"interpreters":{bad}}}"#);
            let e = Meta::parse(meta.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(names), "{bad}: {e}");
        }
        // Absent: serialised as before, so existing meta.json bytes round-trip.
        let plain = Meta::parse(br#"{"name":"p","version":"1","layers":[]}"#).unwrap();
        assert!(!serde_json::to_string(&plain)
            .unwrap()
            .contains("interpreters"));
    }

    #[test]
    fn pack_key_vector() {
        // Fixed vector, also in docs/FORMAT.md.
        let key = pack_key(&[Digest::of(b"base"), Digest::of(b"numpy")]);
        assert_eq!(
            key,
            "runtime-pack:v1:4a65e8f83b71fe5fec7616ba91581b689f523bcadc5c40e003eea4b2f02b09a3"
        );
        assert_ne!(key, pack_key(&[Digest::of(b"numpy"), Digest::of(b"base")]));
    }
}
