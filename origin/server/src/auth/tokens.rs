//! The tokens file (per token: its sha256, scope, user and name; never the plaintext), the legacy single admin token, and issuing new tokens.
//!
//! ```toml
//! [[token]]
//! name = "alice-laptop"
//! hash = "sha256:9f86d0…"   # sha256 of the token's text
//! scope = "sandbox"         # read | push | sandbox | admin
//! user = "alice"            # sandbox tokens only: the user every sandbox it makes belongs to
//! ```

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use prewarm_shared::Digest;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// What a token may do. Each scope's routes are listed in [`super::table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// GET blocks, manifests, tags, warm and snapshot stats, `/metrics`.
    Read,
    /// `read`, and uploads: blocks, manifests, tags, the missing-blocks query, warm requests.
    Push,
    /// `read`, and sandboxes and snapshots of the token's own user only.
    Sandbox,
    /// Everything, for any user (the body's or query's `user_id` names whom it acts for).
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Push => "push",
            Scope::Sandbox => "sandbox",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "push" => Ok(Scope::Push),
            "sandbox" => Ok(Scope::Sandbox),
            "admin" => Ok(Scope::Admin),
            _ => Err(format!(
                "unknown scope {s:?} (one of read, push, sandbox, admin)"
            )),
        }
    }
}

/// One `[[token]]` of the tokens file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// For logs and for the operator; never a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// sha256 of the token's text, as `sha256:<hex>`.
    pub hash: Digest,
    pub scope: Scope,
    /// The user a `sandbox` token acts as (required there, refused on other scopes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// Who a valid token is.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The entry's name, or `token-file` for the legacy token, or `#N` (its place in the file).
    pub name: String,
    pub scope: Scope,
    /// Set exactly for `sandbox` tokens.
    pub user: Option<String>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Grant({} {}", self.name, self.scope.as_str())?;
        if let Some(u) = &self.user {
            write!(f, " user={u}")?;
        }
        f.write_str(")")
    }
}

/// Why a tokens file (or the token file) could not be used. Start-up fails on it; a reload
/// keeps the tokens it had.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {0} is empty")]
    EmptyTokenFile(PathBuf),
    #[error("tokens file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Largest user id a sandbox token may carry (as the sandbox routes accept).
pub const MAX_USER_BYTES: usize = 256;

/// The valid tokens: hashes only.
#[derive(Debug, Default)]
pub struct TokenSet {
    entries: Vec<(Digest, Grant)>,
}

impl TokenSet {
    /// Reads the legacy token file (plaintext, one token, an admin) and the tokens file.
    pub fn load(
        token_file: Option<&Path>,
        tokens_file: Option<&Path>,
    ) -> Result<Self, TokensError> {
        let mut set = TokenSet::default();
        if let Some(f) = token_file {
            let raw = read(f)?;
            let t = raw.trim();
            if t.is_empty() {
                return Err(TokensError::EmptyTokenFile(f.to_owned()));
            }
            let grant = Grant {
                name: "token-file".into(),
                scope: Scope::Admin,
                user: None,
            };
            set.entries.push((Digest::of(t.as_bytes()), grant));
        }
        if let Some(f) = tokens_file {
            let invalid = |message: String| TokensError::Invalid {
                path: f.to_owned(),
                message,
            };
            let parsed = parse(&read(f)?).map_err(invalid)?;
            for (d, g) in parsed.entries {
                if set.entries.iter().any(|(h, _)| *h == d) {
                    return Err(invalid(format!(
                        "token {} has the same hash as the --token-file token",
                        g.name
                    )));
                }
                set.entries.push((d, g));
            }
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The grant of a presented token. Every entry is compared, in constant time per entry,
    /// so the answer's timing does not depend on which entry (if any) matched.
    pub fn find(&self, presented: &str) -> Option<&Grant> {
        let h = Digest::of(presented.as_bytes());
        let mut found = None;
        for (d, g) in &self.entries {
            if bool::from(d.as_bytes().ct_eq(h.as_bytes())) {
                found = Some(g);
            }
        }
        found
    }
}

fn read(path: &Path) -> Result<String, TokensError> {
    std::fs::read_to_string(path).map_err(|source| TokensError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses and checks a tokens file's text: scopes and users agree, no hash twice.
pub fn parse(text: &str) -> Result<TokenSet, String> {
    let file: TokensFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut seen = HashSet::new();
    let mut entries = Vec::new();
    for (i, e) in file.token.into_iter().enumerate() {
        let name = e.name.clone().unwrap_or_else(|| format!("#{}", i + 1));
        check_entry(&e).map_err(|m| format!("token {name}: {m}"))?;
        if !seen.insert(e.hash) {
            return Err(format!("token {name}: hash {} appears twice", e.hash));
        }
        let grant = Grant {
            name,
            scope: e.scope,
            user: e.user,
        };
        entries.push((e.hash, grant));
    }
    Ok(TokenSet { entries })
}

/// A user id a sandbox token may carry: 1-256 bytes, no control characters.
pub fn check_user(u: &str) -> Result<(), String> {
    if u.is_empty() || u.len() > MAX_USER_BYTES {
        return Err(format!("user must be 1-{MAX_USER_BYTES} bytes"));
    }
    if u.chars().any(char::is_control) {
        return Err("user must not contain control characters".into());
    }
    Ok(())
}

fn check_entry(e: &TokenEntry) -> Result<(), String> {
    match (e.scope, &e.user) {
        (Scope::Sandbox, None) => Err("a sandbox token needs a user".into()),
        (Scope::Sandbox, Some(u)) => check_user(u),
        (s, Some(_)) => Err(format!(
            "user is only for sandbox tokens, not {}",
            s.as_str()
        )),
        (_, None) => Ok(()),
    }
}

/// Prefix of issued tokens, so one found in a log or a repository is recognisable.
pub const TOKEN_PREFIX: &str = "pwt_";

/// A new token: 32 bytes from the operating system's RNG, hex, with [`TOKEN_PREFIX`]. Returns
/// its text (shown once, never stored) and the entry for the tokens file.
pub fn issue(
    scope: Scope,
    user: Option<String>,
    name: Option<String>,
) -> Result<(String, TokenEntry), String> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut raw)
        .map_err(|e| format!("the OS random number generator failed: {e}"))?;
    let text = format!("{TOKEN_PREFIX}{}", hex::encode(raw));
    let entry = TokenEntry {
        name,
        hash: Digest::of(text.as_bytes()),
        scope,
        user,
    };
    check_entry(&entry)?;
    Ok((text, entry))
}

/// The entry as a `[[token]]` table, to append to a tokens file.
pub fn entry_toml(e: &TokenEntry) -> String {
    #[derive(Serialize)]
    struct One<'a> {
        token: [&'a TokenEntry; 1],
    }
    toml::to_string(&One { token: [e] }).unwrap_or_default()
}
