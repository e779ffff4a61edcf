//! What the status stream carries: every meeting's transitions, one at a time, and the accounts'
//! reports. Stages publish each transition (confirmed, before they ack their input); processes
//! that hold Zoom clients publish an [`AccountReport`] now and then; reconciliation publishes a
//! [`ReconcileReport`] after each pass. `zoom-relay status` (`relay-status`) folds the stream into
//! every meeting's state and every account's health. The state machine and its guards live with
//! the fold; this is the message.
//!
//! A [`Transition`] is written as it always was (no `kind` field), so readers of older streams and
//! older writers keep working; reports carry `"kind": "account_report"` or `"reconcile_report"`
//! ([`StatusMessage`]). A reader skips a kind it does not know.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::binding::{Binding, header};
use crate::broker::{Broker, Outgoing, PublishError};

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
    pub const ALL: [State; 9] = [
        Self::Received,
        Self::Planned,
        Self::Staged,
        Self::Assembled,
        Self::Uploaded,
        Self::Deleted,
        Self::Skipped,
        Self::Failed,
        Self::Updated,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

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

/// Everything the status stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusMessage {
    Transition(Transition),
    Account(AccountReport),
    Reconcile(ReconcileReport),
    Socket(SocketReport),
}

/// The `kind` of a report in the stream; transitions have none.
// The variants' names are the `kind` tags written to the stream.
#[allow(clippy::enum_variant_names)]
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum TaggedRef<'a> {
    AccountReport(&'a AccountReport),
    ReconcileReport(&'a ReconcileReport),
    SocketReport(&'a SocketReport),
}

#[allow(clippy::enum_variant_names)]
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Tagged {
    AccountReport(AccountReport),
    ReconcileReport(ReconcileReport),
    SocketReport(SocketReport),
}

#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    kind: Option<String>,
}

impl StatusMessage {
    pub fn to_json(&self) -> Vec<u8> {
        let encoded = match self {
            Self::Transition(transition) => serde_json::to_vec(transition),
            Self::Account(report) => serde_json::to_vec(&TaggedRef::AccountReport(report)),
            Self::Reconcile(report) => serde_json::to_vec(&TaggedRef::ReconcileReport(report)),
            Self::Socket(report) => serde_json::to_vec(&TaggedRef::SocketReport(report)),
        };
        // Plain structs of strings, numbers and dates: serialising cannot fail.
        encoded.unwrap_or_default()
    }

    /// A message as read from the stream. A body without `kind` is a transition; an unknown
    /// `kind` (a newer writer's) is an error the reader skips.
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        let kind: Kind = serde_json::from_slice(body)?;
        match kind.kind.as_deref() {
            None | Some("transition") => serde_json::from_slice(body).map(Self::Transition),
            Some(_) => serde_json::from_slice(body).map(|tagged| match tagged {
                Tagged::AccountReport(report) => Self::Account(report),
                Tagged::ReconcileReport(report) => Self::Reconcile(report),
                Tagged::SocketReport(report) => Self::Socket(report),
            }),
        }
    }

    /// The account it is about.
    pub fn account(&self) -> &str {
        match self {
            Self::Transition(transition) => &transition.account,
            Self::Account(report) => &report.account,
            Self::Reconcile(report) => &report.account,
            Self::Socket(report) => &report.account,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Transition(_) => "transition",
            Self::Account(_) => "account_report",
            Self::Reconcile(_) => "reconcile_report",
            Self::Socket(_) => "socket_report",
        }
    }

    /// Publishes to the status stream, confirmed. Headers `account` and `kind` let a reader
    /// filter without decoding.
    pub async fn publish(&self, broker: &Broker) -> Result<(), PublishError> {
        let body = self.to_json();
        let stream = broker.topology().status_stream();
        broker
            .publisher()
            .publish(
                Outgoing::new("", &stream, &body)
                    .header(header::ACCOUNT, self.account())
                    .header("kind", self.kind()),
            )
            .await
    }
}

/// The command that sends a meeting's dead letters of `stage` back through it (docs/replay.md):
/// the status page, the CLI and failure notifications print it.
pub fn replay_command(stage: &str, uuid: &str, account: &str) -> String {
    format!(
        "zoom-relay replay --from-dlq {} --meeting {} --account {}",
        shell_word(stage),
        shell_word(uuid),
        shell_word(account)
    )
}

/// `text` as one shell word: as it is when it holds only characters no shell treats specially
/// (Zoom's uuids: letters, digits, `/`, `+`, `=`), single-quoted otherwise.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '+' | '=' | '_' | '-' | '.' | ':' | '@')
        });
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// One account as one process sees it through its Zoom client: published by every process that
/// holds Zoom clients, when something changed and at least every few minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountReport {
    pub at: DateTime<Utc>,
    pub account: String,
    pub account_id: String,
    /// `host:pid`: reports of one process replace each other.
    pub process: String,
    /// Since when this process's counters count (its start).
    pub since: DateTime<Utc>,
    pub authorization: Authorization,
    pub rate_limits: RateLimitReport,
}

/// Whether Zoom gives this account's app tokens, and with the scopes it needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// When the last access token was obtained.
    #[serde(default)]
    pub last_token_at: Option<DateTime<Utc>>,
    /// The last refusal or failure, in Zoom's words (never a secret).
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_at: Option<DateTime<Utc>>,
    /// Scopes the features this process uses need and the token lacks, as operators name them.
    #[serde(default)]
    pub missing_scopes: Vec<String>,
}

/// Zoom's rate-limit pressure on this account, as this process met it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitReport {
    /// HTTP 429s received since the process started.
    pub rate_limited: u64,
    #[serde(default)]
    pub last_rate_limited_at: Option<DateTime<Utc>>,
    /// Heavy and Resource-intensive calls today (UTC), and this process's daily cap.
    pub daily_used: u64,
    pub daily_cap: u64,
}

/// One reconciliation pass over an account (the `reconcile` component publishes one per pass).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// When the pass ended.
    pub at: DateTime<Utc>,
    pub account: String,
    pub account_id: String,
    pub process: String,
    pub started_at: DateTime<Utc>,
    /// Why the pass failed (credentials, scope, Zoom down); `None` for a complete pass.
    #[serde(default)]
    pub error: Option<String>,
    /// Every recording that ended before this is known to be archived or in flight: the
    /// account's lag is now minus this.
    #[serde(default)]
    pub watermark: Option<DateTime<Utc>>,
    /// Meetings the pass listed at Zoom.
    #[serde(default)]
    pub listed: u64,
    /// Meetings found neither archived nor in flight, and handed to the pipeline: webhooks that
    /// were lost.
    #[serde(default)]
    pub missing: u64,
}

/// One WebSocket subscription as the process serving it sees it (`zoom-relay websocket`
/// publishes one when its state changes, and at least every minute while it runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketReport {
    pub at: DateTime<Utc>,
    pub account: String,
    pub account_id: String,
    pub process: String,
    pub subscription_id: String,
    /// `connected`, `connecting` (between sockets, backing off) or `standby` (another replica
    /// holds the subscription).
    pub state: String,
    #[serde(default)]
    pub last_frame_at: Option<DateTime<Utc>>,
    /// Sockets replaced since the process started.
    #[serde(default)]
    pub reconnects: u64,
    /// Events received and stored since the process started.
    #[serde(default)]
    pub events: u64,
    /// What ended or prevented the last socket (`silent`, `closed`, `token`, …).
    #[serde(default)]
    pub last_failure: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::Origin;

    fn transition() -> Transition {
        let binding = Binding::new("acme", "acme-id", Origin::Webhook);
        Transition::new(&binding, "u/+1==", State::Planned, "plan")
            .detail(serde_json::json!({ "topic": "Weekly" }))
    }

    #[test]
    fn a_transition_keeps_its_shape_without_a_kind() {
        let written = StatusMessage::Transition(transition()).to_json();
        let value: serde_json::Value = serde_json::from_slice(&written).expect("JSON");
        assert!(value.get("kind").is_none(), "{value}");
        assert_eq!(value["state"], "planned");
        assert_eq!(
            serde_json::to_vec(&transition()).map(|v| v.len()).ok(),
            Some(written.len()),
            "byte for byte what stages always wrote"
        );
        assert_eq!(
            StatusMessage::from_json(&written).expect("decodes"),
            StatusMessage::Transition(serde_json::from_slice(&written).expect("transition"))
        );
    }

    #[test]
    fn reports_round_trip_with_their_kind_and_unknown_kinds_are_refused() {
        let report = StatusMessage::Account(AccountReport {
            at: Utc::now(),
            account: "acme".into(),
            account_id: "acme-id".into(),
            process: process_name(),
            since: Utc::now(),
            authorization: Authorization {
                last_error: Some("Invalid client_id or client_secret".into()),
                ..Authorization::default()
            },
            rate_limits: RateLimitReport::default(),
        });
        let written = report.to_json();
        let value: serde_json::Value = serde_json::from_slice(&written).expect("JSON");
        assert_eq!(value["kind"], "account_report");
        assert_eq!(StatusMessage::from_json(&written).expect("decodes"), report);
        let reconcile = StatusMessage::Reconcile(ReconcileReport {
            at: Utc::now(),
            account: "acme".into(),
            account_id: "acme-id".into(),
            process: process_name(),
            started_at: Utc::now(),
            error: None,
            watermark: Some(Utc::now()),
            listed: 3,
            missing: 1,
        });
        assert_eq!(
            StatusMessage::from_json(&reconcile.to_json()).expect("decodes"),
            reconcile
        );
        assert!(StatusMessage::from_json(br#"{"kind":"from_the_future"}"#).is_err());
    }
}
