//! Reads the status stream and the archive stream from their first message into the view, and
//! keeps reading.
//!
//! Streams over AMQP 0.9.1 (RabbitMQ 3.10, docs/broker.md): a consumer needs a prefetch and
//! manual acks (an ack is only credit: nothing is removed); `basic.nack` or `basic.get` on a
//! stream closes the connection, so neither is ever sent. The readers have a connection of
//! their own — a mistake there must not take the process's publishing connection with it — and,
//! like every consumer here, rely on no recovery of lapin's: after a lost connection they
//! reconnect and resubscribe from the offset after the last one folded (`x-stream-offset`). A
//! stream resumes at the start of the chunk holding that offset, so the fold ignores offsets it
//! has seen.
//!
//! "Caught up": when the readers first connect they look where each stream ends (a consumer at
//! `last` gets the last chunk; its highest offset is the end) and report caught up once the
//! fold reached both ends. Nothing is written to find out: the CLI needs only read access.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::Connection;
use lapin::message::Delivery;
use rand::Rng;
use relay_core::binding::{header, int_header, text_header};
use relay_core::broker::connect_reader;
use relay_core::broker::stream::{self, Start, Subscription};
use relay_core::settings::AmqpSettings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::fold::ArchivedEvent;
use crate::state::StatusState;

/// A consumer is read until it ends: no idle limit.
const NO_IDLE_LIMIT: Duration = Duration::from_secs(365 * 86_400);

/// Where the readers are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub connected: bool,
    /// Both streams were read up to where they ended when the readers first connected.
    pub caught_up: bool,
    /// Sessions that failed in a row (connecting, subscribing, reading).
    pub failures: u32,
}

/// The readers of one process.
pub struct StreamReader {
    amqp: AmqpSettings,
    status_stream: String,
    archive_stream: String,
    state: StatusState,
}

impl StreamReader {
    pub fn new(amqp: &AmqpSettings, state: StatusState) -> Self {
        Self {
            amqp: amqp.clone(),
            status_stream: state.topology().status_stream(),
            archive_stream: state.topology().archive_stream(),
            state,
        }
    }

    /// Reads until `shutdown`, reconnecting as often as needed.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        let mut ends: Option<Ends> = None;
        while !shutdown.is_cancelled() {
            let connected = tokio::select! {
                () = shutdown.cancelled() => break,
                connected = connect_reader(&self.amqp, "zoom-relay-status") => connected,
            };
            match connected {
                Ok(connection) => {
                    backoff = Duration::from_millis(200);
                    self.state.set_connected(true);
                    let ended = self.read(&connection, &mut ends, &shutdown).await;
                    self.state.set_connected(false);
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        connection.close(200, "status reader done".into()),
                    )
                    .await;
                    match ended {
                        Ok(()) => break,
                        Err(reason) => {
                            warn!(reason, "status readers stopped, resubscribing");
                            self.state.set_failure(reason);
                        }
                    }
                }
                Err(error) => {
                    warn!(%error, "status readers cannot connect");
                    self.state.set_failure(error.to_string());
                }
            }
            let pause = backoff.mul_f64(rand::rng().random_range(0.5..1.5));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
            backoff = (backoff * 2).min(self.amqp.reconnect_max_backoff);
        }
    }

    /// One session: subscribe to both streams after what was folded, fold until the connection
    /// or a consumer ends (`Err`) or shutdown (`Ok`).
    async fn read(
        &self,
        connection: &Connection,
        ends: &mut Option<Ends>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        if ends.is_none() {
            let end = |stream: &'static str, name: String| async move {
                stream::end(connection, &name)
                    .await
                    .map_err(|error| format!("looking at the end of {stream}: {error}"))
            };
            *ends = Some(Ends {
                status: end("the status stream", self.status_stream.clone()).await?,
                archive: end("the archive stream", self.archive_stream.clone()).await?,
            });
            debug!(?ends, "stream ends to catch up with");
        }
        let (status_from, archive_from) = self.state.folded_offsets();
        let tag = format!("zoom-relay-status-{}", std::process::id());
        let start = |after: Option<i64>| after.map_or(Start::First, |last| Start::Offset(last + 1));
        let subscribed =
            |stream: &str, error: lapin::Error| format!("subscribing to {stream}: {error}");
        let mut status = Subscription::open(
            connection,
            &self.status_stream,
            start(status_from),
            None,
            &tag,
        )
        .await
        .map_err(|error| subscribed(&self.status_stream, error))?;
        let mut archive = Subscription::open(
            connection,
            &self.archive_stream,
            start(archive_from),
            None,
            &tag,
        )
        .await
        .map_err(|error| subscribed(&self.archive_stream, error))?;
        self.state.set_reading();
        self.check_caught_up(*ends);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    status.close().await;
                    archive.close().await;
                    return Ok(());
                }
                delivery = status.next(NO_IDLE_LIMIT) => {
                    let delivery = ended(delivery, &self.status_stream)?;
                    let offset = stream::offset(&delivery);
                    self.state.with_view(|view| view.apply_status(offset, &delivery.data));
                    status.credit(&delivery).await.map_err(|error| format!("credit: {error}"))?;
                }
                delivery = archive.next(NO_IDLE_LIMIT) => {
                    let delivery = ended(delivery, &self.archive_stream)?;
                    let offset = stream::offset(&delivery);
                    let event = archived_event(&delivery);
                    self.state.with_view(|view| view.apply_archive(offset, event));
                    archive.credit(&delivery).await.map_err(|error| format!("credit: {error}"))?;
                }
            }
            self.check_caught_up(*ends);
        }
    }

    fn check_caught_up(&self, ends: Option<Ends>) {
        let Some(ends) = ends else { return };
        if self.state.progress().caught_up {
            return;
        }
        let (status, archive) = self.state.folded_offsets();
        let reached = |end: Option<i64>, folded: Option<i64>| {
            end.is_none_or(|end| folded.is_some_and(|folded| folded >= end))
        };
        if reached(ends.status, status) && reached(ends.archive, archive) {
            info!(
                meetings = self.state.with_view(|view| view.meeting_count()),
                "status view caught up with the streams"
            );
            self.state.set_caught_up();
        }
    }
}

/// Where each stream ended when first looked at (`None`: empty).
#[derive(Debug, Clone, Copy)]
struct Ends {
    status: Option<i64>,
    archive: Option<i64>,
}

fn ended(
    delivery: Option<Result<Delivery, lapin::Error>>,
    stream: &str,
) -> Result<Delivery, String> {
    match delivery {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(error)) => Err(format!("{stream}: {error}")),
        None => Err(format!(
            "{stream}: the consumer ended (cancelled, or the connection lost)"
        )),
    }
}

/// An archived event: the flat headers the ingress wrote, and what the body says of the meeting
/// (never kept: it holds download tokens).
fn archived_event(delivery: &Delivery) -> ArchivedEvent {
    let headers = delivery.properties.headers().as_ref();
    let text = |key: &str| headers.and_then(|headers| text_header(headers, key));
    let received_at = headers
        .and_then(|headers| int_header(headers, header::RECEIVED_AT))
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or_else(Utc::now);
    let body: Value = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
    let object = &body["payload"]["object"];
    let kind = object["type"].as_i64().map(|kind| {
        if matches!(kind, 5 | 6 | 9) {
            "webinar"
        } else {
            "meeting"
        }
    });
    let event = text(header::EVENT)
        .or_else(|| body["event"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let meeting_uuid = text(header::MEETING_UUID)
        .or_else(|| object["uuid"].as_str().map(str::to_owned))
        .unwrap_or_default();
    ArchivedEvent {
        account: text(header::ACCOUNT).unwrap_or_default(),
        account_id: text(header::ACCOUNT_ID).unwrap_or_default(),
        origin: text(header::ORIGIN),
        event,
        received_at,
        meeting_uuid,
        description: json!({
            "topic": object["topic"],
            "host_email": object["host_email"],
            "start_time": object["start_time"],
            "auto_delete_date": object["auto_delete_date"],
            "kind": kind,
        }),
    }
}
