//! Relative paths inside a runtime tree, validated once: no escaping, no ambiguity.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A path relative to a runtime's root: UTF-8, `/`-separated, no leading `/`, no `..`, no empty
/// or `.` components, no NUL. Anything else is rejected, never "cleaned": cleaning is how
/// `a/../../etc` slips through a check that looked at the cleaned form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

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
                ".." => return Err(PathError::ParentDir(s.to_string())),
                "" | "." => return Err(PathError::EmptyComponent(s.to_string())),
                _ => {}
            }
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
