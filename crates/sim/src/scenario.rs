//! Meetings the simulator can be asked to hold, and the events Zoom would send about them.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zoom_api::EventName;
use zoom_api::model::{FileType, MeetingRecordings, RecordingFile, Sensitive};

use crate::state::{FileFaults, FileState, MeetingState, SimState};

/// What to create. Every field has a realistic default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeetingSpec {
    /// Account name or id; the first configured one when absent.
    pub account: Option<String>,
    pub webinar: bool,
    /// Forced UUID; otherwise random, with `/` and `+` as Zoom's often have.
    pub uuid: Option<String>,
    /// The numeric meeting id (several instances of a recurring meeting share one); random
    /// when absent.
    pub meeting_id: Option<u64>,
    pub topic: String,
    pub host_email: String,
    /// When the meeting started (RFC 3339); now minus two hours when absent.
    pub start_time: Option<String>,
    pub segments: u32,
    /// Views (MP4 `recording_type`s) of each segment.
    pub views: Vec<String>,
    /// (segment, view) pairs missing from the recording.
    pub missing_views: Vec<(u32, String)>,
    /// An M4A `audio_only` per segment.
    pub audio: bool,
    pub chat: bool,
    pub transcript: bool,
    /// The transcript comes later, as with Zoom: it is neither in `recording.completed` nor
    /// listed by the API until released (`POST /_sim/meetings/{uuid}/release`), which answers
    /// the `recording.transcript_completed` to send.
    pub transcript_later: bool,
    pub participant_audio: u32,
    /// Bytes of each MP4; M4A files are a quarter, text files a few KiB.
    pub media_size: u64,
    /// The event lists only the first segments, the API all (stop/start recordings).
    pub event_omits_last_segments: u32,
    /// The event's `download_token` is already expired.
    pub expired_download_token: bool,
    /// Faults by `file_type` (`MP4`, `M4A`, `TRANSCRIPT` …), applied to every such file.
    pub faults: HashMap<String, FileFaults>,
}

impl Default for MeetingSpec {
    fn default() -> Self {
        Self {
            account: None,
            webinar: false,
            uuid: None,
            meeting_id: None,
            // Zero-width space, slashes, a colon and a question mark: sanitise before use in paths.
            topic: "Quarterly review\u{200b}: plans/risks? <draft>".into(),
            host_email: "host@example.com".into(),
            start_time: None,
            segments: 2,
            views: vec![
                "shared_screen_with_speaker_view".into(),
                "gallery_view".into(),
            ],
            missing_views: vec![],
            audio: true,
            chat: true,
            transcript: true,
            transcript_later: true,
            participant_audio: 0,
            media_size: 4 * 1024 * 1024,
            event_omits_last_segments: 0,
            expired_download_token: false,
            faults: HashMap::new(),
        }
    }
}

/// The events a created meeting produces, ready to sign and post.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedMeeting {
    pub uuid: String,
    pub account_id: String,
    pub recording_completed: Value,
    /// The same event again, as Zoom sends it a second time: other download URLs and token.
    pub recording_completed_duplicate: Value,
    /// file id → (size, sha256) of what the file server serves.
    pub files: HashMap<String, ServedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServedFile {
    pub file_type: String,
    pub size: u64,
    pub sha256: String,
}

fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

impl SimState {
    /// A JWT-shaped token with an `exp`, remembered as valid for `meeting_uuid` until then.
    pub fn issue_download_token(&self, meeting_uuid: &str, ttl_secs: i64) -> String {
        let exp = unix_now() + ttl_secs;
        let encode = |value: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
        };
        let token = format!(
            "{}.{}.{}",
            encode(json!({"alg": "HS512", "typ": "JWT"})),
            encode(json!({"iss": "zoom-sim", "exp": exp, "jti": uuid::Uuid::new_v4().to_string()})),
            hex::encode(rand::rng().random::<[u8; 16]>()),
        );
        let expires = if ttl_secs > 0 {
            Instant::now() + Duration::from_secs(ttl_secs as u64)
        } else {
            Instant::now()
        };
        self.with(|state| {
            state
                .download_tokens
                .insert(token.clone(), (meeting_uuid.to_owned(), expires))
        });
        token
    }

    /// Creates a meeting with its files and returns the events Zoom would send.
    pub fn create_meeting(&self, spec: &MeetingSpec) -> Result<CreatedMeeting, String> {
        let account = match &spec.account {
            Some(key) => self
                .account_by_name_or_id(key)
                .ok_or_else(|| format!("no simulated account `{key}`"))?,
            None => self.accounts.first().ok_or("no account configured")?,
        };
        let uuid = spec.uuid.clone().unwrap_or_else(random_uuid);
        let start: DateTime<Utc> = spec
            .start_time
            .as_deref()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.with_timezone(&Utc))
            .unwrap_or_else(|| Utc::now() - TimeDelta::hours(2));
        let segment_length = TimeDelta::minutes(20);
        let mut files: Vec<(RecordingFile, u64, FileFaults, u32)> = Vec::new();
        let mut add = |file_type: FileType,
                       extension: &str,
                       recording_type: &str,
                       size: u64,
                       segment: u32,
                       name: Option<String>| {
            let segment_start = start + (segment_length + TimeDelta::minutes(5)) * segment as i32;
            let faults = spec
                .faults
                .get(file_type.as_str())
                .cloned()
                .unwrap_or_default();
            let id = uuid::Uuid::new_v4().to_string();
            let mut extra = serde_json::Map::new();
            // As Zoom lists them: the instance uuid (named `meeting_id`), a play URL for media.
            extra.insert("meeting_id".into(), json!(uuid));
            if matches!(file_type, FileType::Mp4 | FileType::M4a | FileType::Chat) {
                extra.insert(
                    "play_url".into(),
                    json!(format!("{}/rec/play/{id}", self.public_url)),
                );
            }
            let file = RecordingFile {
                id: Some(id),
                recording_start: Some(
                    segment_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ),
                recording_end: Some(
                    (segment_start + segment_length)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ),
                file_type,
                file_extension: Some(extension.to_owned()),
                file_name: name,
                file_size: Some(size),
                download_url: None,
                status: Some("completed".into()),
                recording_type: Some(recording_type.to_owned()),
                extra,
            };
            let id = file.id.clone();
            files.push((file, size, faults, segment));
            id
        };
        for segment in 0..spec.segments.max(1) {
            for view in &spec.views {
                if spec
                    .missing_views
                    .iter()
                    .any(|(s, v)| *s == segment && v == view)
                {
                    continue;
                }
                add(FileType::Mp4, "MP4", view, spec.media_size, segment, None);
            }
            if spec.audio {
                add(
                    FileType::M4a,
                    "M4A",
                    "audio_only",
                    spec.media_size / 4,
                    segment,
                    None,
                );
            }
            if spec.chat {
                add(
                    FileType::Chat,
                    "TXT",
                    "chat_file",
                    3 * 1024 + segment as u64,
                    segment,
                    None,
                );
            }
            if spec.transcript {
                add(
                    FileType::Transcript,
                    "VTT",
                    "audio_transcript",
                    8 * 1024 + segment as u64,
                    segment,
                    None,
                );
            }
        }
        let participant_audio: Vec<Option<String>> = (0..spec.participant_audio)
            .map(|index| {
                add(
                    FileType::M4a,
                    "M4A",
                    "audio_only_each_participant",
                    spec.media_size / 8,
                    0,
                    Some(format!("Participant {index}")),
                )
            })
            .collect();

        let mut served = HashMap::new();
        let mut recording_files = Vec::new();
        let mut participant_files = Vec::new();
        for (mut file, size, faults, _) in files.iter().cloned() {
            let id = file.id.clone().unwrap_or_default();
            let listed = (size as i64 + faults.size_off_by).max(0) as u64;
            file.file_size = Some(listed);
            file.download_url = Some(Sensitive::new(self.download_url(&id)));
            served.insert(
                id.clone(),
                self.serve(
                    &id,
                    &uuid,
                    &account.account_id,
                    size,
                    faults,
                    file.file_type.as_str(),
                ),
            );
            if participant_audio.contains(&file.id) {
                participant_files.push(file);
            } else {
                recording_files.push(file);
            }
        }
        let total_size = files.iter().map(|(_, size, _, _)| size).sum::<u64>();
        let recording = MeetingRecordings {
            uuid: uuid.clone(),
            id: Some(
                spec.meeting_id
                    .unwrap_or_else(|| rand::rng().random_range(10_000_000_000..99_999_999_999)),
            ),
            account_id: Some(account.account_id.clone()),
            host_id: Some(format!("host-{}", spec.host_email)),
            host_email: Some(spec.host_email.clone()),
            topic: spec.topic.clone(),
            meeting_type: Some(if spec.webinar { 5 } else { 2 }),
            start_time: Some(start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            timezone: Some("Europe/Berlin".into()),
            duration: Some(spec.segments.max(1) * 20),
            total_size: Some(total_size),
            recording_count: Some((recording_files.len() + participant_files.len()) as u32),
            auto_delete_date: Some((start + TimeDelta::days(30)).format("%Y-%m-%d").to_string()),
            recording_files,
            participant_audio_files: participant_files,
            download_access_token: None,
            extra: serde_json::Map::from_iter([
                (
                    "share_url".to_owned(),
                    json!(format!(
                        "{}/rec/share/{}",
                        self.public_url,
                        hex::encode(&uuid)
                    )),
                ),
                ("password".to_owned(), json!("sim-passcode")),
                (
                    "recording_play_passcode".to_owned(),
                    json!(hex::encode(uuid.as_bytes())),
                ),
                ("on_prem".to_owned(), json!(false)),
            ]),
        };
        // Files of later segments (stop/start recordings) and a later transcript are not in
        // the first event; a later transcript is not even listed by the API until released.
        let segments_in_event = spec
            .segments
            .max(1)
            .saturating_sub(spec.event_omits_last_segments)
            .max(1);
        let segment_of: HashMap<String, u32> = files
            .iter()
            .filter_map(|(file, _, _, segment)| Some((file.id.clone()?, *segment)))
            .collect();
        let hidden: std::collections::HashSet<String> = recording
            .recording_files
            .iter()
            .filter(|file| spec.transcript_later && file.file_type == FileType::Transcript)
            .filter_map(|file| file.id.clone())
            .collect();
        let omitted: std::collections::HashSet<String> = segment_of
            .iter()
            .filter(|(_, segment)| **segment >= segments_in_event)
            .map(|(id, _)| id.clone())
            .chain(hidden.iter().cloned())
            .collect();
        let ttl = if spec.expired_download_token {
            -3600
        } else {
            self.download_token_ttl.as_secs() as i64
        };
        self.with(|state| {
            state.meetings.push(MeetingState {
                account_id: account.account_id.clone(),
                recording: recording.clone(),
                deleted: None,
                hidden,
                token_ttl_secs: ttl,
            })
        });
        let event = |alternate: bool| {
            let mut object = recording.clone();
            object
                .recording_files
                .retain(|file| file.id.as_ref().is_none_or(|id| !omitted.contains(id)));
            self.event(
                EventName::RecordingCompleted,
                &account.account_id,
                object,
                ttl,
                alternate,
            )
        };
        Ok(CreatedMeeting {
            uuid: uuid.clone(),
            account_id: account.account_id.clone(),
            recording_completed: event(false),
            recording_completed_duplicate: event(true),
            files: served,
        })
    }

    /// The public download URL of a file the simulator serves under `key`.
    pub(crate) fn download_url(&self, key: &str) -> String {
        format!("{}/rec/webhook_download/{key}", self.public_url)
    }

    /// Registers the bytes of a file the simulator serves under `key` (its id, or a made-up key
    /// for a file Zoom lists without one).
    pub(crate) fn serve(
        &self,
        key: &str,
        meeting_uuid: &str,
        account_id: &str,
        size: u64,
        faults: FileFaults,
        file_type: &str,
    ) -> ServedFile {
        let seed = rand::rng().random::<u32>() as u64;
        self.with(|state| {
            state.files.insert(
                key.to_owned(),
                FileState {
                    meeting_uuid: meeting_uuid.to_owned(),
                    account_id: account_id.to_owned(),
                    size,
                    seed,
                    faults,
                    deleted: false,
                    content: None,
                },
            )
        });
        ServedFile {
            file_type: file_type.to_owned(),
            size,
            sha256: crate::content::sha256(seed, size),
        }
    }

    /// An event about a recording, as Zoom sends it. `alternate`: Zoom's second copy, with other
    /// download URLs.
    pub(crate) fn event(
        &self,
        name: EventName,
        account_id: &str,
        mut object: MeetingRecordings,
        token_ttl_secs: i64,
        alternate: bool,
    ) -> Value {
        if alternate {
            for file in object
                .recording_files
                .iter_mut()
                .chain(object.participant_audio_files.iter_mut())
            {
                if let Some(url) = &file.download_url {
                    file.download_url =
                        Some(Sensitive::new(format!("{}?source=replica", url.expose())));
                }
            }
        }
        let token = self.issue_download_token(&object.uuid, token_ttl_secs);
        json!({
            "event": name.as_str(),
            "event_ts": Utc::now().timestamp_millis(),
            "payload": { "account_id": account_id, "object": object },
            "download_token": token,
        })
    }

    /// Zoom finishes the files it held back (a later transcript): the API lists them from now
    /// on, and this returns the `recording.transcript_completed` Zoom sends about them.
    pub fn release(&self, uuid: &str) -> Option<Value> {
        let (account_id, object, ttl) = self.with(|state| {
            let meeting = state
                .meetings
                .iter_mut()
                .find(|meeting| meeting.recording.uuid == uuid)?;
            let released = std::mem::take(&mut meeting.hidden);
            let mut object = meeting.recording.clone();
            object
                .recording_files
                .retain(|file| file.id.as_ref().is_some_and(|id| released.contains(id)));
            object.participant_audio_files.clear();
            Some((meeting.account_id.clone(), object, meeting.token_ttl_secs))
        })?;
        Some(self.event(
            EventName::RecordingTranscriptCompleted,
            &account_id,
            object,
            ttl,
            false,
        ))
    }
}

/// An `endpoint.url_validation` challenge.
pub fn url_validation_event() -> Value {
    json!({
        "event": EventName::EndpointUrlValidation.as_str(),
        "payload": { "plainToken": hex::encode(rand::rng().random::<[u8; 12]>()) },
        "event_ts": Utc::now().timestamp_millis(),
    })
}

/// A real event body (captured from Zoom by another project) to serve as it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureSpec {
    /// Account name or id; the first configured one when absent.
    #[serde(default)]
    pub account: Option<String>,
    /// The body, as Zoom sent it.
    pub event: Value,
    /// Bytes served for a file Zoom listed without a size; larger listed sizes are cut to this.
    #[serde(default = "default_fixture_size")]
    pub max_size: u64,
}

fn default_fixture_size() -> u64 {
    64 * 1024
}

/// A fixture as the simulator now serves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportedFixture {
    /// The body to send: every field as captured, but for the account ids (now the simulated
    /// account's), the download URLs (now the simulator's) and sizes cut to `max_size`.
    pub event: Value,
    /// What each file's download URL serves, by the URL's last path segment.
    pub files: HashMap<String, ServedFile>,
}

impl SimState {
    /// Serves the meeting a real event describes, in the event's own shape: files without an
    /// `id`, `status` or `file_size` stay so in the API's answers too.
    pub fn import_fixture(&self, spec: &FixtureSpec) -> Result<ImportedFixture, String> {
        let account = match &spec.account {
            Some(key) => self
                .account_by_name_or_id(key)
                .ok_or_else(|| format!("no simulated account `{key}`"))?,
            None => self.accounts.first().ok_or("no account configured")?,
        };
        let mut event = spec.event.clone();
        let payload = event
            .get_mut("payload")
            .and_then(Value::as_object_mut)
            .ok_or("the fixture has no payload")?;
        payload.insert("account_id".into(), json!(account.account_id));
        let object = payload
            .get_mut("object")
            .and_then(Value::as_object_mut)
            .ok_or("the fixture has no payload.object")?;
        if object.contains_key("account_id") {
            object.insert("account_id".into(), json!(account.account_id));
        }
        let uuid = object
            .get("uuid")
            .and_then(Value::as_str)
            .ok_or("the fixture's object has no uuid")?
            .to_owned();
        let mut files = HashMap::new();
        for list in ["recording_files", "participant_audio_files"] {
            let Some(entries) = object.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for entry in entries {
                let Some(file) = entry.as_object_mut() else {
                    continue;
                };
                if !file.contains_key("download_url") {
                    continue;
                }
                let key = file
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
                let size = match file.get("file_size").and_then(Value::as_u64) {
                    Some(size) => {
                        let served = size.min(spec.max_size);
                        file.insert("file_size".into(), json!(served));
                        served
                    }
                    None => spec.max_size,
                };
                file.insert("download_url".into(), json!(self.download_url(&key)));
                let file_type = file
                    .get("file_type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                files.insert(
                    key.clone(),
                    self.serve(
                        &key,
                        &uuid,
                        &account.account_id,
                        size,
                        FileFaults::default(),
                        &file_type,
                    ),
                );
            }
        }
        let recording: MeetingRecordings =
            serde_json::from_value(Value::Object(object.clone())).map_err(|e| e.to_string())?;
        self.with(|state| {
            state.meetings.push(MeetingState {
                account_id: account.account_id.clone(),
                recording,
                deleted: None,
                hidden: Default::default(),
                token_ttl_secs: self.download_token_ttl.as_secs() as i64,
            })
        });
        Ok(ImportedFixture { event, files })
    }
}
