//! Fleet single-flight for warms: a Redis lease per warm key, renewed while the warm runs.
//!
//! `SET prewarm:warmed-lease:<key hex> <token> NX PX <ttl>` takes it; a task renews it
//! (`PEXPIRE`, only while the value is still this holder's token) every third of the TTL;
//! release deletes it only if it still holds the token (a Lua script, so check and delete are
//! one step). A holder that dies stops renewing, and the lease expires after the TTL: a node
//! waiting on it then takes it and warms. Without Redis there is no fleet lease: each node
//! single-flights its own warms only (`super::Warmer`'s job table).

use std::time::Duration;

use prewarm_shared::warmed::WarmKey;
use tokio::task::JoinHandle;

/// Renews only while the value is the holder's token.
const RENEW: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end"#;
/// Deletes only while the value is the holder's token.
const RELEASE: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

/// The Redis key of a warm key's lease.
pub fn lease_key(key: &WarmKey) -> String {
    format!("prewarm:warmed-lease:{}", key.0.hex())
}

/// Where leases are taken: Redis, or nowhere (every attempt succeeds locally).
#[derive(Clone)]
pub struct Leases {
    conn: Option<redis::aio::ConnectionManager>,
    ttl: Duration,
}

/// What [`Leases::try_take`] found.
pub enum Taken {
    /// This node holds the lease (or there is no fleet lease): warm.
    Held(Lease),
    /// Another node holds it: wait for its publication or for the lease to expire.
    Busy,
}

impl Leases {
    /// Leases in Redis with time-to-live `ttl`, or none when `conn` is `None`.
    pub fn new(conn: Option<redis::aio::ConnectionManager>, ttl: Duration) -> Self {
        Self {
            conn,
            ttl: ttl.max(Duration::from_millis(300)),
        }
    }

    pub fn none() -> Self {
        Self::new(None, Duration::from_secs(60))
    }

    /// How long a waiting node sleeps between looks for the publication or the lease.
    pub fn poll_interval(&self) -> Duration {
        (self.ttl / 4).clamp(Duration::from_millis(50), Duration::from_millis(500))
    }

    /// Tries to take `key`'s lease. Redis unavailable: logged, and taken locally (warming
    /// twice beats not warming).
    pub async fn try_take(&self, key: &WarmKey, node: &str) -> Taken {
        let Some(conn) = &self.conn else {
            return Taken::Held(Lease { renew: None });
        };
        let token = format!("{node}/{:016x}", rand::random::<u64>());
        let name = lease_key(key);
        let mut c = conn.clone();
        let ttl_ms = self.ttl.as_millis() as u64;
        let set: Result<Option<String>, _> = redis::cmd("SET")
            .arg(&name)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut c)
            .await;
        match set {
            Ok(Some(_)) => {
                let renew =
                    tokio::spawn(renew(conn.clone(), name.clone(), token.clone(), self.ttl));
                Taken::Held(Lease {
                    renew: Some(Renewal {
                        task: renew,
                        conn: conn.clone(),
                        name,
                        token,
                    }),
                })
            }
            Ok(None) => Taken::Busy,
            Err(e) => {
                tracing::warn!(%e, "the warm lease in Redis is unavailable; warming without it");
                Taken::Held(Lease { renew: None })
            }
        }
    }
}

async fn renew(
    mut conn: redis::aio::ConnectionManager,
    name: String,
    token: String,
    ttl: Duration,
) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        let r: Result<i64, _> = redis::cmd("EVAL")
            .arg(RENEW)
            .arg(1)
            .arg(&name)
            .arg(&token)
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await;
        match r {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!(lease = %name, "lost the warm lease (expired); another node may warm too");
                return;
            }
            Err(e) => tracing::warn!(lease = %name, %e, "could not renew the warm lease"),
        }
    }
}

struct Renewal {
    task: JoinHandle<()>,
    conn: redis::aio::ConnectionManager,
    name: String,
    token: String,
}

/// A held lease. [`Lease::release`] gives it back; dropped without it (a failed or abandoned
/// warm), it stops renewing and expires after its TTL.
pub struct Lease {
    renew: Option<Renewal>,
}

impl Lease {
    /// Stops renewing and deletes the lease if this node still holds it.
    pub async fn release(mut self) {
        let Some(r) = self.renew.take() else { return };
        r.task.abort();
        let mut conn = r.conn.clone();
        let res: Result<i64, _> = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&r.name)
            .arg(&r.token)
            .query_async(&mut conn)
            .await;
        if let Err(e) = res {
            tracing::warn!(lease = %r.name, %e, "could not release the warm lease; it expires by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(r) = &self.renew {
            r.task.abort();
        }
    }
}
