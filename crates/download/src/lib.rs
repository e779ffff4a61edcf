//! The download stage: one file from Zoom into staging.
//!
//! The file streams through the account's Zoom client (auth chain, allowlist, resume, size and
//! HTML checks) into a staging writer that aborts on any failure, so a half-written file never
//! appears. Once complete, a done marker records its size and SHA-256; a task for a done file is
//! skipped (idempotent on meeting uuid and file id). When this file completes the meeting —
//! every wanted file is done — assemble is told; otherwise nothing is sent, so a meeting of N
//! files triggers one assembly, not N.
//!
//! A file given up on (a permanent failure, or the last attempt) is marked failed before its
//! task is dead-lettered: the meeting is assembled and archived without it, and its manifest
//! says what is missing and why, rather than nothing of the meeting ever being archived.

use relay_core::consumer::{Context, Stage};
use relay_core::failure::StageError;
use relay_core::status::{State, Transition};
use relay_pipeline::Shared;
use relay_pipeline::manifest::{FailedFile, StagedFile};
use relay_pipeline::messages::{AssembleTask, FileTask};
use relay_pipeline::staging::StagingKey;
use serde_json::json;
use tracing::info;
use zoom_api::client::FileSource;

pub struct Download {
    shared: Shared,
}

impl Download {
    pub fn new(shared: &Shared) -> Self {
        Self {
            shared: shared.clone(),
        }
    }
}

impl Stage for Download {
    type Input = FileTask;

    async fn handle(&self, task: FileTask, context: &Context) -> Result<(), StageError> {
        let account = self.shared.accounts.resolve(context.binding())?;
        match self.fetch(account, &task, context).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let final_attempt = context.attempt() >= self.shared.settings.max_attempts;
                if !error.code().is_retryable() || final_attempt {
                    self.give_up(account, &task, &error, context).await?;
                }
                Err(error)
            }
        }
    }
}

impl Download {
    /// Records the file as given up on and, if that settles the meeting, asks for assembly.
    async fn give_up(
        &self,
        account: &relay_pipeline::Account,
        task: &FileTask,
        error: &StageError,
        context: &Context,
    ) -> Result<(), StageError> {
        let staging = self
            .shared
            .staging
            .meeting(account.name(), &task.meeting_uuid);
        let (code, reason) = match error {
            StageError::Failed { code, reason } | StageError::Wait { code, reason, .. } => {
                (code, reason)
            }
        };
        let failed = FailedFile {
            file_id: task.file_id().to_owned(),
            code: code.as_str().to_owned(),
            reason: reason.clone(),
            failed_at: chrono::Utc::now(),
        };
        staging
            .location()
            .put_json(
                &staging.path(StagingKey::Failed {
                    file_id: task.file_id(),
                })?,
                &failed,
            )
            .await?;
        if staging.snapshot().await?.complete() {
            context
                .send(&AssembleTask {
                    meeting_uuid: task.meeting_uuid.clone(),
                    staged_file: task.file_id().to_owned(),
                })
                .await?;
        }
        Ok(())
    }

    async fn fetch(
        &self,
        account: &relay_pipeline::Account,
        task: &FileTask,
        context: &Context,
    ) -> Result<(), StageError> {
        let binding = context.binding();
        let (uuid, file_id) = (task.meeting_uuid.as_str(), task.file_id());
        let staging = self.shared.staging.meeting(account.name(), uuid);
        let location = staging.location();
        let done = staging.path(StagingKey::Done { file_id })?;
        let staged: Option<StagedFile> = if binding.force {
            None
        } else {
            location.get_json(&done).await?
        };
        if staged.is_none() {
            let source = FileSource {
                meeting_uuid: uuid.to_owned(),
                file_id: file_id.to_owned(),
                download_url: task.file.download_url.clone().ok_or_else(|| {
                    StageError::new(
                        relay_core::Code::FileProcessing,
                        "Zoom gave no download URL yet",
                    )
                })?,
                download_token: task.download_token.clone(),
                expected_size: task.file.file_size,
            };
            let mut download = account.zoom.download(source).await?;
            let data = staging.path(StagingKey::Data { file_id })?;
            let mut writer = location.writer(
                &data,
                download.promised().or(task.file.file_size).unwrap_or(0),
            );
            let copied = async {
                while let Some(chunk) = download.next_chunk().await? {
                    writer.write(chunk).await?;
                }
                Ok::<_, StageError>(())
            }
            .await;
            if let Err(error) = copied {
                writer.abort().await;
                return Err(error);
            }
            writer.finish().await?;
            let written = download.finish().await?;
            let record = StagedFile {
                file_id: file_id.to_owned(),
                size: written.bytes,
                sha256: written.sha256,
                staged_at: chrono::Utc::now(),
            };
            location.put_json(&done, &record).await?;
            // Fetched after all (a replay after a fix): the meeting no longer lacks it.
            location
                .delete(&staging.path(StagingKey::Failed { file_id })?)
                .await?;
            self.shared
                .metrics
                .add_bytes(relay_core::broker::StageName::Download, record.size);
            info!(bytes = record.size, "file staged");
            context
                .record(
                    Transition::new(binding, uuid, State::Staged, "download")
                        .file(file_id)
                        .detail(json!({
                            "file_type": task.file.file_type.as_str(),
                            "size": record.size,
                        })),
                )
                .await?;
        }
        if staging.snapshot().await?.complete() {
            context
                .send(&AssembleTask {
                    meeting_uuid: uuid.to_owned(),
                    staged_file: file_id.to_owned(),
                })
                .await?;
        }
        Ok(())
    }
}
