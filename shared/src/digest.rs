//! The content address: SHA-256 with exactly one text form, `sha256:<64 lowercase hex>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

const PREFIX: &str = "sha256:";

/// A SHA-256 content address. Parsing is strict so that one object has exactly one name:
/// an uppercase or abbreviated form would let two keys point at the same bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest must start with `sha256:` (got {0:?})")]
    Algorithm(String),
    #[error("digest must have 64 hex characters after `sha256:`, got {0}")]
    Length(usize),
    #[error("digest hex must be lowercase 0-9a-f (bad character {0:?})")]
    Character(char),
}

impl DigestError {
    /// Stable machine code for API error bodies.
    pub fn code(&self) -> &'static str {
        "bad_digest"
    }
}

impl Digest {
    /// Hashes `bytes` in one go.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }

    pub fn from_bytes(raw: [u8; 32]) -> Self {
        Self(raw)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64-character lowercase hex, without the algorithm prefix (for file and key names).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(hex_part) = s.strip_prefix(PREFIX) else {
            let shown: String = s.chars().take(16).collect();
            return Err(DigestError::Algorithm(shown));
        };
        if let Some(c) = hex_part
            .chars()
            .find(|c| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(DigestError::Character(c));
        }
        if hex_part.len() != 64 {
            return Err(DigestError::Length(hex_part.len()));
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut raw)
            .map_err(|_| DigestError::Length(hex_part.len()))?;
        Ok(Self(raw))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hasher, for verifying bytes while they stream past.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: sha2::Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        self.inner.update(bytes);
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest(self.inner.finalize().into())
    }

    /// The digest of everything `r` yields, and how many bytes that was, read in 256 KiB
    /// pieces so memory stays flat whatever the size (the pull cache and the disk store hash
    /// whole files this way).
    pub fn of_reader(mut r: impl std::io::Read) -> std::io::Result<(Digest, u64)> {
        let mut buf = vec![0u8; 256 << 10];
        let mut h = Hasher::new();
        loop {
            let n = match r.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                let len = h.len();
                return Ok((h.finish(), len));
            }
            h.update(&buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixed vectors, also listed in docs/FORMAT.md so other implementations can check themselves.
    #[test]
    fn known_vectors() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Digest::of(b"hello prewarm\n").to_string(),
            "sha256:7126e9632a8c613c0f4392c9680bebfdfb6fb92c188fd9b40c2d841a0477b8f1"
        );
    }

    #[test]
    fn round_trip_and_incremental() {
        let d = Digest::of(b"abc");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.len(), 3);
        assert_eq!(h.finish(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn strict_parsing() {
        let good = Digest::of(b"x").hex();
        assert!(matches!(
            format!("sha512:{good}").parse::<Digest>(),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(
            good.parse::<Digest>(),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(
            format!("sha256:{}", &good[1..]).parse::<Digest>(),
            Err(DigestError::Length(63))
        ));
        assert!(matches!(
            format!("sha256:{}", good.to_uppercase()).parse::<Digest>(),
            Err(DigestError::Character(_))
        ));
        assert!(matches!(
            format!("sha256:{good} ").parse::<Digest>(),
            Err(DigestError::Character(' '))
        ));
        assert!(matches!(
            format!("SHA256:{good}").parse::<Digest>(),
            Err(DigestError::Algorithm(_))
        ));
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
