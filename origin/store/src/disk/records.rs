//! [`Records`] on the local disk: `records-v1/<segment>/…/@<last segment>`, written like objects (temp, fsync, rename).
//!
//! The leaf is `@`-prefixed (never a key character), so the record `a/b` (`a/@b`) and the
//! records under `a/b/` (directory `a/b`) never collide.

use std::path::PathBuf;

use bytes::Bytes;

use super::{err, DiskStore, NAME};
use crate::records::{check_size, RecordKey, Records};
use crate::{Object, StoreError};

impl DiskStore {
    fn record_path(&self, key: &RecordKey) -> PathBuf {
        let mut p = self.root.join("records-v1");
        let segs: Vec<&str> = key.segments().collect();
        for s in &segs[..segs.len() - 1] {
            p.push(s);
        }
        p.push(format!("@{}", segs[segs.len() - 1]));
        p
    }
}

#[async_trait::async_trait]
impl Records for DiskStore {
    async fn get_record(&self, key: &RecordKey) -> Result<Option<Bytes>, StoreError> {
        match tokio::fs::read(self.record_path(key)).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    async fn put_record(&self, key: &RecordKey, doc: Bytes) -> Result<(), StoreError> {
        check_size(NAME, &doc)?;
        let (tmp, _) = self.write_temp(Object::from_bytes(doc).body).await?;
        self.install(&tmp, &self.record_path(key)).await
    }

    async fn delete_record(&self, key: &RecordKey) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.record_path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn list_records(&self, prefix: &RecordKey) -> Result<Vec<RecordKey>, StoreError> {
        let mut dir = self.root.join("records-v1");
        for s in prefix.segments() {
            dir.push(s);
        }
        let base = prefix.clone();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![(dir, base)];
            while let Some((d, key)) = stack.pop() {
                let rd = match std::fs::read_dir(&d) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(err(e)),
                };
                for e in rd {
                    let e = e.map_err(err)?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    let is_dir = e.file_type().map_err(err)?.is_dir();
                    match (is_dir, name.strip_prefix('@')) {
                        (false, Some(leaf)) => keys.extend(key.join(leaf).ok()),
                        (true, None) => {
                            if let Ok(k) = key.join(&name) {
                                stack.push((e.path(), k));
                            }
                        }
                        _ => {}
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| StoreError::other(NAME, e))?
    }
}
