//! Multipart upload of objects bigger than one part: hashed while streaming, completed only on a digest match.

use aws_sdk_s3::primitives::ByteStream as AwsBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use prewarm_shared::{Digest, Hasher};

use super::super::{ByteStream, Kind, StoreError};
use super::{map_err, S3Store, NAME, PART_SIZE};

impl S3Store {
    /// Streams `first` and the rest of `body` as parts; completes only if the digest matches.
    pub(super) async fn put_multipart(
        &self,
        kind: Kind,
        digest: &Digest,
        key: &str,
        first: Bytes,
        mut h: Hasher,
        mut body: ByteStream,
    ) -> Result<(), StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err(key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                StoreError::other(NAME, "create_multipart_upload returned no upload id")
            })?
            .to_string();
        let guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id: Some(upload_id.clone()),
        };
        let mut parts = Vec::new();
        let mut buf = BytesMut::from(&first[..]);
        let mut eof = false;
        loop {
            while !eof && buf.len() < PART_SIZE {
                match body.next().await {
                    Some(piece) => {
                        let piece = piece?;
                        h.update(&piece);
                        buf.extend_from_slice(&piece);
                    }
                    None => eof = true,
                }
            }
            if buf.is_empty() {
                break;
            }
            // Every part but the last is exactly PART_SIZE (S3 wants ≥ 5 MiB).
            let part = buf.split_to(buf.len().min(PART_SIZE)).freeze();
            let number = parts.len() as i32 + 1;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .content_length(part.len() as i64)
                .body(AwsBody::from(part))
                .send()
                .await
                .map_err(|e| map_err(key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            );
        }
        let actual = h.finish();
        if actual != *digest {
            guard.abort().await;
            return Err(StoreError::Integrity {
                kind: kind.as_str(),
                expected: *digest,
                actual,
            });
        }
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|e| map_err(key, e))?;
        guard.disarm();
        Ok(())
    }
}

/// Aborts a multipart upload unless disarmed: on error paths, and (spawned) when a `put` is dropped.
struct AbortGuard {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl AbortGuard {
    async fn abort(mut self) {
        if let Some(id) = self.upload_id.take() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await;
        }
    }

    fn disarm(mut self) {
        self.upload_id = None;
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        let Some(id) = self.upload_id.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let req = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(id);
        // Cleanup of an upload that is invisible anyway; the lifecycle rule is the backstop.
        rt.spawn(async move {
            let _ = req.send().await;
        });
    }
}
