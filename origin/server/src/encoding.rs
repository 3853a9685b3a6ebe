//! Content coding of block and manifest responses: when a GET goes out zstd-compressed, and the compressing.
//!
//! The rule: a `GET` without `Range`, from a client whose `Accept-Encoding` names `zstd`
//! ([`accepts_zstd`]), of an object of at least [`MIN_ENCODE_BYTES`] (and at most
//! [`MAX_ENCODE_BYTES`]), with compression on. The whole body is compressed at the configured
//! level, and sent only if that saves at least a tenth ([`worth_encoding`]); otherwise the
//! identity bytes already in hand go out. Everything else is identity:
//! - **Ranges** apply to the encoded representation when there is one (RFC 9110 §14.1.2), which
//!   no client here wants: a range request is always answered from the identity bytes.
//! - **HEAD** reports the identity representation (`Content-Length` = the object's size, no
//!   `Content-Encoding`). Knowing the encoded length would mean reading and compressing the
//!   object for a body-less answer; RFC 9110 §9.3.2 lets a server omit what it only learns by
//!   generating the content, and identity is a representation any client accepts.
//! - A **304** carries the strong ETag: which representation a GET would have sent is only known
//!   after compressing, and `If-None-Match` compares weakly anyway.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method};

use prewarm_shared::encoding::{accepts_zstd, worth_encoding};
use std::sync::atomic::Ordering::Relaxed;

use prewarm_shared::Digest;

use crate::error::ApiError;
use prewarm_store::Kind;

/// Smaller objects go out as they are: a zstd frame header and the client's decoder cost more
/// than the few bytes saved.
pub(super) const MIN_ENCODE_BYTES: u64 = 512;
/// Larger objects (only manifests can be) go out as they are, so one request never holds more
/// than this in memory twice. Blocks are at most 8 MiB (`MAX_BLOCK_SIZE`).
pub(super) const MAX_ENCODE_BYTES: u64 = 64 << 20;
/// Bodies above this are compressed on the blocking pool; smaller ones take well under a
/// millisecond at level 1 and are compressed in place.
const INLINE_BYTES: usize = 64 << 10;
/// The default of `prewarm serve --compression-level`: zstd's fastest regular level, ~3× on
/// a Python runtime at a few hundred MB/s per core.
pub const DEFAULT_LEVEL: i32 = 1;

/// Whether a response to this request should be zstd-encoded, before knowing if it compresses:
/// `level` 0 turns compression off.
pub(super) fn wants_zstd(method: &Method, headers: &HeaderMap, size: u64, level: i32) -> bool {
    level != 0
        && *method == Method::GET
        && !headers.contains_key(header::RANGE)
        && (MIN_ENCODE_BYTES..=MAX_ENCODE_BYTES).contains(&size)
        && accepts_zstd(&accept_encoding(headers))
}

/// Every `Accept-Encoding` line, joined as one list.
fn accept_encoding(headers: &HeaderMap) -> String {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// `raw` compressed at `level`, or `None` if that does not save a tenth (send `raw` instead).
pub(super) async fn compress(raw: Bytes, level: i32) -> Result<Option<Bytes>, ApiError> {
    let inline = raw.len() <= INLINE_BYTES;
    let run = move || -> Result<Option<Bytes>, ApiError> {
        let encoded =
            zstd::bulk::compress(&raw, level).map_err(|e| ApiError::Internal(Box::new(e)))?;
        Ok(worth_encoding(raw.len() as u64, encoded.len() as u64).then(|| Bytes::from(encoded)))
    };
    if inline {
        return run();
    }
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?
}

/// zstd bodies already made, so a popular block is compressed once per origin, not once per
/// request (a fleet of hosts pulling the same runtime asks for the same blocks). Keyed by
/// object; `None` remembers "does not compress", which is then sent as identity without
/// trying again. Made only from verified bytes, so nothing in it needs checking again.
/// Bounded by bytes (moka's weigher); cheap to clone.
#[derive(Clone)]
pub struct EncodedCache {
    cache: Option<moka::sync::Cache<(Kind, Digest), Option<Bytes>>>,
    counters: std::sync::Arc<EncodedCounters>,
}

/// What `/metrics` reports of zstd encoding.
#[derive(Debug, Default, serde::Serialize)]
pub struct EncodedCounters {
    /// Bodies compressed (each one read and zstd'd once).
    pub compressed: std::sync::atomic::AtomicU64,
    /// Answers that reused a kept result: a zstd body, or "does not compress".
    pub reused: std::sync::atomic::AtomicU64,
}

impl EncodedCache {
    /// Holds up to `max_bytes` of zstd bodies; `0` keeps nothing.
    pub fn new(max_bytes: u64) -> Self {
        let cache = (max_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                // A remembered "incompressible" costs about its key.
                .weigher(|_, v: &Option<Bytes>| {
                    v.as_ref()
                        .map_or(64, |b| u32::try_from(b.len()).unwrap_or(u32::MAX))
                })
                .build()
        });
        Self {
            cache,
            counters: Default::default(),
        }
    }

    /// `Some(Some(body))`: the zstd body; `Some(None)`: known not to compress; `None`: unknown.
    /// A found entry counts as reused.
    pub(super) fn get(&self, kind: Kind, digest: &Digest) -> Option<Option<Bytes>> {
        let got = self.cache.as_ref()?.get(&(kind, *digest));
        if got.is_some() {
            self.counters.reused.fetch_add(1, Relaxed);
        }
        got
    }

    /// Keeps the result of compressing an object (counted as one compression).
    pub(super) fn insert(&self, kind: Kind, digest: &Digest, encoded: Option<Bytes>) {
        self.counters.compressed.fetch_add(1, Relaxed);
        if let Some(c) = &self.cache {
            c.insert((kind, *digest), encoded);
        }
    }

    pub fn counters(&self) -> &EncodedCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn zstd_only_for_a_plain_get_that_names_it() {
        let zstd = headers(&[(header::ACCEPT_ENCODING, "gzip, zstd")]);
        assert!(wants_zstd(&Method::GET, &zstd, 4096, 1));
        // Split over two lines is the same list.
        let split = headers(&[
            (header::ACCEPT_ENCODING, "gzip"),
            (header::ACCEPT_ENCODING, "zstd;q=0.5"),
        ]);
        assert!(wants_zstd(&Method::GET, &split, 4096, 1));

        // q=0, `*`, or nothing: identity.
        for field in ["zstd;q=0", "*", "gzip, br"] {
            let h = headers(&[(header::ACCEPT_ENCODING, field)]);
            assert!(!wants_zstd(&Method::GET, &h, 4096, 1), "{field}");
        }
        assert!(!wants_zstd(&Method::GET, &HeaderMap::new(), 4096, 1));
        // A range stays identity, whatever the range says.
        let ranged = headers(&[
            (header::ACCEPT_ENCODING, "zstd"),
            (header::RANGE, "bytes=0-9"),
        ]);
        assert!(!wants_zstd(&Method::GET, &ranged, 4096, 1));
        // HEAD reports identity; compression off; too small; too large.
        assert!(!wants_zstd(&Method::HEAD, &zstd, 4096, 1));
        assert!(!wants_zstd(&Method::GET, &zstd, 4096, 0));
        assert!(!wants_zstd(&Method::GET, &zstd, MIN_ENCODE_BYTES - 1, 1));
        assert!(wants_zstd(&Method::GET, &zstd, MIN_ENCODE_BYTES, 1));
        assert!(!wants_zstd(&Method::GET, &zstd, MAX_ENCODE_BYTES + 1, 1));
    }

    #[tokio::test]
    async fn compressible_bytes_are_encoded_and_round_trip() {
        let raw = Bytes::from("prewarm ".repeat(20_000));
        let encoded = compress(raw.clone(), 1).await.unwrap().expect("encoded");
        assert!(encoded.len() < raw.len() / 10);
        assert_eq!(zstd::decode_all(&encoded[..]).unwrap(), raw);
    }

    #[tokio::test]
    async fn incompressible_bytes_stay_identity() {
        use rand::RngCore;
        for len in [1000, 200_000] {
            let mut raw = vec![0u8; len];
            rand::thread_rng().fill_bytes(&mut raw);
            assert_eq!(compress(Bytes::from(raw), 1).await.unwrap(), None, "{len}");
        }
    }
}
