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

use std::time::Duration;

use object_store::ObjectStoreExt;
use relay_core::consumer::{Context, Stage};
use relay_core::failure::StageError;
use relay_core::status::{State, Transition};
use relay_pipeline::Shared;
use relay_pipeline::manifest::{FailedFile, StagedFile};
use relay_pipeline::messages::{AssembleTask, FileTask};
use relay_pipeline::staging::StagingKey;
use relay_storage::copy_streaming;
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
                // A wait (a file still processing, a download continuing from its parts)
                // spends no attempt and comes back: the file is not given up on.
                let failed = matches!(error, StageError::Failed { .. });
                if failed && (!error.code().is_retryable() || final_attempt) {
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
            let data = staging.path(StagingKey::Data { file_id })?;
            let parts = held_parts(location, &staging, file_id).await?;
            let offset = parts.last().map_or(0, |part| part.end());
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
                start_at: offset,
            };
            let mut download = account.zoom.download(source).await?;
            // A download starting from nothing writes the file itself; one continuing after
            // earlier parts writes the next part.
            let target = match offset {
                0 => data.clone(),
                offset => staging.path(StagingKey::Part { file_id, offset })?,
            };
            let mut writer = location.writer(
                &target,
                download
                    .promised()
                    .or(task.file.file_size)
                    .unwrap_or(0)
                    .saturating_sub(offset),
            );
            let hold_limit = self.shared.settings.download_hold_limit;
            let held_until = std::time::Instant::now() + hold_limit;
            let copied = async {
                while let Some(chunk) = download.next_chunk().await? {
                    writer.write(chunk).await?;
                    // Only with bytes still to come: a continuation of a file already whole
                    // would ask Zoom for a range past its end.
                    let more = download
                        .promised()
                        .is_none_or(|promised| download.received() < promised);
                    if more && std::time::Instant::now() >= held_until {
                        return Ok(false);
                    }
                }
                Ok::<_, StageError>(true)
            }
            .await;
            let complete = match copied {
                Ok(complete) => complete,
                Err(error) => {
                    writer.abort().await;
                    return Err(error);
                }
            };
            writer.finish().await?;
            if !complete {
                let received = download.received();
                if offset == 0 {
                    // What was written under the file's name is the first part.
                    let first = staging.path(StagingKey::Part { file_id, offset: 0 })?;
                    location
                        .store
                        .rename(&data, &first)
                        .await
                        .map_err(|error| {
                            StageError::from_error(relay_core::Code::StorageFailed, &error)
                        })?;
                }
                info!(
                    received,
                    promised = download.promised(),
                    "held the delivery for the hold limit: continuing from a part"
                );
                return Err(StageError::wait(
                    relay_core::Code::DownloadContinues,
                    format!("held {hold_limit:?}; continues from byte {received}"),
                    Duration::ZERO,
                ));
            }
            let mut written = download.finish().await?;
            if offset > 0 {
                // The parts and this last one, joined into the file and hashed as a whole.
                let mut sources: Vec<_> = parts.iter().map(|part| part.path.clone()).collect();
                sources.push(target);
                let (joined, sha256) =
                    copy_streaming(location, &sources, location, &data, written.bytes).await?;
                if joined != written.bytes {
                    return Err(StageError::new(
                        relay_core::Code::VerificationFailed,
                        format!(
                            "the parts hold {joined} bytes, the download received {}",
                            written.bytes
                        ),
                    ));
                }
                written.sha256 = sha256;
            }
            let record = StagedFile {
                file_id: file_id.to_owned(),
                size: written.bytes,
                sha256: written.sha256,
                staged_at: chrono::Utc::now(),
            };
            location.put_json(&done, &record).await?;
            // The file is whole and recorded: any part left of it (this download's, or an
            // earlier attempt's) is no longer needed. A part that will not go is only untidy.
            for part in location
                .list(&staging.path(StagingKey::PartsDir { file_id })?)
                .await
                .unwrap_or_default()
            {
                if let Err(error) = location.delete(&part).await {
                    tracing::debug!(%error, "a part was not removed");
                }
            }
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

/// One part of a download that outlasted its hold limit.
struct Part {
    path: object_store::path::Path,
    offset: u64,
    size: u64,
}

impl Part {
    fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// The parts held for `file_id`, contiguous from byte 0. A part past a gap (its predecessor
/// lost) does not count: the download continues from the end of the contiguous run, and writes
/// over it.
async fn held_parts(
    location: &relay_storage::Location,
    staging: &relay_pipeline::staging::MeetingStaging<'_>,
    file_id: &str,
) -> Result<Vec<Part>, StageError> {
    let mut found = Vec::new();
    for path in location
        .list(&staging.path(StagingKey::PartsDir { file_id })?)
        .await?
    {
        let Some(offset) = path.filename().and_then(|name| name.parse::<u64>().ok()) else {
            continue;
        };
        if let Some(size) = location.exists_with_size(&path).await? {
            found.push(Part { path, offset, size });
        }
    }
    found.sort_by_key(|part| part.offset);
    let mut contiguous: Vec<Part> = Vec::new();
    for part in found {
        if part.offset == contiguous.last().map_or(0, Part::end) && part.size > 0 {
            contiguous.push(part);
        }
    }
    Ok(contiguous)
}
