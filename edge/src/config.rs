//! The worker's settings, read from `wrangler.toml` vars (overridable with `wrangler dev --var`).

use crate::error::EdgeError;

/// Var naming the origin base URL, e.g. `http://127.0.0.1:8080` (no trailing path).
pub const ORIGIN_URL: &str = "ORIGIN_URL";
/// Var bounding one origin round trip (headers and body), in milliseconds.
pub const ORIGIN_TIMEOUT_MS: &str = "ORIGIN_TIMEOUT_MS";
/// Var saying how long a tag resolution stays in the edge cache, in seconds (0: not cached).
pub const TAG_TTL_SECONDS: &str = "TAG_TTL_SECONDS";

/// Default origin timeout: long enough for an 8 MiB block over a slow link, short enough that a
/// hung origin is reported before clients give up.
pub const DEFAULT_ORIGIN_TIMEOUT_MS: u64 = 30_000;
/// Default tag TTL: a moved tag shows at every edge within a minute.
pub const DEFAULT_TAG_TTL_SECONDS: u64 = 60;

/// Validated settings for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Origin base URL without a trailing slash.
    pub origin: String,
    pub origin_timeout_ms: u64,
    pub tag_ttl_seconds: u64,
}

impl Config {
    /// Builds the config from a var lookup (the adapter passes `env.var(..)`), failing with a
    /// message that names the var rather than guessing a value.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, EdgeError> {
        let origin = var(ORIGIN_URL)
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| EdgeError::Config(format!("var {ORIGIN_URL} is not set")))?;
        let rest = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if rest.is_none_or(|host| host.is_empty() || host.contains(['?', '#', ' '])) {
            return Err(EdgeError::Config(format!(
                "var {ORIGIN_URL} must be an http(s) base URL"
            )));
        }
        Ok(Self {
            origin,
            origin_timeout_ms: number(&var, ORIGIN_TIMEOUT_MS, DEFAULT_ORIGIN_TIMEOUT_MS)?,
            tag_ttl_seconds: number(&var, TAG_TTL_SECONDS, DEFAULT_TAG_TTL_SECONDS)?,
        })
    }
}

fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
) -> Result<u64, EdgeError> {
    match var(name) {
        None => Ok(default),
        Some(s) if s.trim().is_empty() => Ok(default),
        Some(s) => s.trim().parse().map_err(|_| {
            EdgeError::Config(format!("var {name} must be a whole number, got {s:?}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_and_trailing_slash() {
        let c = Config::from_vars(vars(&[(ORIGIN_URL, "http://127.0.0.1:8080/")])).unwrap();
        assert_eq!(c.origin, "http://127.0.0.1:8080");
        assert_eq!(c.origin_timeout_ms, DEFAULT_ORIGIN_TIMEOUT_MS);
        assert_eq!(c.tag_ttl_seconds, 60);
        let c = Config::from_vars(vars(&[
            (ORIGIN_URL, "https://origin.example"),
            (ORIGIN_TIMEOUT_MS, "1500"),
            (TAG_TTL_SECONDS, "0"),
        ]))
        .unwrap();
        assert_eq!((c.origin_timeout_ms, c.tag_ttl_seconds), (1500, 0));
    }

    #[test]
    fn misconfiguration_names_the_var() {
        for bad in [
            vars(&[]),
            vars(&[(ORIGIN_URL, "")]),
            vars(&[(ORIGIN_URL, "ftp://x")]),
            vars(&[(ORIGIN_URL, "http://")]),
        ] {
            let err = Config::from_vars(bad).unwrap_err();
            assert_eq!(err.status(), 500);
            assert!(err.to_string().contains(ORIGIN_URL), "{err}");
        }
        let err = Config::from_vars(vars(&[(ORIGIN_URL, "http://o"), (TAG_TTL_SECONDS, "-1")]))
            .unwrap_err();
        assert!(err.to_string().contains(TAG_TTL_SECONDS));
    }
}
