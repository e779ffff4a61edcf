//! Event names, and the envelope shared by every Zoom event notification.
//!
//! Only what routing and the account check need is read from the envelope; the rest of the body
//! is skipped, not built, and the raw bytes are published, never a re-serialisation, so an event
//! we do not model arrives intact.

use serde::Deserialize;

/// The events zoom-relay acts on or records. The one place their names are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventName {
    EndpointUrlValidation,
    RecordingCompleted,
    RecordingTranscriptCompleted,
    RecordingRenamed,
    RecordingTrashed,
    RecordingDeleted,
    RecordingRecovered,
    RecordingBatchTrashed,
    RecordingBatchDeleted,
    RecordingBatchRecovered,
}

impl EventName {
    pub const ALL: [EventName; 10] = [
        Self::EndpointUrlValidation,
        Self::RecordingCompleted,
        Self::RecordingTranscriptCompleted,
        Self::RecordingRenamed,
        Self::RecordingTrashed,
        Self::RecordingDeleted,
        Self::RecordingRecovered,
        Self::RecordingBatchTrashed,
        Self::RecordingBatchDeleted,
        Self::RecordingBatchRecovered,
    ];

    /// Events that bring files to fetch.
    pub const RECORDINGS: [EventName; 2] =
        [Self::RecordingCompleted, Self::RecordingTranscriptCompleted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EndpointUrlValidation => "endpoint.url_validation",
            Self::RecordingCompleted => "recording.completed",
            Self::RecordingTranscriptCompleted => "recording.transcript_completed",
            Self::RecordingRenamed => "recording.renamed",
            Self::RecordingTrashed => "recording.trashed",
            Self::RecordingDeleted => "recording.deleted",
            Self::RecordingRecovered => "recording.recovered",
            Self::RecordingBatchTrashed => "recording.batch_trashed",
            Self::RecordingBatchDeleted => "recording.batch_deleted",
            Self::RecordingBatchRecovered => "recording.batch_recovered",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == name)
    }
}

impl std::fmt::Display for EventName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outer fields of an event body.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub event: String,
    /// Milliseconds since the epoch, when Zoom produced the event.
    #[serde(default)]
    pub event_ts: Option<i64>,
    #[serde(default)]
    pub payload: PayloadHead,
}

/// The payload fields the ingress reads; every other field is skipped while parsing.
#[derive(Debug, Default, Deserialize)]
pub struct PayloadHead {
    /// Of an `endpoint.url_validation` challenge.
    #[serde(default, rename = "plainToken")]
    pub plain_token: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub object: Option<ObjectHead>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ObjectHead {
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub uuid: Option<String>,
    // Everything else (files, URLs, emails) is skipped while parsing, never held.
}

impl Envelope {
    pub fn plain_token(&self) -> Option<&str> {
        self.payload.plain_token.as_deref()
    }

    /// Every Zoom account id the body names (`payload.account_id`, `payload.object.account_id`).
    /// A delivery may act only for the account whose secret token signed it: each must be that
    /// account's id.
    pub fn account_ids(&self) -> impl Iterator<Item = &str> {
        self.payload.account_id.as_deref().into_iter().chain(
            self.payload
                .object
                .as_ref()
                .and_then(|object| object.account_id.as_deref()),
        )
    }

    pub fn meeting_uuid(&self) -> Option<&str> {
        self.payload.object.as_ref()?.uuid.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for event in EventName::ALL {
            assert_eq!(EventName::parse(event.as_str()), Some(event));
        }
        assert_eq!(EventName::parse("meeting.started"), None);
    }

    #[test]
    fn reads_the_account_ids_and_skips_the_rest() {
        let body = r#"{"event":"recording.completed","event_ts":1,
            "payload":{"account_id":"A","object":{"uuid":"u==","account_id":"B",
            "recording_files":[{"download_url":"https://zoom.us/x"}]}}}"#;
        let envelope: Envelope = serde_json::from_str(body).expect("parses");
        assert_eq!(envelope.account_ids().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(envelope.meeting_uuid(), Some("u=="));
    }
}
