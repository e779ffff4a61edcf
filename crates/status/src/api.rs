//! The JSON the API serves and the CLI reads: stable field names (docs/status.md documents each).
//! Fields are only ever added; a client ignores those it does not know.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /api/meetings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeetingsPage {
    /// False while the status stream is still being read from its start.
    pub caught_up: bool,
    /// Meetings matching the filters (before `limit`).
    pub total: usize,
    /// The most recently updated first.
    pub meetings: Vec<MeetingSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeetingSummary {
    pub account: String,
    pub meeting_uuid: String,
    pub topic: Option<String>,
    pub host_email: Option<String>,
    /// `meeting` or `webinar`.
    pub kind: Option<String>,
    pub start_time: Option<String>,
    /// `received` `planned` `staged` `assembled` `uploaded` `deleted` `skipped` `failed`
    /// `updated` (docs/status.md, the state machine).
    pub state: String,
    /// The furthest step reached (`received` … `deleted`): for a `failed` meeting, how far it
    /// got nevertheless.
    pub reached: Option<String>,
    pub skipped_reason: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub file_counts: FileCounts,
    /// The stage it waits at (`plan` … `cleanup`), if it waits.
    pub pending_at: Option<String>,
    /// Zoom's `auto_delete_date`.
    pub auto_delete_date: Option<String>,
    /// Unresolved failures.
    pub failure_count: usize,
    /// The first unresolved failure.
    pub failure: Option<FailureView>,
    /// One sentence in plain words.
    pub summary: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCounts {
    /// Files known (wanted by plan, or seen staged or failed).
    pub wanted: usize,
    pub staged: usize,
    pub failed: usize,
    pub pending: usize,
}

/// `GET /api/meetings/{uuid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeetingDetail {
    #[serde(flatten)]
    pub meeting: MeetingSummary,
    pub account_id: String,
    /// Every unresolved failure, the stages' first.
    pub failures: Vec<FailureView>,
    pub files: Vec<FileView>,
    /// Zoom's updates recorded (`recording.renamed`, `recording.trashed`, …).
    pub updates: Vec<String>,
    pub landed: Option<LandedView>,
    pub deletion: Option<DeletionView>,
    /// Every transition, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Lines left out of a very long history.
    pub history_omitted: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureView {
    pub stage: String,
    /// A stable failure code (docs/failures.md).
    pub code: String,
    /// What the code means, in plain words.
    pub meaning: String,
    /// The error with its chain of causes.
    pub reason: String,
    pub attempt: u32,
    /// Whether the code is retried before it is dead-lettered.
    pub retryable: bool,
    pub at: DateTime<Utc>,
    pub file_id: Option<String>,
    pub file_type: Option<String>,
    pub process: Option<String>,
    /// What to do about it.
    pub advice: String,
    /// The command that sends the dead letter back through its stage.
    pub replay: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileView {
    pub file_id: String,
    pub file_type: Option<String>,
    /// `pending`, `staged` or `failed`.
    pub state: String,
    pub size: Option<u64>,
    pub at: DateTime<Utc>,
    pub failure: Option<FailureView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub state: String,
    /// The stage or component that recorded it (`ingress` for an accepted event).
    pub stage: String,
    /// `host:pid`.
    pub process: Option<String>,
    pub file_id: Option<String>,
    /// `webhook`, `reconcile`, `replay`, …
    pub origin: Option<String>,
    pub replay_job: Option<String>,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub attempt: Option<u32>,
    /// The event, the skip reason, what was deleted.
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandedView {
    /// The account's destination, credentials removed.
    pub destination: Option<String>,
    /// The manifest's key there.
    pub manifest: Option<String>,
    pub files: u64,
    /// Files given up on, listed as `missing` in the manifest.
    pub missing: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletionView {
    /// `trash` or `delete`.
    pub action: Option<String>,
    pub deleted: Vec<String>,
    /// Files kept at Zoom, with why.
    pub kept: Vec<String>,
    /// Zoom no longer listed the recording.
    pub gone: bool,
}

/// `GET /api/accounts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountsPage {
    pub accounts: Vec<AccountView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountView {
    pub account: String,
    pub account_id: Option<String>,
    /// Whether this status process's configuration lists it.
    pub configured: bool,
    pub authorization: AuthorizationView,
    /// The last event a webhook delivered (`origin = webhook`).
    pub last_webhook_at: Option<DateTime<Utc>>,
    /// The last event of any origin.
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_archived: Option<ArchivedView>,
    pub reconcile: Option<ReconcileView>,
    /// The account's WebSocket subscription, when a process serves one.
    pub websocket: Option<SocketView>,
    pub rate_limits: RateLimitView,
    /// Meetings by state.
    pub meetings: BTreeMap<String, usize>,
    pub pending: usize,
    pub failed: usize,
    /// Recordings Zoom deletes soon (`status.auto_delete_window`) and not archived.
    pub auto_delete_at_risk: Vec<AtRiskView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationView {
    /// `ok` (the latest token request succeeded), `failing` (the latest failed), `unknown`
    /// (no process reported yet).
    pub state: String,
    pub last_token_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub error_at: Option<DateTime<Utc>>,
    /// Scopes the enabled features need and the app lacks.
    pub missing_scopes: Vec<String>,
    /// The newest report.
    pub reported_at: Option<DateTime<Utc>>,
    /// Processes whose reports are recent.
    pub processes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedView {
    pub at: DateTime<Utc>,
    pub meeting_uuid: String,
    pub topic: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileView {
    /// When the last pass ended.
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub error: Option<String>,
    pub watermark: Option<DateTime<Utc>>,
    /// Now minus the watermark.
    pub lag_seconds: Option<i64>,
    pub listed: u64,
    pub missing: u64,
    /// The last complete pass, when the last one failed.
    pub last_success_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketView {
    /// `connected`, `connecting`, `standby`, or `unknown` (no recent report: the process
    /// stopped).
    pub state: String,
    pub subscription_id: String,
    /// The process that holds the socket (or reported last).
    pub process: String,
    pub reported_at: DateTime<Utc>,
    pub last_frame_at: Option<DateTime<Utc>>,
    pub reconnects: u64,
    pub events: u64,
    pub last_failure: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimitView {
    /// HTTP 429s met by the processes reporting now, since each started.
    pub rate_limited: u64,
    pub last_rate_limited_at: Option<DateTime<Utc>>,
    /// Heavy and Resource-intensive calls today (UTC) over those processes, and their caps.
    pub daily_used: u64,
    pub daily_cap: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtRiskView {
    pub meeting_uuid: String,
    pub topic: Option<String>,
    pub auto_delete_date: String,
    pub state: String,
}

/// `GET /api/queues`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuesPage {
    pub management: ManagementView,
    pub stages: Vec<StageView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagementView {
    /// Whether the last look at RabbitMQ's management API succeeded.
    pub ok: bool,
    pub error: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageView {
    pub stage: String,
    pub queue: String,
    /// From the management API (`null` when it is unreachable).
    pub ready: Option<u64>,
    pub unacked: Option<u64>,
    pub consumers: Option<u64>,
    pub dead_letters: Option<u64>,
    /// Messages waiting in the stage's retry tiers.
    pub retrying: Option<u64>,
    /// From the fold: meetings waiting at this stage.
    pub pending_meetings: usize,
    pub oldest_pending_seconds: Option<i64>,
    pub oldest_pending: Option<PendingView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingView {
    pub account: String,
    pub meeting_uuid: String,
    pub since: DateTime<Utc>,
}

/// `GET /api/summary`: what `zoom-relay status --summary` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub caught_up: bool,
    /// One sentence: "Everything is archived.", or what needs attention.
    pub headline: String,
    pub everything_archived: bool,
    /// Plain sentences about what needs a person, most urgent first.
    pub attention: Vec<String>,
    /// Meetings by state.
    pub meetings: BTreeMap<String, usize>,
    pub pending: usize,
    pub failed: usize,
    pub auto_delete_at_risk: usize,
    pub accounts: Vec<AccountView>,
    pub queues: QueuesPage,
    /// Failed meetings, the most recent first (at most 20).
    pub failures: Vec<MeetingSummary>,
    pub stream: StreamView,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamView {
    pub caught_up: bool,
    /// Messages folded from each stream since start.
    pub status_messages: u64,
    pub archive_messages: u64,
    pub status_offset: Option<i64>,
    pub archive_offset: Option<i64>,
    pub meetings: usize,
    /// Meetings forgotten past `status.max_meetings`.
    pub meetings_forgotten: u64,
}

/// Every error the API answers, with a stable `error` code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}
