//! What stages hand each other: small JSON tasks that reference data, never recording bytes.
//! Each type names the one stage that takes it ([`Task::STAGE`]) and its idempotency key, built
//! from Zoom's identities. The account is not in the body: it travels as the message's binding.

use chrono::{DateTime, Utc};
use relay_core::broker::StageName;
use relay_core::consumer::{Subject, Task};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zoom_api::model::{RecordingFile, Sensitive};

/// zoom.events → plan: a Zoom event as it was received (or as reconciliation describes one).
#[derive(Clone, Serialize, Deserialize)]
pub struct ZoomEvent {
    pub event: String,
    #[serde(default)]
    pub event_ts: Option<i64>,
    #[serde(default)]
    pub payload: Value,
    /// At the top level, not in `payload`. Required on `recording.completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_token: Option<Sensitive>,
}

impl std::fmt::Debug for ZoomEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the payload: it holds download URLs, emails and passcodes.
        f.debug_struct("ZoomEvent")
            .field("event", &self.event)
            .field("event_ts", &self.event_ts)
            .finish_non_exhaustive()
    }
}

impl ZoomEvent {
    pub fn meeting_uuid(&self) -> &str {
        self.payload["object"]["uuid"].as_str().unwrap_or_default()
    }
}

impl Task for ZoomEvent {
    const STAGE: StageName = StageName::Plan;

    fn key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.event,
            self.meeting_uuid(),
            self.event_ts.unwrap_or_default()
        )
    }

    fn subject(&self) -> Subject {
        Subject {
            meeting_uuid: self.meeting_uuid().to_owned(),
            file_id: None,
            event: Some(self.event.clone()),
        }
    }
}

/// plan → download: fetch one file into staging.
#[derive(Clone, Serialize, Deserialize)]
pub struct FileTask {
    pub meeting_uuid: String,
    /// As Zoom described it, `download_url` included (a credential: it travels only through the
    /// broker, which already holds the event it came from).
    pub file: RecordingFile,
    /// The event's `download_token`, for files the event listed (not those the API listed).
    pub download_token: Option<Sensitive>,
}

impl std::fmt::Debug for FileTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTask")
            .field("meeting_uuid", &self.meeting_uuid)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl FileTask {
    pub fn file_id(&self) -> &str {
        self.file.id.as_deref().unwrap_or_default()
    }
}

impl Task for FileTask {
    const STAGE: StageName = StageName::Download;

    fn key(&self) -> String {
        format!("download:{}:{}", self.meeting_uuid, self.file_id())
    }

    fn subject(&self) -> Subject {
        Subject {
            meeting_uuid: self.meeting_uuid.clone(),
            file_id: self.file.id.clone(),
            event: None,
        }
    }
}

/// download → assemble: a file of the meeting is staged; is the meeting complete?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssembleTask {
    pub meeting_uuid: String,
    pub staged_file: String,
}

impl Task for AssembleTask {
    const STAGE: StageName = StageName::Assemble;

    fn key(&self) -> String {
        format!("staged:{}:{}", self.meeting_uuid, self.staged_file)
    }

    fn subject(&self) -> Subject {
        Subject {
            meeting_uuid: self.meeting_uuid.clone(),
            file_id: Some(self.staged_file.clone()),
            event: None,
        }
    }
}

/// assemble → upload: the manifest with this content digest is ready in staging.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadTask {
    pub meeting_uuid: String,
    pub manifest_digest: String,
}

impl Task for UploadTask {
    const STAGE: StageName = StageName::Upload;

    fn key(&self) -> String {
        format!("upload:{}:{}", self.meeting_uuid, self.manifest_digest)
    }

    fn subject(&self) -> Subject {
        Subject {
            meeting_uuid: self.meeting_uuid.clone(),
            ..Subject::default()
        }
    }
}

/// upload → cleanup: every file of the manifest with this digest is verified at the
/// destination (recorded in staging under the digest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleanupTask {
    pub meeting_uuid: String,
    pub manifest_digest: String,
    pub uploaded_at: DateTime<Utc>,
}

impl Task for CleanupTask {
    const STAGE: StageName = StageName::Cleanup;

    fn key(&self) -> String {
        format!("cleanup:{}:{}", self.meeting_uuid, self.manifest_digest)
    }

    fn subject(&self) -> Subject {
        Subject {
            meeting_uuid: self.meeting_uuid.clone(),
            ..Subject::default()
        }
    }
}
