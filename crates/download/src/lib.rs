//! The download stage: recording events in, files in staging out.
//!
//! - [`Plan`] consumes `recording.completed` / `recording.transcript_completed`, applies the
//!   account's filters, completes the file list from the recordings API (stop/start recordings
//!   list fewer files in the event than the API does), records what it wants in staging, and fans
//!   out one [`FileTask`] per file — so no delivery holds a multi-GB transfer's worth of time
//!   beyond one file.
//! - [`Download`] streams one file into staging with the Zoom client (auth chain, resume,
//!   verification), marks it done with its size and SHA-256, and tells assemble.
//!
//! Both are idempotent on (meeting uuid, file id): a staged file is never fetched twice.

use std::collections::HashSet;
use std::sync::Arc;

use relay_core::Settings;
use relay_core::broker::{Broker, StageName};
use relay_core::consumer::{self, Context, Stage, StageError, Subject};
use relay_core::shutdown::CancellationToken;
use relay_pipeline::manifest::{MeetingMeta, StagedFile, WantedFile};
use relay_pipeline::messages::{FileTask, MeetingRef};
use relay_pipeline::storage::{Staging, StagingKey};
use relay_pipeline::{Account, Accounts, StartError};
use tokio::io::AsyncWriteExt;
use tracing::info;
use zoom_api::ZoomError;
use zoom_api::client::{DownloadError, FileSource};
use zoom_api::model::{RecordingEvent, RecordingFile, Sensitive};

pub struct Plan {
    accounts: Accounts,
    staging: Staging,
}

impl Plan {
    pub fn new(accounts: Accounts, staging: Staging) -> Self {
        Self { accounts, staging }
    }

    fn skip_reason(account: &Account, event: &RecordingEvent) -> Option<&'static str> {
        let meeting = &event.payload.object;
        let settings = &account.settings;
        if meeting.is_webinar() && !settings.webinars {
            return Some("webinars are off for this account");
        }
        if !meeting.is_webinar() && !settings.meetings {
            return Some("meetings are off for this account");
        }
        if !account.wants_host(meeting.host_email.as_deref()) {
            return Some("host filtered out");
        }
        if meeting
            .duration
            .is_some_and(|minutes| minutes < settings.min_duration_minutes)
        {
            return Some("shorter than min_duration_minutes");
        }
        None
    }
}

impl Stage for Plan {
    const NAME: StageName = StageName::Plan;
    type Message = RecordingEvent;

    fn subject(event: &RecordingEvent) -> Subject {
        Subject {
            account: event.payload.account_id.clone().unwrap_or_default(),
            meeting_uuid: event.payload.object.uuid.clone(),
            file_id: None,
            event: Some(event.event.clone()),
        }
    }

    async fn handle(&self, event: RecordingEvent, context: &Context) -> Result<(), StageError> {
        let zoom_account = event
            .payload
            .account_id
            .clone()
            .or_else(|| event.payload.object.account_id.clone())
            .unwrap_or_default();
        let account = self.accounts.by_zoom_id(&zoom_account).ok_or_else(|| {
            StageError::reject(
                "unknown_account",
                format!("no configured account has id `{zoom_account}`"),
            )
        })?;
        if let Some(reason) = Self::skip_reason(account, &event) {
            info!(reason, "recording skipped");
            return Ok(());
        }
        let meeting = &event.payload.object;
        let uuid = meeting.uuid.as_str();
        let name = account.settings.name.as_str();

        // (file, participant audio?, the event's download token when the file came from it)
        let mut files: Vec<(RecordingFile, bool, Option<Sensitive>)> = meeting
            .recording_files
            .iter()
            .map(|file| (file.clone(), false, event.download_token.clone()))
            .chain(
                meeting
                    .participant_audio_files
                    .iter()
                    .map(|file| (file.clone(), true, event.download_token.clone())),
            )
            .collect();
        if event.event == "recording.completed" {
            match account.zoom.meeting_recordings(uuid, false).await {
                Ok(listed) => {
                    let listed: Vec<(RecordingFile, bool)> = listed
                        .recording_files
                        .into_iter()
                        .map(|file| (file, false))
                        .chain(
                            listed
                                .participant_audio_files
                                .into_iter()
                                .map(|file| (file, true)),
                        )
                        .collect();
                    // What the API says now wins over what the event said: a file the event
                    // listed as processing may be complete by the time this runs (or retries).
                    for (file, _, token) in files.iter_mut() {
                        let current = listed
                            .iter()
                            .find(|(l, _)| l.id.is_some() && l.id == file.id);
                        if let Some((current, _)) = current
                            && !file.is_completed()
                            && current.is_completed()
                        {
                            *file = current.clone();
                            *token = None;
                        }
                    }
                    let known: HashSet<String> =
                        files.iter().filter_map(|(f, _, _)| f.id.clone()).collect();
                    for (file, participant) in listed {
                        if file.id.as_ref().is_some_and(|id| !known.contains(id)) {
                            files.push((file, participant, None));
                        }
                    }
                }
                Err(ZoomError::NotFound { .. }) => {}
                Err(error) if error.is_retryable() => return Err(error.into()),
                Err(error) => {
                    tracing::warn!(%error, "could not complete the file list from the API")
                }
            }
        }

        let event_id = context
            .message_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", event.event, event.event_ts.unwrap_or_default()));
        let mut described = meeting.clone();
        described.recording_files.clear();
        described.participant_audio_files.clear();
        described.extra.remove("password");
        described.extra.remove("recording_play_passcode");
        let meta = MeetingMeta {
            event: event.event.clone(),
            event_id: event_id.clone(),
            event_ts: event.event_ts.unwrap_or_default(),
            meeting: described,
        };
        let location = &self.staging.location;
        location
            .put_json(
                &self.staging.path(StagingKey::Meta {
                    account: name,
                    uuid,
                    event_id: &event_id,
                }),
                &meta,
            )
            .await?;

        let mut processing = 0;
        let mut tasks = Vec::new();
        for (file, participant, token) in files {
            if !account.wants_file_type(file.file_type.as_str()) && file.is_completed() {
                continue;
            }
            let (true, Some(file_id)) = (file.is_completed(), file.id.clone()) else {
                processing += 1;
                continue;
            };
            let mut recorded = file.clone();
            recorded.download_url = None;
            let wanted = WantedFile {
                file: recorded,
                participant,
            };
            location
                .put_json(
                    &self.staging.path(StagingKey::Wanted {
                        account: name,
                        uuid,
                        file_id: &file_id,
                    }),
                    &wanted,
                )
                .await?;
            tasks.push(FileTask {
                account: name.to_owned(),
                meeting_uuid: uuid.to_owned(),
                file,
                download_token: token,
            });
        }
        // Everything wanted is recorded before any file can be staged: assemble never sees a
        // partial list for this event.
        for task in &tasks {
            context.send(StageName::Download, &task.key(), task).await?;
        }
        info!(files = tasks.len(), processing, "planned");
        if processing > 0 {
            return Err(StageError::retry(
                "file_processing",
                format!("{processing} files still processing at Zoom"),
            ));
        }
        Ok(())
    }
}

pub struct Download {
    accounts: Accounts,
    staging: Staging,
}

impl Download {
    pub fn new(accounts: Accounts, staging: Staging) -> Self {
        Self { accounts, staging }
    }
}

fn download_error(error: DownloadError) -> StageError {
    match error {
        // Gone now may mean not there yet: retried, then dead-lettered with the reason.
        DownloadError::NotFound => StageError::retry(error.code(), error),
        error if error.is_retryable() => StageError::retry(error.code(), error),
        error => StageError::reject(error.code(), error),
    }
}

impl Stage for Download {
    const NAME: StageName = StageName::Download;
    type Message = FileTask;

    fn subject(task: &FileTask) -> Subject {
        task.subject()
    }

    async fn handle(&self, task: FileTask, context: &Context) -> Result<(), StageError> {
        let account = self.accounts.require(&task.account)?;
        let (name, uuid, file_id) = (
            task.account.as_str(),
            task.meeting_uuid.as_str(),
            task.file_id(),
        );
        let location = &self.staging.location;
        let done = self.staging.path(StagingKey::Done {
            account: name,
            uuid,
            file_id,
        });
        let staged: Option<StagedFile> = location.get_json(&done).await?;
        if staged.is_none() {
            let source =
                FileSource {
                    meeting_uuid: uuid.to_owned(),
                    file_id: file_id.to_owned(),
                    download_url: task.file.download_url.clone().ok_or_else(|| {
                        StageError::retry("file_processing", "no download URL yet")
                    })?,
                    download_token: task.download_token.clone(),
                    expected_size: task.file.file_size,
                };
            let download = account
                .zoom
                .download(source)
                .await
                .map_err(download_error)?;
            let data = self.staging.path(StagingKey::Data {
                account: name,
                uuid,
                file_id,
            });
            let mut writer = location.writer(
                &data,
                download.promised().or(task.file.file_size).unwrap_or(0),
            );
            let written = match download.copy_to(&mut writer).await {
                Ok(written) => written,
                Err(error) => {
                    let _ = writer.abort().await;
                    return Err(download_error(error));
                }
            };
            if let Err(error) = writer.shutdown().await {
                let _ = writer.abort().await;
                return Err(StageError::retry("storage", error));
            }
            let record = StagedFile {
                file_id: file_id.to_owned(),
                size: written.bytes,
                sha256: written.sha256,
                staged_at: chrono::Utc::now(),
            };
            location.put_json(&done, &record).await?;
            info!(bytes = record.size, "file staged");
        }
        let next = MeetingRef {
            account: name.to_owned(),
            meeting_uuid: uuid.to_owned(),
        };
        context
            .send(
                StageName::Assemble,
                &format!("staged:{uuid}:{file_id}"),
                &next,
            )
            .await
    }
}

/// Runs plan and download until `shutdown`.
pub async fn run(
    settings: &Settings,
    broker: Broker,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let accounts = Accounts::new(settings)?;
    let staging = Staging::new(&settings.pipeline)?;
    let plan = consumer::run(
        broker.clone(),
        Arc::new(Plan::new(accounts.clone(), staging.clone())),
        settings.pipeline.plan,
        settings.pipeline.clone(),
        shutdown.clone(),
    );
    let download = consumer::run(
        broker,
        Arc::new(Download::new(accounts, staging)),
        settings.pipeline.download,
        settings.pipeline.clone(),
        shutdown,
    );
    tokio::join!(plan, download);
    Ok(())
}
