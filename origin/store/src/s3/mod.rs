//! The S3 store: the regional, durable tier, on AWS S3 or any S3-compatible server (path-style).
//!
//! Key layout inside the bucket (versioned; `PREFIX` is configurable and may be empty):
//! ```text
//! s3://BUCKET/
//! ├── PREFIXblocks-v1/<64 hex>        block bytes, exactly as hashed
//! ├── PREFIXmanifests-v1/<64 hex>     canonical manifest JSON
//! ├── PREFIXquarantine-v1/<kind>/…    damaged objects moved aside (`s3/listing.rs`)
//! └── PREFIXtags-v1/<name>/<tag>      `sha256:…` text of the manifest a tag points at
//! ```
//! No fan-out: S3 partitions by key itself. A `put` hashes while it streams. Objects up to
//! [`PART_SIZE`] are verified in memory and sent with one PUT; bigger ones go up as a multipart
//! upload that is completed only once the digest matches, and aborted otherwise. An upload that
//! is never completed is invisible; a bucket lifecycle rule for incomplete multipart uploads
//! cleans up after a crash.
//!
//! Credentials are static keys or, without them, the standard AWS chain (profiles, web
//! identity, ECS, IMDS): see `s3_credentials.rs`.

use std::ops::Range;
use std::time::Duration;

use aws_sdk_s3::config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as AwsBody;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use prewarm_shared::{Digest, Hasher, RuntimeName, Tag};

use super::{ByteStream, Kind, Listed, Object, Store, StoreError, TagEntry, TagStore};
use crate::secret::Secret;

const NAME: &str = "s3";
/// Objects up to this size go up in one PUT; bigger ones in parts of this size.
pub(crate) const PART_SIZE: usize = 8 << 20;

/// Where and how to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// `http(s)://host:port` of an S3-compatible server; `None` for AWS's regional endpoint.
    pub endpoint: Option<String>,
    /// Region to sign for; `None`: the selected AWS profile's `region`, else `us-east-1`.
    pub region: Option<String>,
    pub bucket: String,
    /// Prepended to every key (e.g. `prod/`).
    pub prefix: String,
    /// Static credentials; `None`: the standard AWS chain (profile files, web identity, ECS
    /// task role, EC2 instance profile), so a host with a role needs no keys.
    pub credentials: Option<S3Credentials>,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on one request attempt, and on reading one object's body.
    pub timeout: Duration,
}

/// An access key pair (and optional session token); secrets never print.
#[derive(Debug, Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// A bucket (and key prefix) as a [`Store`] and a [`TagStore`].
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    timeout: Duration,
}

impl S3Store {
    /// Builds the client; nothing is contacted until [`S3Store::probe`] or the first request
    /// (the profile files are read here, for the region and the chain).
    pub async fn new(o: &S3Options) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let (region, credentials, source) = credentials::resolve(o, http.clone()).await;
        tracing::info!(bucket = %o.bucket, %region, credentials = source, "s3 tier");
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(o.connect_timeout)
            .operation_attempt_timeout(o.timeout)
            .operation_timeout(o.timeout * 2 + o.connect_timeout)
            .build();
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http)
            .region(region)
            .credentials_provider(credentials)
            .force_path_style(true)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(2));
        if let Some(e) = &o.endpoint {
            b = b.endpoint_url(e);
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            bucket: o.bucket.clone(),
            prefix: o.prefix.clone(),
            timeout: o.timeout,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key an object lives under.
    pub fn object_key(&self, kind: Kind, digest: &Digest) -> String {
        let top = match kind {
            Kind::Block => "blocks-v1",
            Kind::Manifest => "manifests-v1",
        };
        format!("{}{top}/{}", self.prefix, digest.hex())
    }

    fn tag_key(&self, name: &RuntimeName, tag: &Tag) -> String {
        format!("{}tags-v1/{}/{}", self.prefix, name.as_str(), tag.as_str())
    }

    /// Checks that the bucket exists and the credentials may use it.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| map_err(&self.bucket, e))?;
        Ok(())
    }

    /// Creates the bucket if it is missing (for tests and first-time setups).
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        if self.probe().await.is_ok() {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(map_err(&self.bucket, e)),
        }
    }

    /// GET of a key; a 404 is `None`.
    async fn get_key(
        &self,
        key: &str,
        range: Option<&Range<u64>>,
    ) -> Result<Option<Object>, StoreError> {
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(r) = range {
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let out = match req.send().await {
            Ok(o) => o,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(map_err(key, e)),
        };
        let size = out
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let timeout = self.timeout;
        let body = futures::stream::unfold(Some(out.body), move |body| async move {
            let mut body = body?;
            match tokio::time::timeout(timeout, body.next()).await {
                Err(_) => Some((
                    Err(StoreError::unavailable(
                        NAME,
                        "timed out reading an object body",
                    )),
                    None,
                )),
                Ok(None) => None,
                Ok(Some(Ok(b))) => Some((Ok(b), Some(body))),
                Ok(Some(Err(e))) => Some((Err(StoreError::unavailable(NAME, e)), None)),
            }
        })
        .boxed();
        Ok(Some(Object { size, body }))
    }

    async fn put_small(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let len = bytes.len() as i64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len)
            .body(AwsBody::from(bytes))
            .send()
            .await
            .map_err(|e| map_err(key, e))?;
        Ok(())
    }
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::ServiceError(s) => {
            matches!(s.err().code(), Some("NoSuchKey" | "NotFound" | "404"))
                || status_of(e) == Some(404)
        }
        _ => false,
    }
}

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Connection failures, timeouts and 5xx/throttling are `Unavailable`; the rest is `Other`.
/// Credentials that could not be loaded say so in words, whatever the request was.
fn map_err<E>(what: &str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(c) = credentials::explain(&e) {
        return c;
    }
    let message = match &e {
        SdkError::ServiceError(s) => format!(
            "{what}: {} ({})",
            s.err().code().unwrap_or("error"),
            s.err().message().unwrap_or("no message")
        ),
        other => format!("{what}: {}", aws_sdk_s3::error::DisplayErrorContext(other)),
    };
    let unavailable = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => {
            status_of(&e).is_some_and(|s| s >= 500 || s == 429)
                || matches!(e.code(), Some("SlowDown" | "ServiceUnavailable"))
        }
        _ => false,
    };
    if unavailable {
        StoreError::unavailable(NAME, message)
    } else {
        StoreError::other(NAME, message)
    }
}

#[async_trait::async_trait]
impl Store for S3Store {
    fn name(&self) -> &str {
        NAME
    }

    async fn get(&self, kind: Kind, digest: &Digest) -> Result<Option<Object>, StoreError> {
        self.get_key(&self.object_key(kind, digest), None).await
    }

    async fn get_range(
        &self,
        kind: Kind,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<Option<Object>, StoreError> {
        // S3 cannot express an empty range, and answers a range past the end with the whole object.
        let Some(size) = self.head(kind, digest).await? else {
            return Ok(None);
        };
        super::check_range(NAME, &range, size)?;
        if range.is_empty() {
            return Ok(Some(Object::from_bytes(Bytes::new())));
        }
        self.get_key(&self.object_key(kind, digest), Some(&range))
            .await
    }

    async fn head(&self, kind: Kind, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let key = self.object_key(kind, digest);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(
                o.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(map_err(&key, e)),
        }
    }

    async fn put(
        &self,
        kind: Kind,
        digest: &Digest,
        mut body: ByteStream,
    ) -> Result<(), StoreError> {
        let key = self.object_key(kind, digest);
        let mut h = Hasher::new();
        let mut buf = BytesMut::new();
        while buf.len() <= PART_SIZE {
            match body.next().await {
                Some(piece) => {
                    let piece = piece?;
                    h.update(&piece);
                    buf.extend_from_slice(&piece);
                }
                None => {
                    let actual = h.finish();
                    if actual != *digest {
                        return Err(StoreError::Integrity {
                            kind: kind.as_str(),
                            expected: *digest,
                            actual,
                        });
                    }
                    return self.put_small(&key, buf.freeze()).await;
                }
            }
        }
        self.put_multipart(kind, digest, &key, buf.freeze(), h, body)
            .await
    }

    async fn delete(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError> {
        self.delete_key(&self.object_key(kind, digest)).await
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Listed>, StoreError> {
        self.list_objects(kind).await
    }

    async fn quarantine(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError> {
        self.quarantine_object(kind, digest).await
    }
}

#[async_trait::async_trait]
impl TagStore for S3Store {
    async fn get_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Option<Digest>, StoreError> {
        let key = self.tag_key(name, tag);
        let Some(o) = self.get_key(&key, None).await? else {
            return Ok(None);
        };
        let text = o.into_bytes().await?;
        let s = std::str::from_utf8(&text)
            .map_err(|e| StoreError::other(NAME, format!("tag {name}:{tag} is corrupt: {e}")))?;
        s.trim()
            .parse()
            .map(Some)
            .map_err(|e| StoreError::other(NAME, format!("tag {name}:{tag} is corrupt: {e}")))
    }

    async fn set_tag(
        &self,
        name: &RuntimeName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        self.put_small(&self.tag_key(name, tag), Bytes::from(digest.to_string()))
            .await
    }

    async fn delete_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<(), StoreError> {
        self.delete_key(&self.tag_key(name, tag)).await
    }

    async fn list_tags(&self) -> Result<Vec<TagEntry>, StoreError> {
        self.list_tag_keys().await
    }
}

mod listing;
mod multipart;

mod records;

mod credentials;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tiered_tests;
