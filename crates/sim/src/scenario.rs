//! Meetings the simulator can be asked to hold, and the events Zoom would send about them.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
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
    /// Deliver the transcript in a later `recording.transcript_completed` rather than in
    /// `recording.completed`.
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
    pub transcript_completed: Option<Value>,
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
            let file = RecordingFile {
                id: Some(uuid::Uuid::new_v4().to_string()),
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
                extra: Default::default(),
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
        self.with(|state| {
            for (mut file, size, faults, _) in files.iter().cloned() {
                let id = file.id.clone().unwrap_or_default();
                let seed = rand::rng().random::<u32>() as u64;
                let listed = (size as i64 + faults.size_off_by).max(0) as u64;
                file.file_size = Some(listed);
                file.download_url = Some(Sensitive::new(format!(
                    "{}/rec/download/{}",
                    self.public_url, id
                )));
                served.insert(
                    id.clone(),
                    ServedFile {
                        file_type: file.file_type.as_str().to_owned(),
                        size,
                        sha256: crate::content::sha256(seed, size),
                    },
                );
                state.files.insert(
                    id.clone(),
                    FileState {
                        meeting_uuid: uuid.clone(),
                        account_id: account.account_id.clone(),
                        size,
                        seed,
                        faults,
                        deleted: false,
                    },
                );
                if participant_audio.contains(&file.id) {
                    participant_files.push(file);
                } else {
                    recording_files.push(file);
                }
            }
        });
        let total_size = files.iter().map(|(_, size, _, _)| size).sum::<u64>();
        let recording = MeetingRecordings {
            uuid: uuid.clone(),
            id: Some(rand::rng().random_range(10_000_000_000..99_999_999_999)),
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
            ]),
        };
        self.with(|state| {
            state.meetings.push(MeetingState {
                account_id: account.account_id.clone(),
                recording: recording.clone(),
                deleted: None,
            })
        });

        let ttl = if spec.expired_download_token {
            -3600
        } else {
            self.download_token_ttl.as_secs() as i64
        };
        let segments_in_event = spec
            .segments
            .max(1)
            .saturating_sub(spec.event_omits_last_segments)
            .max(1);
        let segment_of: HashMap<String, u32> = files
            .iter()
            .filter_map(|(file, _, _, segment)| Some((file.id.clone()?, *segment)))
            .collect();
        let in_event = |file: &RecordingFile, transcript: bool| {
            let id = file.id.clone().unwrap_or_default();
            let is_transcript = file.file_type == FileType::Transcript;
            segment_of
                .get(&id)
                .is_some_and(|segment| *segment < segments_in_event)
                && (is_transcript == transcript || !spec.transcript_later)
        };
        let event = |event: &str, transcript: bool, alternate: bool| {
            let mut object = recording.clone();
            object
                .recording_files
                .retain(|file| in_event(file, transcript));
            if transcript {
                object.participant_audio_files.clear();
            }
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
            json!({
                "event": event,
                "event_ts": Utc::now().timestamp_millis(),
                "payload": { "account_id": account.account_id, "object": object },
                "download_token": self.issue_download_token(&uuid, ttl),
            })
        };
        let transcript_completed = (spec.transcript && spec.transcript_later)
            .then(|| event("recording.transcript_completed", true, false));
        Ok(CreatedMeeting {
            uuid: uuid.clone(),
            account_id: account.account_id.clone(),
            recording_completed: event("recording.completed", false, false),
            recording_completed_duplicate: event("recording.completed", false, true),
            transcript_completed,
            files: served,
        })
    }
}

/// An `endpoint.url_validation` challenge.
pub fn url_validation_event() -> Value {
    json!({
        "event": "endpoint.url_validation",
        "payload": { "plainToken": hex::encode(rand::rng().random::<[u8; 12]>()) },
        "event_ts": Utc::now().timestamp_millis(),
    })
}
