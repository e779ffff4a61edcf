//! The plan stage: Zoom events in, one download task per wanted file out.
//!
//! An event only says which meeting to look at, and only for the account whose secret token
//! signed it (the message's binding): an event that names another account is refused. When
//! Zoom's recordings API answers for the meeting, its file list, download URLs and sizes win
//! over the event's; the event's own list (and its `download_token`) is used only when the API
//! does not know the meeting (yet). The account's filters apply; each wanted file is recorded in
//! staging and handed to download, so no delivery holds a transfer longer than one file's.
//! A file still processing at Zoom makes the event wait — without spending attempts — until it
//! completes or `pipeline.processing_deadline` passes.
//!
//! Events without files (renamed, trashed, recovered, deleted) are recorded in the meeting's
//! status and never fetch anything.

use std::time::Duration;

use relay_core::consumer::{Context, Stage};
use relay_core::entry::MAX_MEETING_UUID;
use relay_core::failure::{Code, StageError};
use relay_core::status::{State, Transition};
use relay_pipeline::manifest::{MeetingMeta, WantedFile};
use relay_pipeline::messages::{AssembleTask, FileTask, ZoomEvent};
use relay_pipeline::staging::StagingKey;
use relay_pipeline::{Account, Shared};
use serde_json::json;
use tracing::{info, warn};
use zoom_api::model::{MeetingRecordings, RecordingFile, Sensitive};
use zoom_api::{EventName, ZoomError};

/// How soon a meeting with files still processing at Zoom is looked at again.
const PROCESSING_RECHECK: Duration = Duration::from_secs(300);

pub struct Plan {
    shared: Shared,
}

/// A file to fetch: as listed, whether it is participant audio, and the token that opens it.
struct Candidate {
    file: RecordingFile,
    participant: bool,
    token: Option<Sensitive>,
}

impl Plan {
    pub fn new(shared: &Shared) -> Self {
        Self {
            shared: shared.clone(),
        }
    }

    /// The event may act only for the account that signed it: every account id it names must
    /// be the bound one.
    fn check_account(event: &ZoomEvent, account_id: &str) -> Result<(), StageError> {
        let named = [
            &event.payload["account_id"],
            &event.payload["object"]["account_id"],
        ];
        for value in named {
            if let Some(named) = value.as_str()
                && named != account_id
            {
                return Err(StageError::new(
                    Code::AccountMismatch,
                    format!(
                        "the event names Zoom account `{named}`, but it was verified for `{account_id}`"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The files to consider: the API's when it knows the meeting, else the event's; and how
    /// many files the event names that the API does not list yet (Zoom lists late: they are
    /// waited for, like files still processing).
    async fn candidates(
        account: &Account,
        event: &ZoomEvent,
        meeting: &MeetingRecordings,
    ) -> Result<(MeetingRecordings, Vec<Candidate>, usize), StageError> {
        let listed = match account.zoom.meeting_recordings(&meeting.uuid, false).await {
            Ok(listed) => Some(listed),
            // Zoom lists late, and older meetings may be gone from the API: the event's list.
            Err(ZoomError::NotFound { .. }) => None,
            Err(error) => {
                let failure = StageError::from(error);
                if failure.code().is_retryable() {
                    return Err(failure);
                }
                warn!(error = %failure, "the recordings API refused; using the event's file list");
                None
            }
        };
        let unlisted = listed.as_ref().map_or(0, |listed| {
            meeting
                .all_files()
                .filter_map(|file| file.id.as_deref())
                .filter(|id| listed.file(id).is_none())
                .count()
        });
        let (described, token) = match listed {
            Some(listed) => (listed, None),
            None => (meeting.clone(), event.download_token.clone()),
        };
        let candidates = described
            .recording_files
            .iter()
            .map(|file| (file, false))
            .chain(
                described
                    .participant_audio_files
                    .iter()
                    .map(|file| (file, true)),
            )
            .map(|(file, participant)| Candidate {
                file: file.clone(),
                participant,
                token: token.clone(),
            })
            .collect();
        Ok((described, candidates, unlisted))
    }

    async fn plan_files(
        &self,
        account: &Account,
        event: &ZoomEvent,
        context: &Context,
    ) -> Result<(), StageError> {
        let mut meeting: MeetingRecordings =
            serde_json::from_value(event.payload["object"].clone())
                .map_err(|error| StageError::from_error(Code::Undecodable, &error))?;
        meeting.normalize();
        let binding = context.binding();
        if let Some(reason) = account.skip_reason(&meeting) {
            info!(reason, "recording skipped");
            return context
                .record(
                    Transition::new(binding, &meeting.uuid, State::Skipped, "plan")
                        .detail(json!({ "reason": reason, "topic": meeting.topic, "host_email": meeting.host_email })),
                )
                .await;
        }
        let (described, candidates, unlisted) = Self::candidates(account, event, &meeting).await?;
        let uuid = meeting.uuid.as_str();
        let staging = self.shared.staging.meeting(account.name(), uuid);
        let location = staging.location();

        let event_id = context
            .message_id()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}-{}", event.event, event.event_ts.unwrap_or_default()));
        let meta = MeetingMeta {
            event: event.event.clone(),
            event_id: event_id.clone(),
            event_ts: event.event_ts.unwrap_or_default(),
            meeting: without_credentials(described.clone()),
        };
        location
            .put_json(
                &staging.path(StagingKey::Meta {
                    event_id: &event_id,
                })?,
                &meta,
            )
            .await?;

        // Not handed to download again: files already staged, and — when this is a recheck of a
        // waiting event — those whose task was confirmed sent the first time.
        let staged = staging.snapshot().await?;
        let already = |file_id: &str| {
            !binding.force
                && (staged.is_done(file_id)
                    || (context.is_recheck() && staged.is_dispatched(file_id)))
        };
        let mut processing = unlisted;
        let mut tasks = Vec::new();
        for candidate in candidates {
            let file = &candidate.file;
            if file.is_completed() && !account.wants_file_type(file.file_type.as_str()) {
                continue;
            }
            let (true, Some(file_id)) = (file.is_completed(), file.id.clone()) else {
                processing += 1;
                continue;
            };
            if already(&file_id) {
                continue;
            }
            let mut recorded = file.clone();
            recorded.download_url = None;
            let wanted = WantedFile {
                file: recorded,
                participant: candidate.participant,
            };
            location
                .put_json(
                    &staging.path(StagingKey::Wanted { file_id: &file_id })?,
                    &wanted,
                )
                .await?;
            tasks.push(FileTask {
                meeting_uuid: uuid.to_owned(),
                file: candidate.file,
                download_token: candidate.token,
            });
        }
        // Every wanted file is recorded before any task leaves: download's completeness check
        // never sees a partial list for this event. A task is marked dispatched only once the
        // broker confirmed it, so a recheck never skips one that was not sent.
        // When the files were known, before download starts on them: status orders a meeting's
        // history by time, and `planned` is recorded only once every task is confirmed sent.
        let planned_at = chrono::Utc::now();
        for task in &tasks {
            context.send(task).await?;
            location
                .put_json(
                    &staging.path(StagingKey::Dispatched {
                        file_id: task.file_id(),
                    })?,
                    &serde_json::json!({ "at": chrono::Utc::now() }),
                )
                .await?;
        }
        if tasks.is_empty() && processing == 0 {
            // Nothing new to fetch (a repeated event, a reconciliation): let assemble look, so
            // a meeting whose earlier upload failed is completed now.
            if staging.snapshot().await?.complete() {
                context
                    .send(&AssembleTask {
                        meeting_uuid: uuid.to_owned(),
                        staged_file: String::new(),
                    })
                    .await?;
            }
        }
        let bytes: u64 = tasks.iter().filter_map(|task| task.file.file_size).sum();
        info!(files = tasks.len(), processing, "planned");
        context
            .record(
                Transition {
                    at: planned_at,
                    ..Transition::new(binding, uuid, State::Planned, "plan")
                }
                .detail(json!({
                    "event": event.event,
                    "topic": described.topic,
                    "host_email": described.host_email,
                    "start_time": described.start_time,
                    "kind": if described.is_webinar() { "webinar" } else { "meeting" },
                    "auto_delete_date": described.auto_delete_date,
                    "files": tasks.len(),
                    "bytes": bytes,
                    "processing": processing,
                    // Which files the meeting waits for: status shows each one's state.
                    "wanted": tasks
                        .iter()
                        .map(|task| json!({
                            "file_id": task.file_id(),
                            "file_type": task.file.file_type.as_str(),
                        }))
                        .collect::<Vec<_>>(),
                })),
            )
            .await?;
        if processing > 0 {
            return Err(StageError::Wait {
                code: Code::FileProcessing,
                reason: format!("{processing} files still processing at Zoom"),
                retry_in: PROCESSING_RECHECK,
                give_up_after: Some(self.shared.settings.processing_deadline),
            });
        }
        Ok(())
    }
}

/// A meeting's description as staging keeps it: no file list, download token or passcode.
fn without_credentials(mut meeting: MeetingRecordings) -> MeetingRecordings {
    meeting.recording_files.clear();
    meeting.participant_audio_files.clear();
    meeting.download_access_token = None;
    meeting.extra.remove("password");
    meeting.extra.remove("recording_play_passcode");
    meeting
}

impl Plan {
    /// A change at Zoom to recordings already described (renamed, trashed, recovered, deleted;
    /// one meeting or a batch): recorded in each meeting's status and, for a meeting the relay
    /// holds, in its manifest — assembled and uploaded again, nothing downloaded. Its files stay
    /// where they are at the destination.
    async fn record_update(
        &self,
        account: &Account,
        event_name: EventName,
        event: &ZoomEvent,
        context: &Context,
    ) -> Result<(), StageError> {
        let binding = context.binding();
        let object = &event.payload["object"];
        let mut uuids: Vec<String> = match object["meeting_uuids"].as_array() {
            Some(batch) => batch
                .iter()
                .filter_map(|uuid| uuid.as_str().map(str::to_owned))
                .collect(),
            None => vec![event.meeting_uuid().to_owned()],
        };
        // A batch's uuids were not checked where the event entered (only `object.uuid` is):
        // none longer than a uuid Zoom makes, each once.
        let named = uuids.len();
        uuids.retain(|uuid| !uuid.is_empty() && uuid.len() <= MAX_MEETING_UUID);
        uuids.sort();
        uuids.dedup();
        if uuids.len() < named {
            warn!(
                named,
                kept = uuids.len(),
                "meeting uuids of the batch left out: empty, repeated or too long"
            );
        }
        let event_id = context
            .message_id()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}-{}", event.event, event.event_ts.unwrap_or_default()));
        for uuid in &uuids {
            let staging = self.shared.staging.meeting(account.name(), uuid);
            let held = staging.snapshot().await?.wanted() > 0;
            info!(
                event = event_name.as_str(),
                meeting_uuid = uuid,
                held,
                "recorded; nothing to fetch"
            );
            if held {
                let mut meeting: MeetingRecordings = if object["meeting_uuids"].is_array() {
                    MeetingRecordings::default()
                } else {
                    serde_json::from_value(object.clone()).unwrap_or_default()
                };
                meeting.uuid = uuid.clone();
                let meta = MeetingMeta {
                    event: event.event.clone(),
                    event_id: event_id.clone(),
                    event_ts: event.event_ts.unwrap_or_default(),
                    meeting: without_credentials(meeting),
                };
                staging
                    .location()
                    .put_json(
                        &staging.path(StagingKey::Meta {
                            event_id: &event_id,
                        })?,
                        &meta,
                    )
                    .await?;
            }
            let mut detail = json!({ "event": event_name.as_str() });
            if event_name == EventName::RecordingRenamed {
                detail["topic"] = object["topic"].clone();
            }
            context
                .record(Transition::new(binding, uuid, State::Updated, "plan").detail(detail))
                .await?;
            if held {
                context
                    .send(&AssembleTask {
                        meeting_uuid: uuid.clone(),
                        // Short: the task's message id holds it and the uuid.
                        staged_file: format!(
                            "update:{}:{}",
                            event_name.as_str(),
                            event.event_ts.unwrap_or_default()
                        ),
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

impl Stage for Plan {
    type Input = ZoomEvent;

    async fn handle(&self, event: ZoomEvent, context: &Context) -> Result<(), StageError> {
        let binding = context.binding();
        let account = self.shared.accounts.resolve(binding)?;
        Self::check_account(&event, &binding.account_id)?;
        match EventName::parse(&event.event) {
            Some(EventName::RecordingCompleted | EventName::RecordingTranscriptCompleted) => {
                self.plan_files(account, &event, context).await
            }
            Some(EventName::EndpointUrlValidation) => Ok(()),
            Some(other) => self.record_update(account, other, &event, context).await,
            None => {
                info!(event = event.event, "not an event zoom-relay acts on");
                Ok(())
            }
        }
    }
}
