//! Relative paths inside a runtime tree, validated once: no escaping, no ambiguity.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A path relative to a runtime's root: UTF-8, `/`-separated, no leading `/`, no `..`, no empty
/// or `.` components, no NUL, components of at most [`NAME_MAX`] bytes and at most
/// [`PATH_MAX`] bytes in all (longer ones no host can create: every pull would fail). Anything
/// else is rejected, never "cleaned": cleaning is how `a/../../etc` slips through a check that
/// looked at the cleaned form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

/// Longest component, in bytes (Linux `NAME_MAX`, and that of every common filesystem).
pub const NAME_MAX: usize = 255;
/// Longest path, in bytes (Linux `PATH_MAX` less its NUL).
pub const PATH_MAX: usize = 4095;

/// At most this many characters of a long path go into a message.
const SHOWN: usize = 120;

/// `s`, cut to its first [`SHOWN`] characters and its length when longer.
fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// Why a string is not a valid relative path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path {0:?} is absolute")]
    Absolute(String),
    #[error("path {0:?} contains `..`")]
    ParentDir(String),
    #[error("path {0:?} has an empty or `.` component")]
    EmptyComponent(String),
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path is not valid UTF-8: {0:?}")]
    NotUtf8(String),
    #[error(
        "path {path:?} has a component of {len} bytes, over the limit of {NAME_MAX}: {component:?}"
    )]
    ComponentTooLong {
        path: String,
        component: String,
        len: usize,
    },
    #[error("path {path:?} is {len} bytes, over the limit of {PATH_MAX}")]
    TooLong { path: String, len: usize },
}

impl PathError {
    /// Stable machine code for API error bodies.
    pub fn code(&self) -> &'static str {
        "bad_path"
    }
}

impl RelPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The parent path, or `None` for a top-level entry.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rfind('/').map(|i| RelPath(self.0[..i].to_string()))
    }

    /// Every proper ancestor, shortest first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> impl Iterator<Item = RelPath> + '_ {
        self.0
            .match_indices('/')
            .map(|(i, _)| RelPath(self.0[..i].to_string()))
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// `self/name`, validating `name` as a single component.
    pub fn join(&self, name: &str) -> Result<RelPath, PathError> {
        format!("{}/{}", self.0, name).parse()
    }

    /// True if `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

impl FromStr for RelPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        if s.contains('\0') {
            return Err(PathError::Nul(s.replace('\0', "\\0")));
        }
        if s.starts_with('/') {
            return Err(PathError::Absolute(s.to_string()));
        }
        for c in s.split('/') {
            match c {
                ".." => return Err(PathError::ParentDir(shown(s))),
                "" | "." => return Err(PathError::EmptyComponent(shown(s))),
                c if c.len() > NAME_MAX => {
                    return Err(PathError::ComponentTooLong {
                        path: shown(s),
                        component: shown(c),
                        len: c.len(),
                    })
                }
                _ => {}
            }
        }
        if s.len() > PATH_MAX {
            return Err(PathError::TooLong {
                path: shown(s),
                len: s.len(),
            });
        }
        Ok(Self(s.to_string()))
    }
}

impl TryFrom<&std::path::Path> for RelPath {
    type Error = PathError;

    fn try_from(p: &std::path::Path) -> Result<Self, Self::Error> {
        let s = p
            .to_str()
            .ok_or_else(|| PathError::NotUtf8(p.to_string_lossy().into_owned()))?;
        s.parse()
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_relative_paths() {
        for ok in [
            "a",
            "a/b",
            "lib/python3.11/os.py",
            "..a",
            "a..",
            ".hidden",
            "a/.wh.b",
        ] {
            assert_eq!(ok.parse::<RelPath>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_anything_ambiguous() {
        assert_eq!("".parse::<RelPath>(), Err(PathError::Empty));
        assert!(matches!(
            "/etc/passwd".parse::<RelPath>(),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(
            "a/../../etc".parse::<RelPath>(),
            Err(PathError::ParentDir(_))
        ));
        assert!(matches!(
            "..".parse::<RelPath>(),
            Err(PathError::ParentDir(_))
        ));
        assert!(matches!(
            "a//b".parse::<RelPath>(),
            Err(PathError::EmptyComponent(_))
        ));
        assert!(matches!(
            "./a".parse::<RelPath>(),
            Err(PathError::EmptyComponent(_))
        ));
        assert!(matches!(
            "a/".parse::<RelPath>(),
            Err(PathError::EmptyComponent(_))
        ));
        assert!(matches!("a\0b".parse::<RelPath>(), Err(PathError::Nul(_))));
    }

    #[test]
    fn refuses_names_no_host_can_create_and_names_them() {
        let name = "n".repeat(NAME_MAX);
        assert!(format!("a/{name}").parse::<RelPath>().is_ok());
        let e = format!("a/{name}x/b").parse::<RelPath>().unwrap_err();
        assert!(
            matches!(e, PathError::ComponentTooLong { len: 256, .. }),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("256 bytes") && msg.contains("255") && msg.contains("\"a/nnn"),
            "{msg}"
        );
        assert!(msg.len() < 600, "a long path is cut in messages: {msg}");
        // Just at PATH_MAX is fine; one byte more is not.
        let long = vec!["d".repeat(200); 20].join("/");
        let at_max = format!("{long}/{}", "f".repeat(PATH_MAX - long.len() - 1));
        assert_eq!(at_max.len(), PATH_MAX);
        assert!(at_max.parse::<RelPath>().is_ok());
        let e = format!("{at_max}x").parse::<RelPath>().unwrap_err();
        assert!(matches!(e, PathError::TooLong { len: 4096, .. }), "{e}");
        assert!(
            e.to_string().contains("4095") && e.to_string().starts_with("path \"ddd"),
            "{e}"
        );
        // Through serde (a manifest, a missing-blocks request) as well.
        let json = format!("\"{}\"", "z".repeat(300));
        assert!(serde_json::from_str::<RelPath>(&json).is_err());
        // Multi-byte characters count in bytes, and are never cut in half in a message.
        let wide = "é".repeat(128);
        assert!(wide
            .parse::<RelPath>()
            .unwrap_err()
            .to_string()
            .contains("256 bytes"));
    }

    #[test]
    fn navigation() {
        let p: RelPath = "a/b/c".parse().unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(p.file_name(), "c");
        let anc: Vec<String> = p.ancestors().map(|a| a.to_string()).collect();
        assert_eq!(anc, ["a", "a/b"]);
        assert!(p.starts_with(&"a/b".parse().unwrap()));
        assert!(!p.starts_with(&"a/bc".parse().unwrap()));
        assert!(!"a/bc"
            .parse::<RelPath>()
            .unwrap()
            .starts_with(&"a/b".parse().unwrap()));
        assert!(p.join("..").is_err());
    }
}
