//! What stages hand each other: small JSON messages that reference data, never recording bytes.

use chrono::{DateTime, Utc};
use relay_core::consumer::Subject;
use serde::{Deserialize, Serialize};
use zoom_api::model::{RecordingFile, Sensitive};

/// plan → download: fetch one file into staging.
#[derive(Clone, Serialize, Deserialize)]
pub struct FileTask {
    pub account: String,
    pub meeting_uuid: String,
    /// As Zoom described it, `download_url` included (a credential: it travels only through the
    /// broker, which already holds the event it came from).
    pub file: RecordingFile,
    pub download_token: Option<Sensitive>,
}

impl FileTask {
    pub fn file_id(&self) -> &str {
        self.file.id.as_deref().unwrap_or_default()
    }

    /// Idempotency key: Zoom's identities.
    pub fn key(&self) -> String {
        format!("download:{}:{}", self.meeting_uuid, self.file_id())
    }

    pub fn subject(&self) -> Subject {
        Subject {
            account: self.account.clone(),
            meeting_uuid: self.meeting_uuid.clone(),
            file_id: self.file.id.clone(),
            event: None,
        }
    }
}

/// download → assemble (a file was staged), assemble → upload (a manifest is ready).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeetingRef {
    pub account: String,
    pub meeting_uuid: String,
}

impl MeetingRef {
    pub fn subject(&self) -> Subject {
        Subject {
            account: self.account.clone(),
            meeting_uuid: self.meeting_uuid.clone(),
            ..Subject::default()
        }
    }
}

/// upload → cleanup: every file of the meeting is verified at the destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleanupTask {
    pub account: String,
    pub meeting_uuid: String,
    pub uploaded_at: DateTime<Utc>,
}

impl CleanupTask {
    pub fn subject(&self) -> Subject {
        Subject {
            account: self.account.clone(),
            meeting_uuid: self.meeting_uuid.clone(),
            ..Subject::default()
        }
    }
}
