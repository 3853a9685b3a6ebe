//! The worker's settings, read from `wrangler.toml` vars (overridable with `wrangler dev --var`).

use crate::error::EdgeError;

/// Var naming the origin base URL, e.g. `http://127.0.0.1:8080` (no trailing path). Used when
/// [`ORIGINS`] is unset: one origin, no region.
pub const ORIGIN_URL: &str = "ORIGIN_URL";
/// Var listing the origins as JSON, `[{"url":"https://…","region":"EU"},…]`, in order of
/// preference. It wins over [`ORIGIN_URL`] when both are set.
pub const ORIGINS: &str = "ORIGINS";
/// Var: bodies larger than this many bytes stream to the client while they are hashed (the last
/// chunk held back until the digest matched) instead of being hashed first. Unset or `0`: never.
/// Streaming gets a client its first bytes sooner but costs the worker about twice the CPU
/// (docs/BENCHMARKS.md).
pub const STREAM_ABOVE_BYTES: &str = "STREAM_ABOVE_BYTES";
/// Secret (or var) holding a bearer token the edge sends to every origin as
/// `Authorization: Bearer <token>`, for origins behind a gateway that admits only the edge. Set
/// it with `wrangler secret put ORIGIN_TOKEN`; never in `wrangler.toml`.
pub const ORIGIN_TOKEN: &str = "ORIGIN_TOKEN";
/// Var saying how long an origin that failed (connect error, 5xx, timeout) is tried last, in
/// milliseconds.
pub const ORIGIN_RETRY_AFTER_MS: &str = "ORIGIN_RETRY_AFTER_MS";
/// Var bounding one origin round trip (headers and body), in milliseconds.
pub const ORIGIN_TIMEOUT_MS: &str = "ORIGIN_TIMEOUT_MS";
/// Var saying how long a tag resolution stays in the edge cache, in seconds (0: not cached).
pub const TAG_TTL_SECONDS: &str = "TAG_TTL_SECONDS";

/// Default origin timeout: long enough for an 8 MiB block over a slow link, short enough that a
/// hung origin is reported before clients give up.
pub const DEFAULT_ORIGIN_TIMEOUT_MS: u64 = 30_000;
/// Default tag TTL: a moved tag shows at every edge within a minute.
pub const DEFAULT_TAG_TTL_SECONDS: u64 = 60;
/// Default memory of a failed origin: long enough that a dead origin costs one failed attempt
/// per isolate every half minute, short enough that a restarted one is back in use quickly.
pub const DEFAULT_ORIGIN_RETRY_AFTER_MS: u64 = 30_000;

/// A secret string whose `Debug` never shows it, so a logged config cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One origin: its base URL and, optionally, the region it serves best.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSpec {
    /// Base URL without a trailing slash.
    pub url: String,
    /// Matched against the request's data centre (`cf.colo`, e.g. `FRA`) or continent
    /// (`cf.continent`, e.g. `EU`), case-insensitively; the first origin that matches is tried
    /// first.
    #[serde(default)]
    pub region: Option<String>,
}

/// Validated settings for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The origins in configured order (at least one), each URL without a trailing slash.
    pub origins: Vec<OriginSpec>,
    /// One attempt at one origin, headers and body.
    pub origin_timeout_ms: u64,
    pub tag_ttl_seconds: u64,
    pub origin_retry_after_ms: u64,
    /// Sent to the origins as a bearer token when set.
    pub origin_token: Option<Secret>,
    /// Relayed bodies larger than this stream to the client; `None`: all are hashed first.
    pub stream_above: Option<u64>,
}

impl Config {
    /// Builds the config from a var lookup (the adapter passes `env.var(..)`), failing with a
    /// message that names the var rather than guessing a value.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, EdgeError> {
        let listed = var(ORIGINS).filter(|s| !s.trim().is_empty());
        let (name, specs) = match listed {
            Some(json) => {
                let specs: Vec<OriginSpec> = serde_json::from_str(&json).map_err(|e| {
                    EdgeError::Config(format!(
                        "var {ORIGINS} must be a JSON list of {{\"url\",\"region\"}}: {e}"
                    ))
                })?;
                if specs.is_empty() {
                    return Err(EdgeError::Config(format!("var {ORIGINS} is an empty list")));
                }
                (ORIGINS, specs)
            }
            None => {
                let url = var(ORIGIN_URL)
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| {
                        EdgeError::Config(format!("neither {ORIGINS} nor {ORIGIN_URL} is set"))
                    })?;
                (ORIGIN_URL, vec![OriginSpec { url, region: None }])
            }
        };
        let origins = specs
            .into_iter()
            .map(|spec| {
                let url = base_url(&spec.url).ok_or_else(|| {
                    EdgeError::Config(format!("var {name} must hold http(s) base URLs"))
                })?;
                let region = spec.region.filter(|r| !r.trim().is_empty());
                Ok(OriginSpec { url, region })
            })
            .collect::<Result<_, EdgeError>>()?;
        Ok(Self {
            origins,
            origin_timeout_ms: number(&var, ORIGIN_TIMEOUT_MS, DEFAULT_ORIGIN_TIMEOUT_MS)?,
            tag_ttl_seconds: number(&var, TAG_TTL_SECONDS, DEFAULT_TAG_TTL_SECONDS)?,
            origin_retry_after_ms: number(
                &var,
                ORIGIN_RETRY_AFTER_MS,
                DEFAULT_ORIGIN_RETRY_AFTER_MS,
            )?,
            origin_token: var(ORIGIN_TOKEN)
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .map(Secret),
            stream_above: Some(number(&var, STREAM_ABOVE_BYTES, 0)?).filter(|n| *n > 0),
        })
    }

    /// A config with one origin and the defaults, for tests and tools.
    pub fn single(origin: &str) -> Self {
        Self {
            origins: vec![OriginSpec {
                url: origin.trim_end_matches('/').to_string(),
                region: None,
            }],
            origin_timeout_ms: DEFAULT_ORIGIN_TIMEOUT_MS,
            tag_ttl_seconds: DEFAULT_TAG_TTL_SECONDS,
            origin_retry_after_ms: DEFAULT_ORIGIN_RETRY_AFTER_MS,
            origin_token: None,
            stream_above: None,
        }
    }
}

/// An http(s) base URL without its trailing slash, or `None` when it is not one.
fn base_url(raw: &str) -> Option<String> {
    let url = raw.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    (!rest.is_empty() && !rest.contains(['?', '#', ' '])).then(|| url.to_string())
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
        assert_eq!(c, Config::single("http://127.0.0.1:8080"));
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
        for bad in [
            "[]",
            "{}",
            "[{\"url\":\"ftp://x\"}]",
            "[{\"uri\":\"http://x\"}]",
        ] {
            let err =
                Config::from_vars(vars(&[(ORIGINS, bad), (ORIGIN_URL, "http://o")])).unwrap_err();
            assert_eq!(err.status(), 500);
            assert!(err.to_string().contains(ORIGINS), "{bad}: {err}");
        }
    }

    #[test]
    fn origins_win_over_origin_url_and_keep_their_order() {
        let list = r#"[{"url":"https://a.example/","region":"EU"},{"url":"http://b:8080"}]"#;
        let c = Config::from_vars(vars(&[
            (ORIGINS, list),
            (ORIGIN_URL, "http://ignored"),
            (ORIGIN_RETRY_AFTER_MS, "500"),
        ]))
        .unwrap();
        let urls: Vec<_> = c.origins.iter().map(|o| o.url.as_str()).collect();
        assert_eq!(urls, ["https://a.example", "http://b:8080"]);
        assert_eq!(c.origins[0].region.as_deref(), Some("EU"));
        assert_eq!(c.origins[1].region, None);
        assert_eq!(c.origin_retry_after_ms, 500);
        assert_eq!((c.origin_token.clone(), c.stream_above), (None, None));
        let c = Config::from_vars(vars(&[
            (ORIGIN_URL, "http://o"),
            (STREAM_ABOVE_BYTES, "1024"),
        ]))
        .unwrap();
        assert_eq!(c.stream_above, Some(1024));
        let c = Config::from_vars(vars(&[
            (ORIGIN_URL, "http://o"),
            (ORIGIN_TOKEN, " s3cr3t\n"),
        ]))
        .unwrap();
        assert_eq!(c.origin_token.as_ref().map(Secret::expose), Some("s3cr3t"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        // An empty ORIGINS (a blank var) falls back to ORIGIN_URL.
        let c = Config::from_vars(vars(&[(ORIGINS, " "), (ORIGIN_URL, "http://o")])).unwrap();
        assert_eq!(c.origins.len(), 1);
    }
}
