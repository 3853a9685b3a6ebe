//! Runtime names, tags and the `NAME:TAG | DIGEST` reference users type.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// Why a string is not a runtime name, tag or reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("runtime name {0:?} is invalid: use 1-128 of a-z 0-9 . _ -, starting with a letter or digit")]
    Name(String),
    #[error(
        "tag {0:?} is invalid: use 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
    )]
    Tag(String),
    #[error("reference {0:?} is neither NAME:TAG nor sha256:<hex>")]
    Reference(String),
}

impl NameError {
    /// Stable machine code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            NameError::Name(_) => "bad_name",
            NameError::Tag(_) => "bad_tag",
            NameError::Reference(_) => "bad_reference",
        }
    }
}

fn valid(s: &str, upper_ok: bool) -> bool {
    let first_ok = s.chars().next().is_some_and(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || (upper_ok && c.is_ascii_uppercase())
    });
    first_ok
        && s.len() <= 128
        && s.chars().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, '.' | '_' | '-')
                || (upper_ok && c.is_ascii_uppercase())
        })
}

macro_rules! validated_string {
    ($ty:ident, $upper:expr, $err:ident) => {
        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                if valid(s, $upper) {
                    Ok(Self(s.to_string()))
                } else {
                    Err(NameError::$err(s.chars().take(140).collect()))
                }
            }
        }
        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A runtime's name (`python-data`). Lowercase so two spellings never name two runtimes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuntimeName(String);
validated_string!(RuntimeName, false, Name);

/// A movable tag on a runtime (`v1`, `latest`, `3.11-slim`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);
validated_string!(Tag, true, Tag);

/// What a user asks for: a tag to resolve, or an exact manifest digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeRef {
    Tagged(RuntimeName, Tag),
    Digest(Digest),
}

impl FromStr for RuntimeRef {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        if s.starts_with("sha256:") {
            return s
                .parse()
                .map(RuntimeRef::Digest)
                .map_err(|_| NameError::Reference(s.to_string()));
        }
        match s.split_once(':') {
            Some((name, tag)) => Ok(RuntimeRef::Tagged(name.parse()?, tag.parse()?)),
            None => Err(NameError::Reference(s.to_string())),
        }
    }
}

impl fmt::Display for RuntimeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeRef::Tagged(n, t) => write!(f, "{n}:{t}"),
            RuntimeRef::Digest(d) => write!(f, "{d}"),
        }
    }
}

impl Serialize for RuntimeRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RuntimeRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tags_refs() {
        assert!("python-data".parse::<RuntimeName>().is_ok());
        assert!("Python".parse::<RuntimeName>().is_err());
        assert!("-x".parse::<RuntimeName>().is_err());
        assert!("a/b".parse::<RuntimeName>().is_err());
        assert!("V1.2-rc".parse::<Tag>().is_ok());
        assert!("".parse::<Tag>().is_err());
        let r: RuntimeRef = "python-data:v1".parse().unwrap();
        assert_eq!(r.to_string(), "python-data:v1");
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string().parse::<RuntimeRef>().unwrap(),
            RuntimeRef::Digest(d)
        );
        assert!("sha256:abc".parse::<RuntimeRef>().is_err());
        assert!("python-data".parse::<RuntimeRef>().is_err());
        assert!("python-data:v1:x".parse::<RuntimeRef>().is_err());
    }
}
