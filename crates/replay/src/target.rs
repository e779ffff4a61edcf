//! The targets: a staging ingress (re-signed), a broker (staging's, or this one for dead letters
//! back into their stage), a replay file.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use lapin::types::FieldTable;
use relay_core::binding::{Binding, Origin, ReplayClaim, header, replay_header, set_int, set_text};
use relay_core::broker::stream::FILTER_VALUE_HEADER;
use relay_core::broker::{Broker, Outgoing, PublishError, Publisher, StageName, Topology};
use secrecy::SecretString;
use tokio::io::AsyncWriteExt;
use zoom_api::webhook::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, TRACKING_ID_HEADER, sign, sign_message,
};

use crate::ReplayError;
use crate::item::{Item, Kind, Line};

/// Attempts per event when the target answers 429/5xx or cannot be reached; then the job stops
/// (resumable) rather than skip events.
const ATTEMPTS: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why one event was not sent.
#[derive(Debug)]
pub enum SendError {
    /// This event was refused; the next may pass (counted `failed`, the job goes on).
    Refused(String),
    /// No event can pass: the job stops.
    Fatal(ReplayError),
}

pub enum Sender {
    Url(UrlSender),
    Broker(BrokerSender),
    File(FileSender),
}

impl Sender {
    pub async fn send(&mut self, item: &Item, claim: &ReplayClaim) -> Result<(), SendError> {
        match self {
            Self::Url(sender) => sender.send(item, claim).await,
            Self::Broker(sender) => sender.send(item, claim).await,
            Self::File(sender) => sender.send(item).await,
        }
    }

    pub async fn close(self) -> Result<(), ReplayError> {
        match self {
            Self::File(sender) => sender.close().await,
            Self::Broker(sender) => {
                sender.shutdown.cancel();
                Ok(())
            }
            Self::Url(_) => Ok(()),
        }
    }
}

pub struct UrlSender {
    http: reqwest::Client,
    url: String,
    secret: SecretString,
}

impl UrlSender {
    pub fn new(url: &str, secret: SecretString) -> Result<Self, ReplayError> {
        let parsed = url::Url::parse(url).map_err(|_| ReplayError::InvalidUrl(url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ReplayError::InvalidUrl(url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| ReplayError::TargetUnreachable(error.to_string()))?;
        Ok(Self {
            http,
            url: url.to_owned(),
            secret,
        })
    }

    async fn send(&self, item: &Item, claim: &ReplayClaim) -> Result<(), SendError> {
        let mut pause = FIRST_PAUSE;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.post(item, claim).await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let code = error_code(response).await;
                    match status.as_u16() {
                        // Wrong secret token, or a claim the target refuses: every event would be.
                        401 => {
                            return Err(SendError::Fatal(ReplayError::TargetRefused {
                                status: status.as_u16(),
                                code,
                            }));
                        }
                        429 | 500..=599 => format!("{status} {code}"),
                        _ => return Err(SendError::Refused(format!("{status} {code}"))),
                    }
                }
                // Never the error's URL or body: only what kind of failure it was.
                Err(error) if error.is_timeout() => "timed out".to_owned(),
                Err(error) if error.is_connect() => "connection refused or unreachable".to_owned(),
                Err(_) => "request failed".to_owned(),
            };
            if attempt >= ATTEMPTS {
                return Err(SendError::Fatal(ReplayError::TargetUnreachable(failure)));
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }

    async fn post(&self, item: &Item, claim: &ReplayClaim) -> reqwest::Result<reqwest::Response> {
        // A fresh timestamp and signature: the target's window is minutes, the event may be old.
        let signed_at = Utc::now().timestamp();
        let timestamp = signed_at.to_string();
        let claim_signature = sign_message(
            &self.secret,
            claim.signed_text(&timestamp, &item.body).as_bytes(),
        );
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, sign(&self.secret, signed_at, &item.body))
            .header(replay_header::JOB, &claim.job)
            .header(replay_header::FLAGS, claim.flags())
            .header(replay_header::SIGNATURE, claim_signature);
        // Zoom's own delivery id, so the target names the event as production did.
        if let Some(tracking_id) = item
            .message_id
            .as_deref()
            .filter(|id| !id.starts_with("sha256:"))
        {
            request = request.header(TRACKING_ID_HEADER, tracking_id);
        }
        request.body(item.body.clone()).send().await
    }
}

async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["error"].as_str().unwrap_or("no error code").to_owned()
}

/// Publishes with confirms: events to `zoom.events` (as an ingress would), a stage's work to its
/// stage queue. Dead letters back into their own stage go straight to the stage queue, events
/// too: through the exchange they would be archived a second time.
pub struct BrokerSender {
    publisher: Publisher,
    topology: Topology,
    /// Dead letters into their own stage on this relay's broker.
    own_stage: bool,
    account: Option<String>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl BrokerSender {
    /// Starts a broker connection of its own and waits until it is ready.
    pub async fn connect(
        amqp: &relay_core::settings::AmqpSettings,
        topology: Topology,
        own_stage: bool,
        account: Option<String>,
    ) -> Result<Self, ReplayError> {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let broker = Broker::start(amqp, topology.clone(), shutdown.clone());
        if !broker.wait_ready(amqp.connect_timeout).await {
            shutdown.cancel();
            return Err(ReplayError::TargetUnreachable(format!(
                "the broker did not answer within {}",
                humantime::format_duration(amqp.connect_timeout)
            )));
        }
        Ok(Self {
            publisher: broker.publisher(),
            topology,
            own_stage,
            account,
            shutdown,
        })
    }

    async fn send(&self, item: &Item, claim: &ReplayClaim) -> Result<(), SendError> {
        let headers =
            replay_headers(item, claim, self.account.as_deref()).map_err(SendError::Refused)?;
        let (exchange, routing_key) = match (item.kind, self.own_stage) {
            (Kind::Work(stage), _) => (String::new(), self.topology.stage_queue(stage)),
            (Kind::Event, true) => (String::new(), self.topology.stage_queue(StageName::Plan)),
            (Kind::Event, false) => (
                self.topology.events_exchange(),
                item.event.clone().unwrap_or_default(),
            ),
        };
        let mut message = Outgoing::new(&exchange, &routing_key, &item.body).headers(headers);
        if let Some(id) = &item.message_id {
            message = message.message_id(id);
        }
        match self.publisher.publish(message).await {
            Ok(()) => Ok(()),
            Err(error @ PublishError::Unroutable { .. }) => {
                Err(SendError::Refused(error.to_string()))
            }
            Err(error) => Err(SendError::Fatal(ReplayError::TargetUnreachable(
                error.to_string(),
            ))),
        }
    }
}

/// The headers a replayed message carries: its binding as this replay's (the account it was
/// verified for, never one read from the body), the event's flat headers, and for a dead letter
/// its own headers without the failure (attempts start again).
pub fn replay_headers(
    item: &Item,
    claim: &ReplayClaim,
    account: Option<&str>,
) -> Result<FieldTable, String> {
    const FAILURE: [&str; 7] = [
        header::ATTEMPT,
        header::STAGE,
        header::ERROR_CODE,
        header::ERROR,
        header::WAITING_SINCE,
        header::DELIVERY_COUNT,
        "x-death",
    ];
    let (Some(account_name), Some(account_id)) = (&item.account, &item.account_id) else {
        return Err(
            "it carries no account binding (it did not enter through a verified path)".into(),
        );
    };
    let mut headers = FieldTable::default();
    if let Some(original) = &item.headers {
        for (key, value) in original {
            let name = key.as_str();
            if !FAILURE.contains(&name) && !name.starts_with("x-stream") {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    let mut binding = Binding::new(account.unwrap_or(account_name), account_id, Origin::Replay);
    claim.apply(&mut binding);
    binding.write_to(&mut headers);
    if let Some(event) = &item.event {
        set_text(&mut headers, header::EVENT, event);
    }
    if let Some(event_ts) = item.event_ts {
        set_int(&mut headers, header::EVENT_TS, event_ts);
    }
    if let Some(received_at) = item.received_at {
        set_int(
            &mut headers,
            header::RECEIVED_AT,
            received_at.timestamp_millis(),
        );
    }
    if let Some(uuid) = &item.meeting_uuid {
        set_text(&mut headers, header::MEETING_UUID, uuid);
    }
    if item.kind == Kind::Event {
        set_text(&mut headers, FILTER_VALUE_HEADER, &binding.account);
    }
    Ok(headers)
}

/// Writes JSON lines, each with the body exactly as received. Created new, readable by its
/// owner only: bodies hold download tokens and participants' addresses.
pub struct FileSender {
    file: tokio::io::BufWriter<tokio::fs::File>,
    path: String,
}

impl FileSender {
    /// `append`: a resumed job continues its file.
    pub async fn create(path: &Path, append: bool) -> Result<Self, ReplayError> {
        let failed = |error: std::io::Error| ReplayError::File {
            path: path.display().to_string(),
            reason: error.to_string(),
        };
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true);
        if append {
            options.append(true);
        } else {
            options.create_new(true);
        }
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(path).await.map_err(failed)?;
        Ok(Self {
            file: tokio::io::BufWriter::new(file),
            path: path.display().to_string(),
        })
    }

    async fn send(&mut self, item: &Item) -> Result<(), SendError> {
        let mut line = serde_json::to_vec(&Line::from_item(item))
            .map_err(|error| SendError::Refused(error.to_string()))?;
        line.push(b'\n');
        let written = async {
            self.file.write_all(&line).await?;
            // Each line is in the file before the job records it as sent (a resumed job appends
            // after it).
            self.file.flush().await
        };
        written.await.map_err(|error| {
            SendError::Fatal(ReplayError::File {
                path: self.path.clone(),
                reason: error.to_string(),
            })
        })
    }

    async fn close(mut self) -> Result<(), ReplayError> {
        let path = self.path.clone();
        let failed = |error: std::io::Error| ReplayError::File {
            path: path.clone(),
            reason: error.to_string(),
        };
        self.file.flush().await.map_err(failed)?;
        self.file.get_ref().sync_all().await.map_err(failed)
    }
}
