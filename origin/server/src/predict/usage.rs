//! Usage records: every create (time, hashed user, runtime, hot) kept by the hour in Redis or the durable tier; old hours deleted, the rest replayed at start.
//!
//! ```text
//! predict-usage/<node>/<hour>   {"events":[{"t":…,"user":"<16 hex>","runtime":"py:v1","hot":true},…]}
//! ```
//! `<hour>` is the clock's seconds / 3600. A user is stored as the first 16 hex digits of the
//! SHA-256 of their id, never the id. Bounded: at most `max_events_per_hour` creates per hour
//! and node are stored (the policy still sees the rest), hours older than `retention_hours`
//! are deleted, and what waits for the next flush is capped too.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prewarm_predict::{Secs, HOUR};
use prewarm_store::{RecordKey, Records, StoreError};
use serde::{Deserialize, Serialize};

/// One create as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRec {
    pub t: Secs,
    /// [`super::names::user_hash`] of the user id.
    pub user: String,
    pub runtime: String,
    pub hot: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct HourDoc {
    events: Vec<UsageRec>,
}

/// The recorder of one node's usage.
pub struct UsageLog {
    records: Arc<dyn Records>,
    /// Where it is kept, for logs: `redis` or the durable tier.
    pub store: &'static str,
    prefix: RecordKey,
    max_per_hour: usize,
    retention_hours: u64,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    events: Vec<UsageRec>,
    /// Creates not stored (over the hourly cap, or the store was down too long).
    dropped: u64,
    last_prune_hour: Option<u64>,
}

impl UsageLog {
    pub fn new(
        records: Arc<dyn Records>,
        store: &'static str,
        node: &str,
        max_per_hour: usize,
        retention_hours: u64,
    ) -> Self {
        let node: String = node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(128)
            .collect();
        let node = if node.is_empty() || node == "." || node == ".." {
            "node".to_owned()
        } else {
            node
        };
        let prefix = format!("predict-usage/{node}")
            .parse()
            .expect("a sanitised node name makes a valid key");
        Self {
            records,
            store,
            prefix,
            max_per_hour,
            retention_hours,
            pending: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a create for the next [`UsageLog::flush`].
    pub fn record(&self, rec: UsageRec) {
        let mut p = self.lock();
        if p.events.len() >= 2 * self.max_per_hour {
            p.dropped += 1;
            return;
        }
        p.events.push(rec);
    }

    /// Creates not stored so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    fn key(&self, hour: u64) -> RecordKey {
        self.prefix
            .join(&hour.to_string())
            .expect("a number is a valid segment")
    }

    /// Writes what was recorded into its hours' records, then (once an hour) deletes hours
    /// past the retention. On a store error the events are kept for the next flush.
    pub async fn flush(&self, now: Secs) -> Result<(), StoreError> {
        let events = std::mem::take(&mut self.lock().events);
        let mut by_hour: std::collections::BTreeMap<u64, Vec<UsageRec>> = Default::default();
        for e in events {
            by_hour.entry(e.t / HOUR).or_default().push(e);
        }
        let mut result = Ok(());
        let mut failed = Vec::new();
        for (hour, events) in by_hour {
            if result.is_err() {
                failed.extend(events);
                continue;
            }
            if let Err(e) = self.append(hour, &events).await {
                failed.extend(events);
                result = Err(e);
            }
        }
        if !failed.is_empty() {
            let mut p = self.lock();
            failed.append(&mut p.events);
            p.events = failed;
        }
        result?;
        let hour = now / HOUR;
        if self.lock().last_prune_hour != Some(hour) {
            self.prune(hour).await?;
            self.lock().last_prune_hour = Some(hour);
        }
        Ok(())
    }

    async fn append(&self, hour: u64, events: &[UsageRec]) -> Result<(), StoreError> {
        let key = self.key(hour);
        let mut doc: HourDoc = match self.records.get_record(&key).await? {
            Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
            None => HourDoc::default(),
        };
        let room = self.max_per_hour.saturating_sub(doc.events.len());
        let take = events.len().min(room);
        doc.events.extend_from_slice(&events[..take]);
        let lost = (events.len() - take) as u64;
        if lost > 0 {
            self.lock().dropped += lost;
        }
        if take == 0 {
            return Ok(());
        }
        let bytes =
            serde_json::to_vec(&doc).map_err(|e| StoreError::other("usage", e.to_string()))?;
        self.records.put_record(&key, Bytes::from(bytes)).await
    }

    /// The hours this node keeps, as (hour, key).
    async fn hours(&self) -> Result<Vec<(u64, RecordKey)>, StoreError> {
        let keys = self.records.list_records(&self.prefix).await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| {
                let h = k.segments().last()?.parse::<u64>().ok()?;
                Some((h, k))
            })
            .collect())
    }

    async fn prune(&self, hour: u64) -> Result<(), StoreError> {
        let oldest = hour.saturating_sub(self.retention_hours);
        for (h, k) in self.hours().await? {
            if h < oldest {
                self.records.delete_record(&k).await?;
            }
        }
        Ok(())
    }

    /// Every create recorded within the retention before `now`, in time order.
    pub async fn load(&self, now: Secs) -> Result<Vec<UsageRec>, StoreError> {
        let oldest = (now / HOUR).saturating_sub(self.retention_hours);
        let mut out = Vec::new();
        for (h, k) in self.hours().await? {
            if h < oldest {
                continue;
            }
            if let Some(b) = self.records.get_record(&k).await? {
                match serde_json::from_slice::<HourDoc>(&b) {
                    Ok(d) => out.extend(d.events),
                    Err(e) => tracing::warn!(key = %k, %e, "skipping an unreadable usage record"),
                }
            }
        }
        out.sort_by_key(|e| e.t);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: Secs, user: &str, runtime: &str) -> UsageRec {
        UsageRec {
            t,
            user: user.into(),
            runtime: runtime.into(),
            hot: false,
        }
    }

    #[tokio::test]
    async fn hours_are_capped_kept_for_the_retention_and_replayed_in_order() {
        let store: Arc<dyn Records> = Arc::new(prewarm_store::MemoryStore::new());
        let log = UsageLog::new(store.clone(), "memory", "node/1 x", 3, 2);
        for i in 0..5 {
            log.record(rec(10 * HOUR + i, "u", "a:v1"));
        }
        log.record(rec(11 * HOUR, "v", "b:v1"));
        log.flush(11 * HOUR).await.unwrap();
        assert_eq!(log.dropped(), 2, "over the hourly cap");
        let all = log.load(11 * HOUR).await.unwrap();
        assert_eq!(all.len(), 4);
        assert!(all.windows(2).all(|w| w[0].t <= w[1].t));
        // Four hours later, hour 10 is past a 2-hour retention: deleted, not replayed.
        log.record(rec(14 * HOUR, "u", "a:v1"));
        log.flush(14 * HOUR).await.unwrap();
        let left = log.load(14 * HOUR).await.unwrap();
        assert_eq!(left, [rec(14 * HOUR, "u", "a:v1")]);
        let keys = store
            .list_records(&"predict-usage".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(keys[0].as_str(), format!("predict-usage/node_1_x/{}", 14));
    }
}
