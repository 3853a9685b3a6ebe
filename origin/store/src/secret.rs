//! Secrets in configuration: values that never print, and URLs that print with the password masked.

use std::fmt;

use serde::Deserialize;

/// A secret string: `Debug` and `Display` print `<redacted>`; [`Secret::expose`] is the only way in.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A URL that may carry a password (`redis://user:pass@host`). It prints with the password
/// replaced by `***`, so it can go into logs and error messages.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretUrl(Secret);

impl SecretUrl {
    pub fn new(s: impl Into<String>) -> Self {
        Self(Secret::new(s))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL with any password masked.
    pub fn redacted(&self) -> String {
        let s = self.0.expose();
        let Some(scheme_end) = s.find("://").map(|i| i + 3) else {
            return "<unparsable url>".into();
        };
        let rest = &s[scheme_end..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            None => s.to_string(),
            Some(at) => {
                let userinfo = &rest[..at];
                let user = userinfo.split(':').next().unwrap_or("");
                let masked = if userinfo.contains(':') {
                    format!("{user}:***")
                } else {
                    "***".to_string()
                };
                format!("{}{masked}{}", &s[..scheme_end], &rest[at..])
            }
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}
