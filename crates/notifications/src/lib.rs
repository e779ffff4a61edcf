//! Outgoing notifications: the next system (a video platform, a ticket queue, the owner's
//! mailbox) learns that a meeting landed, or failed for good, without polling.
//!
//! The notifier reads the status stream (`zoom.status`), where every stage already records each
//! transition, confirmed, before it acks its work. It never sits in the pipeline's path: a slow
//! or dead receiver delays notifications, never a recording. Two transitions are told
//! ([`notification_for`]):
//!
//! - `meeting.archived`: upload verified the meeting at its destination (the manifest's
//!   location, files, bytes, what is missing);
//! - `meeting.failed`: a stage gave up and dead-lettered the meeting's work (code, reason,
//!   attempt, and the replay command that retries it).
//!
//! Each goes to the account's `notification_url` as a JSON POST signed the Standard Webhooks way
//! ([`signature`]), retried with doubling back-off on 408, 429, 5xx and network errors, up to
//! `notifications.max_attempts`; refused (another 4xx) or out of attempts, it is logged and
//! counted and the notifier moves on. The `webhook-id` is derived from the transition, so a
//! notification sent again (after a restart) has the same id and a receiver can drop it.
//!
//! Where it got is kept in staging (a cursor, saved after each notification and every few
//! seconds), under a lease: one notifier across replicas, resuming where the last one stopped.
//! The first start begins at the stream's present, not its past.

pub mod settings;
pub mod signature;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lapin::Connection;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use relay_core::broker::stream::{self, Start, Subscription};
use relay_core::broker::{Topology, connect_reader};
use relay_core::settings::AmqpSettings;
use relay_core::status::{State, StatusMessage, Transition, replay_command};
use relay_pipeline::Shared;
use relay_pipeline::lease::Lease;
use relay_pipeline::staging::RecordKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

pub use settings::NotificationSettings;
use signature::{ID_HEADER, SIGNATURE_HEADER, SigningKey, TIMESTAMP_HEADER};

const LEASE: &str = "notifications";
/// Without a notification to save it for, the cursor is saved at most this often.
const CURSOR_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("account `{account}`: notification_secret {reason}")]
    Secret { account: String, reason: String },
    /// The URL itself is left out: its query may carry a receiver's token.
    #[error("account `{account}`: notification_url is not an http(s) URL")]
    Url { account: String },
    #[error("the HTTP client cannot be built: {0}")]
    HttpClient(String),
    #[error("the broker: {0}")]
    Broker(String),
    #[error("staging: {0}")]
    Staging(#[from] relay_storage::StorageError),
    #[error("the lease was lost to another notifier")]
    LeaseLost,
    /// Stopped between attempts of a delivery: it is sent again by whoever resumes.
    #[error("shutting down mid-delivery")]
    ShuttingDown,
}

/// What a receiver gets: Standard Webhooks' envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// `meeting.archived` or `meeting.failed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened (the transition's time).
    pub timestamp: DateTime<Utc>,
    pub data: Value,
}

pub const ARCHIVED: &str = "meeting.archived";
pub const FAILED: &str = "meeting.failed";

/// The notification a transition makes, if any. Cleanup records `uploaded` again for files it
/// leaves at Zoom: only upload's is the meeting landing.
pub fn notification_for(transition: &Transition) -> Option<(String, Notification)> {
    let common = json!({
        "account": transition.account,
        "account_id": transition.account_id,
        "meeting_uuid": transition.meeting_uuid,
        "origin": transition.origin,
        "replay_job": transition.replay_job,
    });
    let (kind, mut data) = match (transition.state, transition.stage.as_str()) {
        (State::Uploaded, "upload") => {
            let detail = &transition.detail;
            let mut data = common;
            for key in [
                "topic",
                "manifest",
                "destination",
                "files",
                "missing",
                "bytes",
            ] {
                data[key] = detail.get(key).cloned().unwrap_or(Value::Null);
            }
            (ARCHIVED, data)
        }
        (State::Failed, stage) => {
            let mut data = common;
            data["stage"] = json!(stage);
            data["file_id"] = json!(transition.file_id);
            data["code"] = json!(transition.code);
            data["reason"] = json!(transition.reason);
            data["attempt"] = json!(transition.attempt);
            data["replay"] = json!(replay_command(
                stage,
                &transition.meeting_uuid,
                &transition.account
            ));
            (FAILED, data)
        }
        _ => return None,
    };
    if let Some(object) = data.as_object_mut() {
        object.retain(|_, value| !value.is_null());
    }
    // The id names what happened, so the same news twice has one id: a meeting archived with
    // the same manifest (two assemblers that both saw it complete, a restart re-reading the
    // stream) is one notification; each failure is its own.
    let what = match kind {
        ARCHIVED => data
            .as_object()
            .map(|fields| {
                ["manifest", "files", "missing", "bytes"]
                    .map(|key| fields.get(key).map(Value::to_string).unwrap_or_default())
                    .join("\0")
            })
            .unwrap_or_default(),
        _ => format!(
            "{}\0{}\0{}",
            transition.stage,
            transition.file_id.as_deref().unwrap_or_default(),
            transition.at.to_rfc3339()
        ),
    };
    let mut hash = Sha256::new();
    for part in [
        transition.account.as_str(),
        transition.meeting_uuid.as_str(),
        kind,
        &what,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let id = format!("msg_{}", &hex_lower(&hash.finalize())[..32]);
    Some((
        id,
        Notification {
            kind: kind.to_owned(),
            timestamp: transition.at,
            data,
        },
    ))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Where one account's notifications go.
struct Receiver {
    account_id: String,
    url: reqwest::Url,
    key: SigningKey,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SentLabels {
    account: String,
    #[prometheus(flatten)]
    kind: KindLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    r#type: String,
    /// `delivered`, `refused` (a 4xx other than 408 and 429) or `given_up` (out of attempts).
    outcome: String,
}

#[derive(Clone)]
pub struct Metrics {
    notifications: Family<SentLabels, Counter>,
    attempts: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            notifications: Family::default(),
            attempts: Counter::default(),
        };
        let registry = registry.sub_registry_with_prefix("zoom_relay_notifications");
        registry.register(
            "sent",
            "Notifications per account, type and outcome (delivered, refused, given_up)",
            metrics.notifications.clone(),
        );
        registry.register(
            "attempts",
            "HTTP deliveries tried, retries included",
            metrics.attempts.clone(),
        );
        metrics
    }

    fn count(&self, account: &str, kind: &str, outcome: &str) {
        self.notifications
            .get_or_create(&SentLabels {
                account: account.to_owned(),
                kind: KindLabel {
                    r#type: kind.to_owned(),
                    outcome: outcome.to_owned(),
                },
            })
            .inc();
    }
}

/// Where the notifier got in the status stream.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Cursor {
    offset: i64,
}

/// The ids told lately, so the same news twice in a row is told once.
#[derive(Default)]
struct Recent {
    ids: std::collections::VecDeque<String>,
}

impl Recent {
    const KEEP: usize = 4096;

    /// `false` when `id` was told lately.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.iter().any(|known| known == id) {
            return false;
        }
        if self.ids.len() == Self::KEEP {
            self.ids.pop_front();
        }
        self.ids.push_back(id.to_owned());
        true
    }
}

/// How a delivery ended.
enum Delivered {
    Yes,
    Refused(u16),
    GaveUp(String),
}

pub struct Notifier {
    shared: Shared,
    amqp: AmqpSettings,
    stream: String,
    settings: NotificationSettings,
    receivers: Arc<Vec<(String, Receiver)>>,
    http: reqwest::Client,
    metrics: Metrics,
}

impl Notifier {
    /// Checks every account's notification settings; accounts without a URL are not notified.
    pub fn new(
        shared: &Shared,
        amqp: &AmqpSettings,
        topology: &Topology,
        settings: NotificationSettings,
        metrics: Metrics,
    ) -> Result<Self, NotifyError> {
        let mut receivers = Vec::new();
        for account in shared.accounts.iter() {
            let settings = &account.settings;
            let (Some(url), Some(secret)) =
                (&settings.notification_url, &settings.notification_secret)
            else {
                continue;
            };
            let parsed = reqwest::Url::parse(url)
                .ok()
                .filter(|parsed| matches!(parsed.scheme(), "http" | "https"))
                .ok_or_else(|| NotifyError::Url {
                    account: settings.name.clone(),
                })?;
            let key = SigningKey::parse(secret).map_err(|reason| NotifyError::Secret {
                account: settings.name.clone(),
                reason,
            })?;
            receivers.push((
                settings.name.clone(),
                Receiver {
                    account_id: settings.account_id.clone(),
                    url: parsed,
                    key,
                },
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A receiver's redirect is not followed: the signature was made for its URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| NotifyError::HttpClient(error.to_string()))?;
        Ok(Self {
            shared: shared.clone(),
            amqp: amqp.clone(),
            stream: topology.status_stream(),
            settings,
            receivers: Arc::new(receivers),
            http,
            metrics,
        })
    }

    /// Sends until `shutdown`: holds the lease, reads, reconnects.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.receivers.is_empty() {
            info!("no account has a notification_url: nothing to send");
            return;
        }
        // The very first notifier of a deployment starts where this process did, not at the
        // stream's past (weeks of meetings told at once).
        let started = Utc::now().timestamp();
        let mut pause = Duration::from_millis(500);
        while !shutdown.is_cancelled() {
            let lease =
                match Lease::acquire(&self.shared.staging, LEASE, self.settings.lease_ttl).await {
                    Ok(Some(lease)) => Some(lease),
                    Ok(None) => None,
                    Err(error) => {
                        warn!(%error, "cannot take the notifications lease");
                        None
                    }
                };
            let Some(mut lease) = lease else {
                // Another replica sends; look again when its lease could have expired.
                wait(&shutdown, self.settings.lease_ttl / 2).await;
                continue;
            };
            match self.session(&mut lease, started, &shutdown).await {
                Ok(()) | Err(NotifyError::ShuttingDown) => pause = Duration::from_millis(500),
                Err(error) => warn!(%error, "notifications paused; resuming"),
            }
            lease.release().await;
            wait(&shutdown, pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }

    async fn session(
        &self,
        lease: &mut Lease,
        started: i64,
        shutdown: &CancellationToken,
    ) -> Result<(), NotifyError> {
        let cursor_path = self
            .shared
            .staging
            .record(RecordKey::Cursor { name: LEASE })?;
        let location = &self.shared.staging.location;
        let saved: Option<Cursor> = location.get_json(&cursor_path).await?;
        let connection = connect_reader(&self.amqp, "zoom-relay-notifications")
            .await
            .map_err(|error| NotifyError::Broker(error.to_string()))?;
        let start = match saved {
            Some(cursor) => Start::Offset(cursor.offset + 1),
            None => Start::Timestamp(started),
        };
        let mut subscription = Subscription::open(
            &connection,
            &self.stream,
            start,
            None,
            "zoom-relay-notifications",
        )
        .await
        .map_err(|error| NotifyError::Broker(error.to_string()))?;
        let mut done = saved.map(|cursor| cursor.offset);
        let mut recent = Recent::default();
        let mut unsaved = false;
        let mut saved_at = Instant::now();
        let renew_every = self.settings.lease_ttl / 3;
        let mut renewed_at = Instant::now();
        loop {
            if renewed_at.elapsed() >= renew_every {
                if !lease.renew().await? {
                    return Err(NotifyError::LeaseLost);
                }
                renewed_at = Instant::now();
            }
            if unsaved && saved_at.elapsed() >= CURSOR_EVERY {
                self.save(&cursor_path, done).await?;
                unsaved = false;
                saved_at = Instant::now();
            }
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = subscription.next(renew_every) => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => return Err(NotifyError::Broker(error.to_string())),
                None if connected(&connection) => continue,
                None => return Err(NotifyError::Broker("the connection was lost".into())),
            };
            let offset = stream::offset(&delivery);
            // A stream resumes at the start of the chunk holding the offset asked for.
            let seen = offset.is_some_and(|offset| done.is_some_and(|done| offset <= done));
            if !seen {
                let sent = match StatusMessage::from_json(&delivery.data) {
                    Ok(StatusMessage::Transition(transition)) => {
                        self.notify(&transition, &mut recent, lease, shutdown)
                            .await?
                    }
                    _ => false,
                };
                if let Some(offset) = offset {
                    done = Some(offset);
                    unsaved = true;
                }
                if sent {
                    self.save(&cursor_path, done).await?;
                    unsaved = false;
                    saved_at = Instant::now();
                }
            }
            subscription
                .credit(&delivery)
                .await
                .map_err(|error| NotifyError::Broker(error.to_string()))?;
        }
        if unsaved {
            self.save(&cursor_path, done).await?;
        }
        subscription.close().await;
        let _ = connection.close(200, "shutting down".into()).await;
        Ok(())
    }

    async fn save(
        &self,
        path: &object_store::path::Path,
        done: Option<i64>,
    ) -> Result<(), NotifyError> {
        if let Some(offset) = done {
            self.shared
                .staging
                .location
                .put_json(path, &Cursor { offset })
                .await?;
        }
        Ok(())
    }

    /// Sends the transition's notification, if it makes one for an account that wants them.
    /// `true` when something was sent (or given up on).
    async fn notify(
        &self,
        transition: &Transition,
        recent: &mut Recent,
        lease: &mut Lease,
        shutdown: &CancellationToken,
    ) -> Result<bool, NotifyError> {
        let Some((name, receiver)) = self
            .receivers
            .iter()
            .find(|(name, _)| *name == transition.account)
        else {
            return Ok(false);
        };
        // A transition's account is the binding its work carried; its Zoom id must be the one
        // configured now, or it belongs to another tenant that once had this name.
        if receiver.account_id != transition.account_id {
            return Ok(false);
        }
        let Some((id, notification)) = notification_for(transition) else {
            return Ok(false);
        };
        if !recent.insert(&id) {
            debug!(webhook_id = id, "told already");
            return Ok(false);
        }
        let span = tracing::info_span!(
            "notification",
            account = name,
            account_id = transition.account_id,
            meeting_uuid = transition.meeting_uuid,
            event = notification.kind,
        );
        let outcome = self
            .deliver(receiver, &id, &notification, lease, shutdown)
            .instrument(span.clone())
            .await?;
        let _entered = span.enter();
        let label = match outcome {
            Delivered::Yes => {
                info!(webhook_id = id, "notified");
                "delivered"
            }
            Delivered::Refused(status) => {
                warn!(
                    webhook_id = id,
                    status, "the receiver refused the notification"
                );
                "refused"
            }
            Delivered::GaveUp(reason) => {
                warn!(webhook_id = id, reason, "notification given up");
                "given_up"
            }
        };
        self.metrics.count(name, &notification.kind, label);
        Ok(true)
    }

    async fn deliver(
        &self,
        receiver: &Receiver,
        id: &str,
        notification: &Notification,
        lease: &mut Lease,
        shutdown: &CancellationToken,
    ) -> Result<Delivered, NotifyError> {
        let body = serde_json::to_vec(notification).unwrap_or_default();
        let mut pause = self.settings.backoff;
        let mut last = String::new();
        for attempt in 1..=self.settings.max_attempts {
            if attempt > 1 {
                wait(shutdown, jitter(pause)).await;
                pause = (pause * 2).min(self.settings.max_backoff);
                if !lease.renew().await? {
                    return Err(NotifyError::LeaseLost);
                }
            }
            if shutdown.is_cancelled() {
                return Err(NotifyError::ShuttingDown);
            }
            self.metrics.attempts.inc();
            // A fresh timestamp per attempt: receivers refuse old ones, as ours do.
            let timestamp = Utc::now().timestamp();
            let sent = self
                .http
                .post(receiver.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(ID_HEADER, id)
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, receiver.key.sign(id, timestamp, &body))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return Ok(Delivered::Yes),
                Ok(response) => {
                    let status = response.status().as_u16();
                    if !matches!(status, 408 | 429 | 500..=599) {
                        return Ok(Delivered::Refused(status));
                    }
                    last = format!("HTTP {status}");
                }
                // The URL is the operator's, not a secret, but reqwest's message may carry
                // the receiver's answer: the kind of failure is enough.
                Err(error) if error.is_timeout() => last = "timed out".into(),
                Err(error) if error.is_connect() => last = "cannot connect".into(),
                Err(_) => last = "the request failed".into(),
            }
            debug!(attempt, reason = last, "notification not delivered yet");
        }
        Ok(Delivered::GaveUp(format!(
            "{} attempts, the last: {last}",
            self.settings.max_attempts
        )))
    }
}

fn connected(connection: &Connection) -> bool {
    connection.status().connected()
}

fn jitter(pause: Duration) -> Duration {
    pause.mul_f64(rand::random_range(0.8..1.2))
}

async fn wait(shutdown: &CancellationToken, pause: Duration) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(pause) => {}
    }
}

#[cfg(test)]
mod tests {
    use relay_core::binding::{Binding, Origin};

    use super::*;

    fn binding() -> Binding {
        Binding::new("acme", "acme-id", Origin::Webhook)
    }

    #[test]
    fn upload_verifying_a_meeting_is_its_archived_notification() {
        let transition = Transition::new(&binding(), "u/+1==", State::Uploaded, "upload").detail(
            json!({ "files": 3, "missing": 0, "bytes": 1024, "manifest": "acme/x/meeting.json",
                    "destination": "file:///srv", "topic": "週次会議" }),
        );
        let (id, notification) = notification_for(&transition).expect("notified");
        assert_eq!(notification.kind, ARCHIVED);
        assert_eq!(notification.data["manifest"], "acme/x/meeting.json");
        assert_eq!(notification.data["topic"], "週次会議");
        assert_eq!(notification.data["account_id"], "acme-id");
        assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
        assert_eq!(
            notification_for(&transition).map(|(again, _)| again),
            Some(id),
            "one transition, one id"
        );
    }

    #[test]
    fn a_stage_giving_up_is_a_failed_notification_with_its_replay_command() {
        let mut transition = Transition::new(&binding(), "u/+1==", State::Failed, "download");
        transition.code = Some("html_instead_of_file".into());
        transition.reason = Some("Zoom answered an HTML page".into());
        transition.attempt = Some(5);
        let (_, notification) = notification_for(&transition).expect("notified");
        assert_eq!(notification.kind, FAILED);
        assert_eq!(notification.data["code"], "html_instead_of_file");
        assert_eq!(
            notification.data["replay"],
            "zoom-relay replay --from-dlq download --meeting u/+1== --account acme"
        );
    }

    #[test]
    fn other_transitions_and_cleanups_uploaded_are_not_told() {
        for (state, stage) in [
            (State::Planned, "plan"),
            (State::Staged, "download"),
            (State::Uploaded, "cleanup"),
            (State::Deleted, "cleanup"),
            (State::Skipped, "plan"),
        ] {
            let transition = Transition::new(&binding(), "u", state, stage);
            assert!(notification_for(&transition).is_none(), "{state:?} {stage}");
        }
    }
}
