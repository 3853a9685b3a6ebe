//! The Redis store: the hot tier shared by a region's origins, for tags, manifests and small blocks.
//!
//! Key layout (`NS` is configurable, default `prewarm`; every key expires after the TTL, 3600 s
//! by default):
//! ```text
//! NS:v1:block:<64 hex>          block bytes, exactly as hashed
//! NS:v1:manifest:<64 hex>       canonical manifest JSON
//! NS:v1:tag:<name>:<tag>        `sha256:…` text of the manifest a tag points at
//! ```
//! Objects are written with `SET … EX ttl NX` after their digest is checked, so a value is
//! either absent or complete. Redis is a cache: a reader must still verify what it gets (the
//! tiered store does). Every command is bounded by a timeout, and after a connection failure the
//! store answers [`StoreError::Unavailable`] at once for a short cool-down instead of making each
//! request wait; the connection manager reconnects by itself when Redis returns.
//!
//! `rediss://` URLs speak TLS (rustls). The server is checked against Mozilla's public roots,
//! compiled in, or against [`RedisTls::ca_file`] instead for a private CA; a client certificate
//! can be presented for mutual TLS. The PEM files are read and checked once, in
//! [`RedisStore::new`], so a bad one stops start-up.

use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use prewarm_shared::{Digest, Hasher, RuntimeName, Tag};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{ByteStream, Kind, Listed, Object, Store, StoreError, TagEntry, TagStore};
use crate::secret::SecretUrl;

mod listing;
mod tls;
pub use tls::{RedisClientCert, RedisTls};

const NAME: &str = "redis";
/// How long to answer "unavailable" without trying, after a connection failure.
const COOL_DOWN: Duration = Duration::from_millis(500);

/// How to reach Redis and what to keep there.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: SecretUrl,
    /// First key segment (`<namespace>:v1:…`).
    pub namespace: String,
    /// Lifetime of every key.
    pub ttl: Duration,
    /// Largest object `put` accepts; bigger ones belong on disk and in S3.
    pub max_object_bytes: u64,
    /// Limit on connecting and on each command.
    pub timeout: Duration,
    /// Trust and identity for a `rediss://` URL, beyond the defaults.
    pub tls: RedisTls,
}

/// A Redis server as a [`Store`] and a [`TagStore`]. Cheap to clone (one multiplexed connection).
pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    opts: RedisOptions,
    down_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.opts.url)
            .field("namespace", &self.opts.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Sets up the connection lazily: nothing is contacted until [`RedisStore::probe`] or a request.
    ///
    /// # Errors
    /// A URL redis cannot use, or a TLS file that cannot be read or holds no usable PEM: the
    /// message names the file (never its contents).
    pub fn new(opts: RedisOptions) -> Result<Self, StoreError> {
        let client = tls::client(&opts.url, &opts.tls)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| StoreError::other(NAME, e))?;
        Ok(Self {
            client,
            conn,
            opts,
            down_until: Mutex::new(None),
        })
    }

    pub fn options(&self) -> &RedisOptions {
        &self.opts
    }

    /// The client this store connects with (URL and TLS settings), so other users of the same
    /// Redis, such as the warm-runtime registry, trust and present exactly what it does.
    pub fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// The key an object lives under.
    pub fn object_key(&self, kind: Kind, digest: &Digest) -> String {
        format!(
            "{}:v1:{}:{}",
            self.opts.namespace,
            kind.as_str(),
            digest.hex()
        )
    }

    fn tag_key(&self, name: &RuntimeName, tag: &Tag) -> String {
        format!(
            "{}:v1:tag:{}:{}",
            self.opts.namespace,
            name.as_str(),
            tag.as_str()
        )
    }

    /// `PING`, for the start-up probe and `/readyz`. Ignores the cool-down.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let pong: String = self
            .bounded(async move { redis::cmd("PING").query_async(&mut conn).await })
            .await?;
        if pong != "PONG" {
            return Err(StoreError::other(NAME, format!("PING answered {pong:?}")));
        }
        self.set_down(false);
        Ok(())
    }

    fn set_down(&self, down: bool) {
        let mut d = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        *d = down.then(|| Instant::now() + COOL_DOWN);
    }

    fn cooling_down(&self) -> bool {
        let d = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        d.is_some_and(|t| Instant::now() < t)
    }

    /// Runs one command with the timeout and maps its failure.
    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.opts.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let connection = e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error();
                if connection {
                    self.set_down(true);
                    Err(StoreError::unavailable(
                        NAME,
                        format!("{}: {e}", self.opts.url),
                    ))
                } else {
                    Err(StoreError::other(NAME, format!("{}: {e}", self.opts.url)))
                }
            }
            Err(_) => {
                self.set_down(true);
                Err(StoreError::unavailable(
                    NAME,
                    format!(
                        "{}: no answer within {:?}",
                        self.opts.url, self.opts.timeout
                    ),
                ))
            }
        }
    }

    /// A command, unless Redis failed moments ago: then `Unavailable` without waiting.
    async fn run<T>(&self, cmd: redis::Cmd) -> Result<T, StoreError>
    where
        T: redis::FromRedisValue,
    {
        if self.cooling_down() {
            return Err(StoreError::unavailable(
                NAME,
                format!("{}: down (cooling off after a failure)", self.opts.url),
            ));
        }
        let mut conn = self.conn.clone();
        self.bounded(async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Sets raw bytes under a key, skipping verification. For fault tests that plant corruption.
    pub async fn put_unverified(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(value.as_ref())
            .arg("EX")
            .arg(self.opts.ttl.as_secs());
        self.run::<()>(cmd).await
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    fn name(&self) -> &str {
        NAME
    }

    async fn get(&self, kind: Kind, digest: &Digest) -> Result<Option<Object>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.object_key(kind, digest));
        Ok(self
            .run::<Option<Bytes>>(cmd)
            .await?
            .map(Object::from_bytes))
    }

    async fn get_range(
        &self,
        kind: Kind,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<Option<Object>, StoreError> {
        // Values are small (bounded by `max_object_bytes`); one GET is simpler than GETRANGE's
        // empty-string-for-missing ambiguity.
        let Some(o) = self.get(kind, digest).await? else {
            return Ok(None);
        };
        let b = o.into_bytes().await?;
        super::slice_range(NAME, b, range).map(Some)
    }

    async fn head(&self, kind: Kind, digest: &Digest) -> Result<Option<u64>, StoreError> {
        if self.cooling_down() {
            return Err(StoreError::unavailable(
                NAME,
                format!("{}: down (cooling off after a failure)", self.opts.url),
            ));
        }
        let key = self.object_key(kind, digest);
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(&key).cmd("STRLEN").arg(&key);
        let mut conn = self.conn.clone();
        let (exists, len): (bool, u64) = self
            .bounded(async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(exists.then_some(len))
    }

    async fn put(
        &self,
        kind: Kind,
        digest: &Digest,
        mut body: ByteStream,
    ) -> Result<(), StoreError> {
        let mut h = Hasher::new();
        let mut buf = BytesMut::new();
        while let Some(piece) = body.next().await {
            let piece = piece?;
            if (buf.len() + piece.len()) as u64 > self.opts.max_object_bytes {
                return Err(StoreError::other(
                    NAME,
                    format!(
                        "{kind:?} {digest} is over the Redis object limit of {} bytes",
                        self.opts.max_object_bytes
                    ),
                ));
            }
            h.update(&piece);
            buf.extend_from_slice(&piece);
        }
        let actual = h.finish();
        if actual != *digest {
            return Err(StoreError::Integrity {
                kind: kind.as_str(),
                expected: *digest,
                actual,
            });
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.object_key(kind, digest))
            .arg(buf.as_ref())
            .arg("EX")
            .arg(self.opts.ttl.as_secs())
            .arg("NX");
        // `NX` answers nil when the key exists: the put is idempotent either way.
        self.run::<Option<String>>(cmd).await?;
        Ok(())
    }

    async fn delete(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError> {
        self.del(self.object_key(kind, digest)).await
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Listed>, StoreError> {
        self.list_objects(kind).await
    }

    /// Redis is a cache: a damaged value is dropped; the durable tier still has the object.
    async fn quarantine(&self, kind: Kind, digest: &Digest) -> Result<(), StoreError> {
        self.del(self.object_key(kind, digest)).await
    }
}

#[async_trait::async_trait]
impl TagStore for RedisStore {
    async fn get_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<Option<Digest>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.tag_key(name, tag));
        let Some(s) = self.run::<Option<String>>(cmd).await? else {
            return Ok(None);
        };
        s.parse()
            .map(Some)
            .map_err(|e| StoreError::other(NAME, format!("tag {name}:{tag} is corrupt: {e}")))
    }

    async fn set_tag(
        &self,
        name: &RuntimeName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.tag_key(name, tag))
            .arg(digest.to_string())
            .arg("EX")
            .arg(self.opts.ttl.as_secs());
        self.run::<()>(cmd).await
    }

    async fn delete_tag(&self, name: &RuntimeName, tag: &Tag) -> Result<(), StoreError> {
        self.del(self.tag_key(name, tag)).await
    }

    async fn list_tags(&self) -> Result<Vec<TagEntry>, StoreError> {
        self.list_tag_keys().await
    }
}

mod records;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    /// Runs the conformance suite against `PREWARM_TEST_REDIS_URL`.
    #[tokio::test]
    async fn conformance_suite() {
        let Some(url) = crate::test_service_env("PREWARM_TEST_REDIS_URL") else {
            return;
        };
        let store = RedisStore::new(RedisOptions {
            url: SecretUrl::new(url),
            namespace: format!("prewarm-test-{:08x}", rand::random::<u32>()),
            ttl: Duration::from_secs(600),
            max_object_bytes: 8 << 20,
            timeout: Duration::from_secs(2),
            tls: RedisTls::default(),
        })
        .unwrap();
        store
            .probe()
            .await
            .expect("PREWARM_TEST_REDIS_URL answers PING");
        conformance::run_all(&store).await;
        conformance::tags(&store).await;
        conformance::records(&store).await;
    }

    #[tokio::test]
    async fn dead_redis_is_unavailable_quickly() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = RedisStore::new(RedisOptions {
            url: SecretUrl::new(format!("redis://:pw@127.0.0.1:{port}")),
            namespace: "prewarm".into(),
            ttl: Duration::from_secs(60),
            max_object_bytes: 1 << 20,
            timeout: Duration::from_millis(300),
            tls: RedisTls::default(),
        })
        .unwrap();
        let d = Digest::of(b"x");
        for _ in 0..2 {
            let e = store.get(Kind::Block, &d).await.unwrap_err();
            assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
            assert!(!e.to_string().contains(":pw@"), "password leaked: {e}");
        }
        assert!(store.probe().await.is_err());
    }
}
