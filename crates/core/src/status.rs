//! What happened to a meeting, one transition at a time: stages publish each to the status stream
//! (confirmed, before they ack their input), and `zoom-relay status` folds the stream into every
//! meeting's state. The state machine and its guards live with the fold; this is the message.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::binding::Binding;

/// A meeting's (or one file's) state. Order matters: a meeting never moves back to an earlier
/// state because of a late or repeated event (see the fold in `relay-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// An event about the meeting entered the relay.
    Received,
    /// Its wanted files are known and handed to download.
    Planned,
    /// A file is complete in staging.
    Staged,
    /// Every file is staged and the manifest is written.
    Assembled,
    /// Every file and the manifest are verified at the destination.
    Uploaded,
    /// The cloud recording was deleted at Zoom (or found gone).
    Deleted,
    /// Not archived, on purpose (a filter, the account switched off).
    Skipped,
    /// A stage gave up on it (dead-lettered).
    Failed,
    /// Zoom reported a change (renamed, trashed, recovered, deleted): recorded, nothing fetched.
    Updated,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Planned => "planned",
            Self::Staged => "staged",
            Self::Assembled => "assembled",
            Self::Uploaded => "uploaded",
            Self::Deleted => "deleted",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::Updated => "updated",
        }
    }
}

/// One transition, as published to the status stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub account: String,
    pub account_id: String,
    pub meeting_uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    pub state: State,
    /// The stage (or component) that made it.
    pub stage: String,
    /// `host:pid` of the process.
    pub process: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_job: Option<String>,
    /// For `failed`: the stable code, the reason, the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// What else the stage knows: topic, host, files, paths, event name…
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

impl Transition {
    pub fn new(binding: &Binding, meeting_uuid: &str, state: State, stage: &str) -> Self {
        Self {
            at: Utc::now(),
            account: binding.account.clone(),
            account_id: binding.account_id.clone(),
            meeting_uuid: meeting_uuid.to_owned(),
            file_id: None,
            state,
            stage: stage.to_owned(),
            process: process_name(),
            origin: Some(binding.origin.as_str().to_owned()),
            replay_job: binding.replay_job.clone(),
            code: None,
            reason: None,
            attempt: None,
            detail: serde_json::Value::Null,
        }
    }

    pub fn file(mut self, file_id: impl Into<String>) -> Self {
        self.file_id = Some(file_id.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// `host:pid`, to tell replicas apart in a meeting's history.
pub fn process_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}:{}", std::process::id())
    })
    .clone()
}
