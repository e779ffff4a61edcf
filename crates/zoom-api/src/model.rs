//! Zoom's recording objects, typed where zoom-relay needs them and kept whole otherwise.
//!
//! Unknown fields land in `extra` and survive a round trip; unknown `file_type`s are data
//! ([`FileType::Other`]), never errors. Values that are credentials in themselves (download URLs,
//! tokens) are [`Sensitive`]: serialisable, so they can travel in a broker message, but never
//! printed by `Debug`. The models' own `Debug` shows identities only.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A credential-bearing string: a download URL, a `download_token`, an access token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive(String);

impl Sensitive {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it (an HTTP request).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Zoom's `file_type`. Empty while a file is still processing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum FileType {
    Mp4,
    M4a,
    Chat,
    Transcript,
    Cc,
    Csv,
    Tb,
    ChatMessage,
    Timeline,
    Summary,
    /// Empty: the file is still processing.
    #[default]
    Pending,
    Other(String),
}

impl FileType {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Mp4 => "MP4",
            Self::M4a => "M4A",
            Self::Chat => "CHAT",
            Self::Transcript => "TRANSCRIPT",
            Self::Cc => "CC",
            Self::Csv => "CSV",
            Self::Tb => "TB",
            Self::ChatMessage => "CHAT_MESSAGE",
            Self::Timeline => "TIMELINE",
            Self::Summary => "SUMMARY",
            Self::Pending => "",
            Self::Other(other) => other,
        }
    }
}

impl From<String> for FileType {
    fn from(value: String) -> Self {
        match value.to_ascii_uppercase().as_str() {
            "MP4" => Self::Mp4,
            "M4A" => Self::M4a,
            "CHAT" => Self::Chat,
            "TRANSCRIPT" => Self::Transcript,
            "CC" => Self::Cc,
            "CSV" => Self::Csv,
            "TB" => Self::Tb,
            "CHAT_MESSAGE" => Self::ChatMessage,
            "TIMELINE" => Self::Timeline,
            "SUMMARY" => Self::Summary,
            "" => Self::Pending,
            _ => Self::Other(value),
        }
    }
}

impl From<FileType> for String {
    fn from(value: FileType) -> Self {
        value.as_str().to_owned()
    }
}

/// One recording file (a view of a segment, a transcript, a chat, a participant's audio …).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct RecordingFile {
    /// Missing while the file is still processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_end: Option<String>,
    #[serde(default)]
    pub file_type: FileType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_extension: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_url: Option<Sensitive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The view: `shared_screen_with_speaker_view`, `gallery_view`, `audio_only` …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_type: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RecordingFile {
    pub fn is_completed(&self) -> bool {
        self.id.is_some()
            && self.file_type != FileType::Pending
            && self
                .status
                .as_deref()
                .is_none_or(|status| status == "completed")
    }
}

impl fmt::Debug for RecordingFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingFile")
            .field("id", &self.id)
            .field("file_type", &self.file_type)
            .field("recording_type", &self.recording_type)
            .field("file_size", &self.file_size)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A meeting's (or webinar's) recordings: `payload.object` of `recording.completed`, and the answer
/// of `GET /meetings/{id}/recordings`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct MeetingRecordings {
    pub uuid: String,
    #[serde(default, deserialize_with = "number_or_string")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_email: Option<String>,
    #[serde(default)]
    pub topic: String,
    /// 1, 2, 3, 4, 8: meetings; 5, 6, 9: webinars.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub meeting_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_delete_date: Option<String>,
    #[serde(default)]
    pub recording_files: Vec<RecordingFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participant_audio_files: Vec<RecordingFile>,
    /// Only with `include_fields=download_access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_access_token: Option<Sensitive>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MeetingRecordings {
    /// Gives every file that can be fetched (it has a download URL) but carries no `id` a stable
    /// derived one: older shapes (2019–2020) list a TIMELINE that way, without `id`, `status` or
    /// `file_size`. The id is built from what the event and the API agree on (never from the
    /// download URL, which differs between Zoom's duplicate deliveries), so both name the file
    /// alike. Call it on every recording read from an event or the API.
    pub fn normalize(&mut self) {
        let uuid = self.uuid.clone();
        for file in self
            .recording_files
            .iter_mut()
            .chain(self.participant_audio_files.iter_mut())
        {
            if file.id.is_none() && file.download_url.is_some() {
                file.id = Some(derived_file_id(&uuid, file));
            }
        }
    }

    pub fn is_webinar(&self) -> bool {
        matches!(self.meeting_type, Some(5 | 6 | 9))
    }

    /// Every file: the segments' views first, then the participants' audio.
    pub fn all_files(&self) -> impl Iterator<Item = &RecordingFile> {
        self.recording_files
            .iter()
            .chain(self.participant_audio_files.iter())
    }

    pub fn file(&self, file_id: &str) -> Option<&RecordingFile> {
        self.all_files()
            .find(|file| file.id.as_deref() == Some(file_id))
    }
}

impl fmt::Debug for MeetingRecordings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeetingRecordings")
            .field("uuid", &self.uuid)
            .field("id", &self.id)
            .field("type", &self.meeting_type)
            .field("recording_files", &self.recording_files)
            .field("participant_audio_files", &self.participant_audio_files)
            .finish_non_exhaustive()
    }
}

/// `recording.completed` / `recording.transcript_completed`, whole.
#[derive(Clone, Serialize, Deserialize)]
pub struct RecordingEvent {
    pub event: String,
    #[serde(default)]
    pub event_ts: Option<i64>,
    pub payload: RecordingPayload,
    /// At the top level, not in `payload`. Required on `recording.completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_token: Option<Sensitive>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordingPayload {
    #[serde(default)]
    pub account_id: Option<String>,
    pub object: MeetingRecordings,
}

impl fmt::Debug for RecordingEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingEvent")
            .field("event", &self.event)
            .field("event_ts", &self.event_ts)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

/// One page of a listing: `meetings` (recordings), `users` or `participants`, and the token to
/// the next.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    #[serde(default, alias = "meetings", alias = "users", alias = "participants")]
    pub items: Vec<T>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Prefix of ids zoom-relay made up for files Zoom gave none: such a file cannot be deleted at
/// Zoom by id.
pub const DERIVED_ID_PREFIX: &str = "derived-";

fn derived_file_id(meeting_uuid: &str, file: &RecordingFile) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in [
        meeting_uuid,
        file.file_type.as_str(),
        file.recording_type.as_deref().unwrap_or_default(),
        file.recording_start.as_deref().unwrap_or_default(),
        file.recording_end.as_deref().unwrap_or_default(),
        file.file_name.as_deref().unwrap_or_default(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    format!(
        "{DERIVED_ID_PREFIX}{}",
        &hex::encode(hasher.finalize())[..20]
    )
}

impl RecordingFile {
    /// Whether Zoom gave this file its id (see [`MeetingRecordings::normalize`]).
    pub fn has_zoom_id(&self) -> bool {
        self.id
            .as_deref()
            .is_some_and(|id| !id.starts_with(DERIVED_ID_PREFIX))
    }
}

/// Zoom's meeting `id` is a number, but some payloads carry it as a string.
fn number_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{
      "event": "recording.completed",
      "event_ts": 1626230691572,
      "payload": {
        "account_id": "AAAAAABBBB",
        "object": {
          "id": 1234567890, "uuid": "4444AAAiAAAAAiAiAiiAii==", "host_email": "jchill@example.com",
          "topic": "My Personal Recording", "type": 4, "start_time": "2021-07-13T21:44:51Z",
          "password": "hunter2", "brand_new_field": {"x": 1},
          "recording_files": [
            { "id": "ed6c2f27", "recording_start": "2021-03-23T22:14:57Z", "file_type": "MP4",
              "file_size": 246560, "download_url": "https://zoom.us/rec/download/secret-path",
              "status": "completed", "recording_type": "shared_screen_with_speaker_view" },
            { "id": "f00", "file_type": "HOLOGRAM", "status": "completed" },
            { "file_type": "", "status": "processing" }
          ],
          "participant_audio_files": [ { "id": "pa1", "file_type": "M4A", "file_name": "Alice" } ]
        }
      },
      "download_token": "abJhbGciOiJIUzUxMiJ9.secret-token"
    }"#;

    #[test]
    fn parses_recording_completed_and_keeps_unknown_fields_and_types() {
        let event: RecordingEvent = serde_json::from_str(EVENT).expect("parses");
        let object = &event.payload.object;
        assert_eq!(object.id, Some(1234567890));
        assert_eq!(
            object.recording_files[1].file_type,
            FileType::Other("HOLOGRAM".into())
        );
        assert_eq!(object.recording_files[2].file_type, FileType::Pending);
        assert!(!object.recording_files[2].is_completed());
        assert_eq!(object.all_files().count(), 4);
        let round_trip = serde_json::to_value(&event).expect("serialises");
        assert_eq!(round_trip["payload"]["object"]["brand_new_field"]["x"], 1);
        assert_eq!(
            round_trip["payload"]["object"]["recording_files"][1]["file_type"],
            "HOLOGRAM"
        );
    }

    #[test]
    fn a_file_without_an_id_gets_the_same_derived_id_from_the_event_and_the_api() {
        let listing = |url: &str| {
            let mut meeting: MeetingRecordings = serde_json::from_value(serde_json::json!({
                "uuid": "dj12vck6sdTn6yy7qdy3dQg==",
                "recording_files": [
                    { "recording_start": "2019-07-23T22:14:57Z", "recording_end": "2019-07-23T22:15:41Z",
                      "file_type": "TIMELINE", "download_url": url },
                    { "file_type": "", "status": "processing" }
                ]
            }))
            .expect("parses");
            meeting.normalize();
            meeting
        };
        let event = listing("https://zoom.us/recording/download/one");
        let api = listing("https://zoom.us/recording/download/other");
        let id = event.recording_files[0].id.clone().expect("derived id");
        assert_eq!(api.recording_files[0].id.as_deref(), Some(id.as_str()));
        assert!(
            event.recording_files[0].is_completed(),
            "no status: fetch it"
        );
        assert!(!event.recording_files[0].has_zoom_id());
        assert_eq!(
            event.recording_files[1].id, None,
            "processing: nothing to fetch yet"
        );
    }

    #[test]
    fn debug_never_shows_urls_tokens_or_passwords() {
        let event: RecordingEvent = serde_json::from_str(EVENT).expect("parses");
        let printed = format!("{event:?}");
        for secret in ["secret-path", "secret-token", "hunter2"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }
}
