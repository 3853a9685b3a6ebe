//! The snapshot records: who owns a snapshot, who it is shared with, its label and sizes, and which sandbox id is paused at which snapshot.
//!
//! Records are mutable and live in the tier stack's durable tier ([`prewarm_store::Records`]),
//! so every origin sharing it sees the same ones. None of this is manifest content: two users
//! with the same workspace get the same snapshot digest, each an owner.
//!
//! ```text
//! snapshots/<hex>                    SnapshotRecord (JSON)
//! users/<sha256(user_id) hex>/<hex>  {} : the user's list (user ids are free text, keys are not)
//! paused/<sandbox id>                PausedRecord (JSON)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use prewarm_shared::sandbox::CreateSandbox;
use prewarm_shared::Digest;
use prewarm_store::{RecordKey, Records, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// One owner's view of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owned {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub created_ms: u64,
}

/// `snapshots/<hex>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub snapshot: Digest,
    pub runtime: Digest,
    #[serde(default)]
    pub parent: Option<Digest>,
    pub files: u64,
    pub bytes_total: u64,
    pub owners: BTreeMap<String, Owned>,
    #[serde(default)]
    pub shared_with: BTreeSet<String>,
}

impl SnapshotRecord {
    /// Whether `user` may see and use it: an owner, or shared with.
    pub fn visible_to(&self, user: &str) -> bool {
        self.owners.contains_key(user) || self.shared_with.contains(user)
    }
}

/// `paused/<sandbox id>`: what resuming needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PausedRecord {
    pub sandbox_id: String,
    pub snapshot: Digest,
    pub request: CreateSandbox,
    pub paused_ms: u64,
}

/// The records, typed.
#[derive(Clone)]
pub struct SnapshotRecords(pub Arc<dyn Records>);

fn key(s: String) -> RecordKey {
    s.parse()
        .expect("record keys here are built from hex digests and checked sandbox ids")
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn snapshot_key(d: &Digest) -> RecordKey {
    key(format!("snapshots/{}", d.hex()))
}

fn user_dir(user: &str) -> RecordKey {
    key(format!("users/{}", Digest::of(user.as_bytes()).hex()))
}

fn paused_key(id: &str) -> Option<RecordKey> {
    format!("paused/{id}").parse().ok()
}

impl SnapshotRecords {
    async fn get<T: DeserializeOwned>(&self, k: &RecordKey) -> Result<Option<T>, ApiError> {
        match self.0.get_record(k).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                ApiError::from(StoreError::other(
                    "records",
                    format!("record {k} is corrupt: {e}"),
                ))
            }),
        }
    }

    async fn put<T: Serialize>(&self, k: &RecordKey, v: &T) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(v).map_err(|e| ApiError::Internal(Box::new(e)))?;
        Ok(self.0.put_record(k, Bytes::from(bytes)).await?)
    }

    pub async fn snapshot(&self, d: &Digest) -> Result<Option<SnapshotRecord>, ApiError> {
        self.get(&snapshot_key(d)).await
    }

    /// The record, if `user` may see it; otherwise `None`, exactly as if it did not exist.
    pub async fn visible(
        &self,
        d: &Digest,
        user: &str,
    ) -> Result<Option<SnapshotRecord>, ApiError> {
        Ok(self.snapshot(d).await?.filter(|r| r.visible_to(user)))
    }

    /// Adds `user` as an owner of a snapshot just taken (creating its record).
    pub async fn add_owner(
        &self,
        mut rec: SnapshotRecord,
        user: &str,
        label: Option<String>,
    ) -> Result<SnapshotRecord, ApiError> {
        if let Some(old) = self.snapshot(&rec.snapshot).await? {
            // The same snapshot again (an unchanged workspace): its ancestry stays as recorded.
            rec.parent = old.parent.or(rec.parent);
            rec.owners = old.owners;
            rec.shared_with = old.shared_with;
        }
        let entry = rec.owners.entry(user.to_string()).or_insert(Owned {
            label: None,
            created_ms: now_ms(),
        });
        if label.is_some() {
            entry.label = label;
        }
        self.put(&snapshot_key(&rec.snapshot), &rec).await?;
        let mine = user_dir(user)
            .join(&rec.snapshot.hex())
            .expect("a hex digest is a valid segment");
        self.0.put_record(&mine, Bytes::from_static(b"{}")).await?;
        Ok(rec)
    }

    pub async fn save(&self, rec: &SnapshotRecord) -> Result<(), ApiError> {
        self.put(&snapshot_key(&rec.snapshot), rec).await
    }

    /// Drops `user`'s ownership; the record goes with its last owner.
    pub async fn remove_owner(&self, mut rec: SnapshotRecord, user: &str) -> Result<(), ApiError> {
        rec.owners.remove(user);
        let mine = user_dir(user)
            .join(&rec.snapshot.hex())
            .expect("a hex digest is a valid segment");
        if rec.owners.is_empty() {
            self.0.delete_record(&snapshot_key(&rec.snapshot)).await?;
        } else {
            self.save(&rec).await?;
        }
        Ok(self.0.delete_record(&mine).await?)
    }

    /// The digests of `user`'s snapshots.
    pub async fn of_user(&self, user: &str) -> Result<Vec<Digest>, ApiError> {
        let keys = self.0.list_records(&user_dir(user)).await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.segments().last())
            .filter_map(|hex| format!("sha256:{hex}").parse().ok())
            .collect())
    }

    pub async fn paused(&self, id: &str) -> Result<Option<PausedRecord>, ApiError> {
        match paused_key(id) {
            Some(k) => self.get(&k).await,
            None => Ok(None),
        }
    }

    pub async fn set_paused(&self, rec: &PausedRecord) -> Result<(), ApiError> {
        let k = paused_key(&rec.sandbox_id)
            .ok_or_else(|| ApiError::NotFound(format!("no sandbox {}", rec.sandbox_id)))?;
        self.put(&k, rec).await
    }

    pub async fn clear_paused(&self, id: &str) -> Result<(), ApiError> {
        match paused_key(id) {
            Some(k) => Ok(self.0.delete_record(&k).await?),
            None => Ok(()),
        }
    }
}
