//! Large objects: uploaded in parts to a staging name, then copied to
//! their own name only if it does not exist; staged uploads left behind
//! are swept.

use object_store::path::Path;
use object_store::ObjectStoreExt;
use sha2::Digest;

use super::{Lake, LakeError, Put};

impl Lake {
    /// [`Lake::create`] for large objects: uploads in parts of `part_size`
    /// to a staging name, then copies it to `path` only if `path` does not
    /// exist (on S3: a copy completed with If-None-Match), and removes the
    /// staging object. The staging name is derived from `path`, so a retry
    /// after a crash reuses it.
    pub async fn create_multipart(
        &self,
        path: &Path,
        bytes: bytes::Bytes,
        part_size: usize,
    ) -> Result<Put, LakeError> {
        if self.store.head(path).await.is_ok() {
            return Ok(Put::AlreadyExisted);
        }
        // Short, as some stores bound key lengths; derived from `path`.
        let digest = sha2::Sha256::digest(path.as_ref().as_bytes());
        let staging = self.path(&format!("{STAGING}/{}", hex::encode(&digest[..16])));
        self.upload_in_parts(&staging, bytes, part_size).await?;
        let created = match self.store.copy_if_not_exists(&staging, path).await {
            Ok(()) => Put::Created,
            Err(object_store::Error::AlreadyExists { .. }) => self.confirm_exists(path).await?,
            Err(error) => return Err(error.into()),
        };
        if let Err(error) = self.store.delete(&staging).await {
            tracing::warn!(%error, path = %staging, "removing a staged upload failed");
        }
        Ok(created)
    }
}

impl Lake {
    /// Uploads `bytes` to `path` in parts of `part_size`, a few at a time;
    /// an upload that fails is aborted, so that its parts are not left
    /// behind (a crash still leaves them: see README for the lifecycle
    /// rule that removes incomplete uploads).
    async fn upload_in_parts(
        &self,
        path: &Path,
        bytes: bytes::Bytes,
        part_size: usize,
    ) -> Result<(), LakeError> {
        use futures::{StreamExt, TryStreamExt};
        const PARTS_IN_FLIGHT: usize = 8;
        let mut upload = self.store.put_multipart(path).await?;
        let part_size = part_size.max(1);
        let parts: Vec<_> = (0..bytes.len().max(1))
            .step_by(part_size)
            .map(|at| upload.put_part(bytes.slice(at..(at + part_size).min(bytes.len())).into()))
            .collect();
        let sent = futures::stream::iter(parts)
            .buffered(PARTS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await;
        let completed = match sent {
            Ok(_) => upload.complete().await.map(|_| ()),
            Err(error) => Err(error),
        };
        if let Err(error) = completed {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(error = %abort, %path, "aborting a failed multipart upload failed");
            }
            return Err(error.into());
        }
        Ok(())
    }

    /// Deletes staged uploads (see [`Lake::create_multipart`]) last
    /// modified longer than `older_than` ago: left by a copy or a delete
    /// that failed, or a crash between them. How many were deleted.
    pub async fn sweep_staging(&self, older_than: std::time::Duration) -> Result<usize, LakeError> {
        use futures::TryStreamExt;
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let staged: Vec<_> = self
            .store
            .list(Some(&self.path(STAGING)))
            .try_filter(|meta| futures::future::ready(meta.last_modified < cutoff))
            .try_collect()
            .await?;
        for meta in &staged {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(staged.len())
    }
}

/// Where multipart uploads are staged before their create-only copy.
pub(super) const STAGING: &str = "_sink_staging";
