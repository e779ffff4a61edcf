//! Streaming writes that never leave a half-written object, and never panic on a failure.
//!
//! `object_store`'s `BufWriter::abort()` panics once `shutdown()` was called, and for a file
//! smaller than one part every write error surfaces in `shutdown()`: a failed write of a chat
//! file would panic its task. [`ObjectWriter`] drives the multipart upload itself instead:
//!
//! - bytes arrive as `Bytes` and are cut into exact parts without copying (stores such as R2
//!   want every part but the last the same size);
//! - at most `parts_in_flight` parts are uploading while the next one fills, so memory is bounded
//!   by `part_size × (parts_in_flight + 1)` whatever the file's size;
//! - a file that fits in one part is a single `put` (atomic on every store);
//! - any failure, in a part, in completing, or in the caller's stream, aborts the upload; a
//!   writer dropped unfinished (a cancelled task) aborts in the background.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, PutPayloadMut};

use tokio::task::JoinSet;

use crate::StorageError;

pub struct ObjectWriter {
    store: Arc<dyn ObjectStore>,
    path: Path,
    part_size: usize,
    parts_in_flight: usize,
    /// The part being filled.
    pending: PutPayloadMut,
    pending_len: usize,
    /// Started on the first full part.
    upload: Option<Box<dyn MultipartUpload>>,
    /// Parts on their way, each its own task so they progress while the next part fills.
    uploading: JoinSet<object_store::Result<()>>,
    written: u64,
}

impl ObjectWriter {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        part_size: usize,
        parts_in_flight: usize,
    ) -> Self {
        Self {
            store,
            path,
            part_size: part_size.max(1),
            parts_in_flight: parts_in_flight.max(1),
            pending: PutPayloadMut::new(),
            pending_len: 0,
            upload: None,
            uploading: JoinSet::new(),
            written: 0,
        }
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Takes `chunk` (no copy), uploading every part it completes. Waits while
    /// `parts_in_flight` parts are already uploading: the producer slows to the store's pace.
    pub async fn write(&mut self, mut chunk: Bytes) -> Result<(), StorageError> {
        self.written += chunk.len() as u64;
        while !chunk.is_empty() {
            let room = self.part_size - self.pending_len;
            let piece = chunk.split_to(room.min(chunk.len()));
            self.pending_len += piece.len();
            self.pending.push(piece);
            if self.pending_len == self.part_size {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<(), StorageError> {
        while self.uploading.len() >= self.parts_in_flight {
            self.settle_one().await?;
        }
        if self.upload.is_none() {
            self.upload = Some(self.store.put_multipart(&self.path).await?);
        }
        let part = std::mem::take(&mut self.pending).freeze();
        self.pending_len = 0;
        if let Some(upload) = self.upload.as_mut() {
            self.uploading.spawn(upload.put_part(part));
        }
        Ok(())
    }

    /// Waits for one part in flight; an error (or a part's task that died) fails the write.
    async fn settle_one(&mut self) -> Result<(), StorageError> {
        match self.uploading.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(error.into()),
            Some(Err(joined)) => Err(StorageError::Io(std::io::Error::other(format!(
                "a part upload stopped: {joined}"
            )))),
        }
    }

    /// Makes the object appear under its path, whole; on failure nothing appears and every part
    /// is aborted.
    pub async fn finish(mut self) -> Result<(), StorageError> {
        let result = self.complete().await;
        if result.is_err() {
            self.abort_upload().await;
        }
        result
    }

    async fn complete(&mut self) -> Result<(), StorageError> {
        let Some(mut upload) = self.upload.take() else {
            let payload: PutPayload = std::mem::take(&mut self.pending).freeze();
            self.store.put(&self.path, payload).await?;
            return Ok(());
        };
        // Put the upload back first: a failure below must still be able to abort it.
        if self.pending_len > 0 {
            let part = std::mem::take(&mut self.pending).freeze();
            self.pending_len = 0;
            self.uploading.spawn(upload.put_part(part));
        }
        self.upload = Some(upload);
        while !self.uploading.is_empty() {
            self.settle_one().await?;
        }
        if let Some(upload) = self.upload.as_mut() {
            upload.complete().await?;
        }
        self.upload = None;
        Ok(())
    }

    /// Discards everything written; never fails, never panics.
    pub async fn abort(mut self) {
        self.abort_upload().await;
    }

    async fn abort_upload(&mut self) {
        self.uploading.shutdown().await;
        if let Some(mut upload) = self.upload.take()
            && let Err(error) = upload.abort().await
        {
            tracing::warn!(%error, "aborting a multipart upload failed; the store's lifecycle rule must clean it up");
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        // A task cancelled mid-write (shutdown, a lost broker session) must not leave parts.
        if let Some(mut upload) = self.upload.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            self.uploading.abort_all();
            runtime.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}
