//! The three sources: the archive stream by time, a stage's dead-letter queue, a replay file.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection};
use relay_core::broker::StageName;
use relay_core::broker::stream::{self, Start, Subscription};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::ReplayError;
use crate::item::{Item, Kind, Line};

/// The archive is ordered by when the broker stored each event; receive times of events from
/// several ingress replicas interleave by about a publish's time. Reading stops this far past
/// `--until`.
const RECEIVE_ORDER_SLACK: TimeDelta = TimeDelta::seconds(30);
/// A source that delivers nothing for this long has nothing more.
const IDLE: Duration = Duration::from_secs(5);

pub enum Reader {
    Archive(ArchiveReader),
    DeadLetters(DeadLetterReader),
    File(FileReader),
}

impl Reader {
    pub async fn next(&mut self) -> Result<Option<Item>, ReplayError> {
        match self {
            Self::Archive(reader) => reader.next().await,
            Self::DeadLetters(reader) => reader.next().await,
            Self::File(reader) => reader.next().await,
        }
    }

    /// After an item was sent (or, `sent == false`, kept): a dead letter sent is removed from
    /// its queue; one kept stays (it is returned when the reader closes).
    pub async fn settle(&mut self, item: &Item, sent: bool) -> Result<(), ReplayError> {
        match self {
            Self::DeadLetters(reader) if sent => reader.remove(item).await,
            _ => Ok(()),
        }
    }

    /// How far through the source the reader is, 0..=1, when that is known.
    pub fn fraction(&self) -> Option<f64> {
        match self {
            Self::Archive(reader) => reader.fraction(),
            Self::DeadLetters(reader) => {
                (reader.total > 0).then(|| reader.read as f64 / reader.total as f64)
            }
            Self::File(reader) => {
                (reader.size > 0).then(|| reader.bytes_read as f64 / reader.size as f64)
            }
        }
    }

    pub async fn close(self) {
        match self {
            Self::Archive(reader) => reader.subscription.close().await,
            Self::DeadLetters(reader) => {
                // Closing returns every delivery not acked (kept, or failed to send) to the queue.
                let _ = reader.channel.close(200, "replay done".into()).await;
            }
            Self::File(_) => {}
        }
    }
}

/// Reads the archive stream from the chunk holding `since` (a timestamp start is approximate),
/// keeping events received in `[since, until]`, up to where the stream ended when the job
/// started.
pub struct ArchiveReader {
    subscription: Subscription,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    /// Offsets up to this one were handled before (`--resume`).
    after: Option<i64>,
    first: Option<i64>,
    end: i64,
    last: Option<i64>,
}

/// What the archive holds: for the plan and for a range beyond retention.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub oldest: DateTime<Utc>,
    pub first_offset: i64,
    pub end_offset: i64,
}

impl ArchiveReader {
    pub async fn open(
        connection: &Connection,
        stream_name: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<i64>,
        account: Option<&str>,
    ) -> Result<(Self, Held), ReplayError> {
        let broker = |error: lapin::Error| ReplayError::Broker(format!("{stream_name}: {error}"));
        let head = stream::head(connection, stream_name)
            .await
            .map_err(broker)?
            .ok_or(ReplayError::EmptyArchive)?;
        let oldest = Item::from_delivery(&head, Kind::Event)
            .received_at
            .unwrap_or(since);
        let first_offset = stream::offset(&head).unwrap_or_default();
        let end_offset = stream::end(connection, stream_name)
            .await
            .map_err(broker)?
            .unwrap_or(first_offset);
        let held = Held {
            oldest,
            first_offset,
            end_offset,
        };
        if until < oldest {
            return Err(ReplayError::BeyondRetention { oldest, until });
        }
        let start = match after {
            Some(offset) => Start::Offset(offset + 1),
            // A second early: the chunk holding `since` may start before it.
            None => Start::Timestamp(since.timestamp() - 1),
        };
        let subscription =
            Subscription::open(connection, stream_name, start, account, "zoom-relay-replay")
                .await
                .map_err(broker)?;
        Ok((
            Self {
                subscription,
                since,
                until,
                after,
                first: None,
                end: end_offset,
                last: after,
            },
            held,
        ))
    }

    async fn next(&mut self) -> Result<Option<Item>, ReplayError> {
        loop {
            if self.last.is_some_and(|last| last >= self.end) {
                return Ok(None);
            }
            let delivery = match self.subscription.next(IDLE).await {
                None => return Ok(None),
                Some(Err(error)) => return Err(ReplayError::Broker(error.to_string())),
                Some(Ok(delivery)) => delivery,
            };
            self.subscription
                .credit(&delivery)
                .await
                .map_err(|error| ReplayError::Broker(error.to_string()))?;
            let item = Item::from_delivery(&delivery, Kind::Event);
            let Some(offset) = item.position else {
                continue;
            };
            // A stream resumes at the start of a chunk: skip what was handled.
            if self.after.is_some_and(|after| offset <= after) || offset > self.end {
                continue;
            }
            self.first.get_or_insert(offset);
            self.last = Some(offset);
            let Some(received_at) = item.received_at else {
                continue;
            };
            if received_at < self.since {
                continue;
            }
            if received_at > self.until {
                if received_at > self.until + RECEIVE_ORDER_SLACK {
                    return Ok(None);
                }
                continue;
            }
            return Ok(Some(item));
        }
    }

    fn fraction(&self) -> Option<f64> {
        let (first, last) = (self.first?, self.last?);
        let span = (self.end - first).max(1) as f64;
        Some(((last - first) as f64 / span).clamp(0.0, 1.0))
    }
}

/// Reads a dead-letter queue once: as many deliveries as it held when the job started. Those
/// sent are acked (removed); the others stay unacked until the reader closes, which returns
/// them to the queue.
pub struct DeadLetterReader {
    channel: Channel,
    consumer: lapin::Consumer,
    stage: StageName,
    total: u64,
    read: u64,
    ackers: HashMap<u64, Acker>,
    next_tag: u64,
}

impl DeadLetterReader {
    pub async fn open(
        connection: &Connection,
        queue: &str,
        stage: StageName,
    ) -> Result<Self, ReplayError> {
        let broker = |error: lapin::Error| ReplayError::Broker(format!("{queue}: {error}"));
        let channel = connection.create_channel().await.map_err(broker)?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        let total = u64::from(declared.message_count());
        // Every message is held at once while the queue is read through (those kept are
        // returned at the end): no prefetch limit that would stall on kept messages.
        channel
            .basic_qos(0, BasicQosOptions::default())
            .await
            .map_err(broker)?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "zoom-relay-replay".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        Ok(Self {
            channel,
            consumer,
            stage,
            total,
            read: 0,
            ackers: HashMap::new(),
            next_tag: 0,
        })
    }

    async fn next(&mut self) -> Result<Option<Item>, ReplayError> {
        if self.read >= self.total {
            return Ok(None);
        }
        let delivery = match tokio::time::timeout(IDLE, self.consumer.next()).await {
            Err(_) | Ok(None) => return Ok(None),
            Ok(Some(Err(error))) => return Err(ReplayError::Broker(error.to_string())),
            Ok(Some(Ok(delivery))) => delivery,
        };
        self.read += 1;
        let kind = match self.stage {
            StageName::Plan => Kind::Event,
            stage => Kind::Work(stage),
        };
        let mut item = Item::from_delivery(&delivery, kind);
        self.next_tag += 1;
        // Stands for the delivery until it is settled.
        item.position = Some(self.next_tag as i64);
        self.ackers.insert(self.next_tag, delivery.acker);
        Ok(Some(item))
    }

    async fn remove(&mut self, item: &Item) -> Result<(), ReplayError> {
        let Some(acker) = item
            .position
            .and_then(|tag| self.ackers.remove(&(tag as u64)))
        else {
            return Ok(());
        };
        acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|error| ReplayError::Broker(error.to_string()))
    }
}

/// Reads a replay file line by line.
pub struct FileReader {
    lines: tokio::io::Lines<BufReader<tokio::fs::File>>,
    path: String,
    line: i64,
    after: Option<i64>,
    size: u64,
    bytes_read: u64,
}

impl FileReader {
    pub async fn open(path: &Path, after: Option<i64>) -> Result<Self, ReplayError> {
        let failed = |error: std::io::Error| ReplayError::File {
            path: path.display().to_string(),
            reason: error.to_string(),
        };
        let file = tokio::fs::File::open(path).await.map_err(failed)?;
        let size = file.metadata().await.map_err(failed)?.len();
        Ok(Self {
            lines: BufReader::new(file).lines(),
            path: path.display().to_string(),
            line: 0,
            after,
            size,
            bytes_read: 0,
        })
    }

    async fn next(&mut self) -> Result<Option<Item>, ReplayError> {
        loop {
            let Some(text) = self
                .lines
                .next_line()
                .await
                .map_err(|error| ReplayError::File {
                    path: self.path.clone(),
                    reason: error.to_string(),
                })?
            else {
                return Ok(None);
            };
            self.line += 1;
            self.bytes_read += text.len() as u64 + 1;
            if text.trim().is_empty() || self.after.is_some_and(|after| self.line <= after) {
                continue;
            }
            let item = serde_json::from_str::<Line>(&text)
                .map_err(|error| error.to_string())
                .and_then(|line| line.into_item(self.line))
                .map_err(|reason| ReplayError::File {
                    path: self.path.clone(),
                    reason: format!("line {}: {reason}", self.line),
                })?;
            return Ok(Some(item));
        }
    }
}
