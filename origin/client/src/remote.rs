//! An origin (or edge) over HTTP, as a [`Source`] and a [`Sink`]: verified reads, retried idempotent calls.
//!
//! Blocks and manifests may travel zstd-compressed ([`Compress`]): the client asks with
//! `Accept-Encoding: zstd`, decodes with a hard bound on the decoded size, and verifies the
//! decoded bytes as always. reqwest is built without its gzip/brotli/zstd features, so it
//! neither adds an `Accept-Encoding` of its own nor decodes behind our back. Uploads (push)
//! always travel as they are.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prewarm_shared::encoding::ZSTD;
use prewarm_shared::wire::{
    ErrorBody, MissingRequest, MissingResponse, TagBody, MAX_BLOCK_SIZE, MAX_MISSING_QUERY,
};
use prewarm_shared::{Digest, RuntimeName, Tag};
use reqwest::{Method, StatusCode};

use crate::transfer::{verify, Fetched, Sink, Source, TransferError};

mod compress;
pub(crate) mod decode;

pub use compress::Compress;

/// Attempts per call; every API call is idempotent, so retrying a transient failure is safe.
const ATTEMPTS: u32 = 3;
/// Largest manifest a client will read (the origin's default upload limit).
const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// A prewarm HTTP endpoint: origin or edge.
#[derive(Clone)]
pub struct Remote {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    /// Send `Accept-Encoding: zstd` on block and manifest GETs.
    accept_zstd: bool,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Remote {
    /// A client for `url` (`http://host:port`, optionally with a path prefix), with
    /// [`Compress::Auto`].
    pub fn new(url: &str, token: Option<String>) -> Result<Self, TransferError> {
        Self::with_compress(url, token, Compress::Auto)
    }

    /// A client for `url` that asks for compressed blocks and manifests as `compress` says.
    pub fn with_compress(
        url: &str,
        token: Option<String>,
        compress: Compress,
    ) -> Result<Self, TransferError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| TransferError::Other {
            at: url.to_string(),
            message: format!("not a URL: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(TransferError::Other {
                at: url.to_string(),
                message: "URL must be http:// or https://".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| TransferError::Other {
                at: url.to_string(),
                message: e.to_string(),
            })?;
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            http,
            token,
            accept_zstd: compress.asks_zstd(&parsed),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request, retrying connection failures and 5xx with backoff. Non-2xx → error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
        what: &str,
        accept_zstd: bool,
    ) -> Result<reqwest::Response, TransferError> {
        let url = self.url(path);
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1))).await;
            }
            let mut req = self.http.request(method.clone(), &url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if accept_zstd {
                req = req.header(reqwest::header::ACCEPT_ENCODING, ZSTD);
            }
            if let Some((b, ct)) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, *ct)
                    .body(b.clone());
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let err = self.status_error(resp, what).await;
                    if !matches!(err, TransferError::Unavailable { .. }) {
                        return Err(err);
                    }
                    last = Some(err);
                }
                Err(e) => {
                    let message = if e.is_timeout() {
                        format!("timed out: {e}")
                    } else {
                        format!("cannot reach it: {e}")
                    };
                    last = Some(TransferError::Unavailable {
                        at: self.base.clone(),
                        message,
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| TransferError::Unavailable {
            at: self.base.clone(),
            message: "no attempt made".into(),
        }))
    }

    async fn status_error(&self, resp: reqwest::Response, what: &str) -> TransferError {
        let status = resp.status();
        let at = self.base.clone();
        let body = resp.bytes().await.unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => (
                status.as_str().to_string(),
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            ),
        };
        match status {
            StatusCode::NOT_FOUND => TransferError::NotFound {
                what: what.to_string(),
                at,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                TransferError::Unauthorized { at, message }
            }
            s if s.is_server_error() => TransferError::Unavailable {
                at,
                message: format!("HTTP {s} ({code}): {message}"),
            },
            _ => TransferError::Rejected { at, code, message },
        }
    }

    /// Reads a body up to `limit` bytes, without trusting Content-Length.
    async fn read_limited(
        &self,
        resp: reqwest::Response,
        limit: u64,
        what: &str,
    ) -> Result<Bytes, TransferError> {
        let too_big = || TransferError::Rejected {
            at: self.base.clone(),
            code: "too_large".into(),
            message: format!("{what} is larger than {limit} bytes"),
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_big());
        }
        let mut buf = bytes::BytesMut::with_capacity(resp.content_length().unwrap_or(0) as usize);
        let mut stream = resp.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| self.interrupted(what, e))?;
            if (buf.len() + piece.len()) as u64 > limit {
                return Err(too_big());
            }
            buf.extend_from_slice(&piece);
        }
        Ok(buf.freeze())
    }

    /// GETs an object (asking for zstd if configured), decodes it within `limit` bytes and
    /// checks it hashes to `digest`.
    async fn get_verified(
        &self,
        path: &str,
        what: &str,
        digest: &Digest,
        limit: u64,
    ) -> Result<Fetched, TransferError> {
        let resp = self
            .send(Method::GET, path, None, what, self.accept_zstd)
            .await?;
        let coding = decode::coding(resp.headers()).map_err(|m| self.encoding(what, m))?;
        let fetched = match coding {
            decode::Coding::Identity => {
                Fetched::identity(self.read_limited(resp, limit, what).await?)
            }
            decode::Coding::Zstd => self.read_zstd(resp, limit, what).await?,
        };
        verify(what, &self.base, digest, &fetched.bytes)?;
        Ok(fetched)
    }

    /// Reads a zstd body, decoding as it arrives; refuses it once it decodes past `limit`.
    async fn read_zstd(
        &self,
        resp: reqwest::Response,
        limit: u64,
        what: &str,
    ) -> Result<Fetched, TransferError> {
        let mut decoder = decode::Bounded::new(limit).map_err(|m| self.encoding(what, m))?;
        let mut wire_bytes = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| self.interrupted(what, e))?;
            wire_bytes += piece.len() as u64;
            decoder.write(&piece).map_err(|m| self.encoding(what, m))?;
        }
        let bytes = decoder.finish().map_err(|m| self.encoding(what, m))?;
        Ok(Fetched { bytes, wire_bytes })
    }

    /// A body that broke off mid-transfer; retrying later may work.
    fn interrupted(&self, what: &str, e: reqwest::Error) -> TransferError {
        TransferError::Unavailable {
            at: self.base.clone(),
            message: format!("{what}: body interrupted: {e}"),
        }
    }

    fn encoding(&self, what: &str, message: String) -> TransferError {
        TransferError::Encoding {
            what: what.to_string(),
            at: self.base.clone(),
            message,
        }
    }
}

#[async_trait::async_trait]
impl Source for Remote {
    fn location(&self) -> String {
        self.base.clone()
    }

    async fn resolve_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Digest, TransferError> {
        let what = format!("tag {name}:{tag}");
        let resp = self
            .send(
                Method::GET,
                &format!("/v1/runtimes/{name}/tags/{tag}"),
                None,
                &what,
                false,
            )
            .await?;
        let bytes = self.read_limited(resp, 64 * 1024, &what).await?;
        let body: TagBody = serde_json::from_slice(&bytes).map_err(|e| TransferError::Other {
            at: self.base.clone(),
            message: format!("{what}: bad response: {e}"),
        })?;
        Ok(body.digest)
    }

    async fn fetch_manifest(&self, digest: &Digest) -> Result<Bytes, TransferError> {
        self.get_verified(
            &format!("/v1/manifests/{digest}"),
            &format!("manifest {digest}"),
            digest,
            MAX_MANIFEST_BYTES,
        )
        .await
        .map(|f| f.bytes)
    }

    async fn fetch_block(&self, digest: &Digest) -> Result<Fetched, TransferError> {
        self.get_verified(
            &format!("/v1/blocks/{digest}"),
            &format!("block {digest}"),
            digest,
            MAX_BLOCK_SIZE,
        )
        .await
    }
}

#[async_trait::async_trait]
impl Sink for Remote {
    fn location(&self) -> String {
        self.base.clone()
    }

    async fn missing_blocks(&self, digests: &[Digest]) -> Result<Vec<Digest>, TransferError> {
        let mut missing = Vec::new();
        for batch in digests.chunks(MAX_MISSING_QUERY) {
            let body = serde_json::to_vec(&MissingRequest {
                digests: batch.to_vec(),
            })
            .map_err(|e| TransferError::Other {
                at: self.base.clone(),
                message: e.to_string(),
            })?;
            let resp = self
                .send(
                    Method::POST,
                    "/v1/blocks/missing",
                    Some((body.into(), "application/json")),
                    "missing-blocks query",
                    false,
                )
                .await?;
            let bytes = self
                .read_limited(resp, 64 << 20, "missing-blocks response")
                .await?;
            let r: MissingResponse =
                serde_json::from_slice(&bytes).map_err(|e| TransferError::Other {
                    at: self.base.clone(),
                    message: format!("bad missing-blocks response: {e}"),
                })?;
            missing.extend(r.missing);
        }
        Ok(missing)
    }

    async fn put_block(&self, digest: &Digest, bytes: Bytes) -> Result<(), TransferError> {
        self.send(
            Method::PUT,
            &format!("/v1/blocks/{digest}"),
            Some((bytes, "application/octet-stream")),
            &format!("block {digest}"),
            false,
        )
        .await
        .map(drop)
    }

    async fn put_manifest(&self, digest: &Digest, bytes: Bytes) -> Result<(), TransferError> {
        self.send(
            Method::PUT,
            &format!("/v1/manifests/{digest}"),
            Some((bytes, "application/json")),
            &format!("manifest {digest}"),
            false,
        )
        .await
        .map(drop)
    }

    async fn set_tag(
        &self,
        name: &RuntimeName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), TransferError> {
        let body =
            serde_json::to_vec(&TagBody { digest: *digest }).map_err(|e| TransferError::Other {
                at: self.base.clone(),
                message: e.to_string(),
            })?;
        self.send(
            Method::PUT,
            &format!("/v1/runtimes/{name}/tags/{tag}"),
            Some((body.into(), "application/json")),
            &format!("tag {name}:{tag}"),
            false,
        )
        .await
        .map(drop)
    }
}
