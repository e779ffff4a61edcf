//! The download stage: one file from Zoom into staging.
//!
//! The file streams through the account's Zoom client (auth chain, allowlist, resume, size and
//! HTML checks) into a staging writer that aborts on any failure, so a half-written file never
//! appears. Once complete, a done marker records its size and SHA-256; a task for a done file is
//! skipped (idempotent on meeting uuid and file id). When this file completes the meeting —
//! every wanted file is done — assemble is told; otherwise nothing is sent, so a meeting of N
//! files triggers one assembly, not N.

use relay_core::consumer::{Context, Stage};
use relay_core::failure::StageError;
use relay_core::status::{State, Transition};
use relay_pipeline::Shared;
use relay_pipeline::manifest::StagedFile;
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
        let binding = context.binding();
        let account = self.shared.accounts.resolve(binding)?;
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
            let written = download.finish();
            let record = StagedFile {
                file_id: file_id.to_owned(),
                size: written.bytes,
                sha256: written.sha256,
                staged_at: chrono::Utc::now(),
            };
            location.put_json(&done, &record).await?;
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
