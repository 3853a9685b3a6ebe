//! Warmed runtimes: the key a warm's result is shared under, and who made it with which inputs.
//!
//! A node that ran a runtime's warm commands publishes the result as a manifest whose
//! `parent` is the runtime's manifest and whose [`crate::Manifest::warmed`] says who warmed it
//! and with what. Other nodes on the same platform look it up by [`WarmKey`] and fetch it
//! instead of warming (docs/FORMAT.md, "Warmed runtimes").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::name::{RuntimeName, Tag};

/// The reserved runtime name warmed manifests are tagged under: `prewarm-warmed:w-<key hex>`.
pub const WARMED_NAME: &str = "prewarm-warmed";

/// Everything that shapes a warm's result, hashed into its [`WarmKey`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmInputs {
    /// The runtime's manifest (the warmed manifest's `parent`).
    pub runtime: Digest,
    /// The warm commands, in order, as run.
    pub warm: Vec<Vec<String>>,
    /// The environment they ran with.
    pub env: BTreeMap<String, String>,
    /// `std::env::consts::OS` of the node that ran them (`linux`).
    pub os: String,
    /// `std::env::consts::ARCH` of the node that ran them (`x86_64`, `aarch64`).
    pub arch: String,
}

impl WarmInputs {
    /// The inputs of warming `runtime` with `warm` and `env` on this build's platform.
    pub fn here(runtime: Digest, warm: Vec<Vec<String>>, env: BTreeMap<String, String>) -> Self {
        Self {
            runtime,
            warm,
            env,
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        }
    }

    /// SHA-256 of the inputs' compact JSON (fields in declaration order, env sorted): the same
    /// inputs give the same key on every node; any difference gives another.
    pub fn key(&self) -> WarmKey {
        let json = serde_json::to_vec(self).expect("warm inputs serialise: all keys are strings");
        WarmKey(Digest::of(&json))
    }
}

/// Where a warmed runtime is found: a digest of its [`WarmInputs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WarmKey(pub Digest);

impl WarmKey {
    /// The tag the warmed manifest of this key is published under (name [`WARMED_NAME`]).
    pub fn tag(&self) -> (RuntimeName, Tag) {
        let name = WARMED_NAME.parse().expect("the reserved name is valid");
        let tag = format!("w-{}", self.0.hex())
            .parse()
            .expect("w- and 64 hex digits is a valid tag");
        (name, tag)
    }
}

/// A warmed manifest's provenance: who ran the warm commands, and the inputs they ran with.
/// A node uses a warmed manifest only if these inputs are exactly its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmedBy {
    /// The publishing node's name (`[node] name`).
    pub node: String,
    /// The prewarm version that warmed it.
    pub prewarm: String,
    pub inputs: WarmInputs,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> WarmInputs {
        WarmInputs {
            runtime: Digest::of(b"runtime"),
            warm: vec![vec!["python".into(), "-m".into(), "compileall".into()]],
            env: BTreeMap::from([("A".into(), "1".into())]),
            os: "linux".into(),
            arch: "x86_64".into(),
        }
    }

    #[test]
    fn every_input_changes_the_key_and_the_key_is_pinned() {
        let base = inputs();
        // Pinned: a change here orphans every warmed manifest already published.
        let json = format!(
            r#"{{"runtime":"{}","warm":[["python","-m","compileall"]],"env":{{"A":"1"}},"os":"linux","arch":"x86_64"}}"#,
            Digest::of(b"runtime")
        );
        assert_eq!(base.key().0, Digest::of(json.as_bytes()));
        let mut variants = vec![];
        let mut v = inputs();
        v.runtime = Digest::of(b"other");
        variants.push(v);
        let mut v = inputs();
        v.warm[0].push("-q".into());
        variants.push(v);
        let mut v = inputs();
        v.env.insert("B".into(), "2".into());
        variants.push(v);
        let mut v = inputs();
        v.os = "macos".into();
        variants.push(v);
        let mut v = inputs();
        v.arch = "aarch64".into();
        variants.push(v);
        for v in variants {
            assert_ne!(v.key(), base.key(), "{v:?}");
        }
        let (name, tag) = base.key().tag();
        assert_eq!(name.as_str(), WARMED_NAME);
        assert_eq!(tag.as_str(), format!("w-{}", base.key().0.hex()));
    }
}
