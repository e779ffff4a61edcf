//! Reading RabbitMQ streams over AMQP 0.9.1 (the archive, the status stream).
//!
//! What the broker requires (RabbitMQ 3.10, measured; docs/broker.md): a consumer needs a
//! prefetch and manual acks, and an ack only returns credit (nothing is removed);
//! `basic.nack` and `basic.get` on a stream close the whole connection, so neither is ever sent
//! — a reader drops unwanted deliveries by closing its channel. A subscription starts at the
//! beginning of the chunk holding the offset or timestamp asked for, so readers skip what they
//! have seen, and a timestamp start is only approximate: trim on the message's own time.
//! Streams drop table and array headers: what a reader needs travels in flat headers.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection};

use crate::binding::int_header;

/// Messages the broker sends ahead per subscription.
pub const PREFETCH: u16 = 1_000;
/// Credit is returned for this many deliveries at once.
const CREDIT_EVERY: u64 = 100;
/// How long a look at a stream's head or end waits for its first chunk, then for more.
const PROBE_FIRST: Duration = Duration::from_secs(2);
const PROBE_QUIET: Duration = Duration::from_millis(200);

/// The header carrying a delivery's offset in its stream.
pub const OFFSET_HEADER: &str = "x-stream-offset";
/// Set on published messages: brokers with stream filtering (RabbitMQ 3.13+) deliver to a
/// filtered reader only the chunks holding its value. Older brokers ignore it.
pub const FILTER_VALUE_HEADER: &str = "x-stream-filter-value";

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    First,
    /// The chunk holding this offset.
    Offset(i64),
    /// The first chunk written at or after this time (seconds since the epoch).
    Timestamp(i64),
}

impl Start {
    fn argument(self) -> AMQPValue {
        match self {
            Self::First => AMQPValue::LongString(LongString::from("first")),
            Self::Offset(offset) => AMQPValue::LongLongInt(offset),
            Self::Timestamp(seconds) => {
                AMQPValue::Timestamp(u64::try_from(seconds.max(0)).unwrap_or_default())
            }
        }
    }
}

/// A consumer on a stream, on a channel of its own.
pub struct Subscription {
    pub channel: Channel,
    pub consumer: lapin::Consumer,
    delivered: u64,
}

impl Subscription {
    /// Subscribes to `stream` from `start`. With `filter`, a broker that supports stream
    /// filtering skips chunks holding none of the value (unfiltered messages still come:
    /// readers check every message themselves).
    pub async fn open(
        connection: &Connection,
        stream: &str,
        start: Start,
        filter: Option<&str>,
        tag: &str,
    ) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(ShortString::from(OFFSET_HEADER), start.argument());
        if let Some(value) = filter {
            arguments.insert(
                ShortString::from("x-stream-filter"),
                AMQPValue::LongString(LongString::from(value)),
            );
            arguments.insert(
                ShortString::from("x-stream-match-unfiltered"),
                AMQPValue::Boolean(true),
            );
        }
        let consumer = channel
            .basic_consume(
                stream.into(),
                tag.into(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await?;
        Ok(Self {
            channel,
            consumer,
            delivered: 0,
        })
    }

    /// The next delivery; `None` when the consumer ended (cancelled, connection lost) or
    /// nothing arrived within `idle`.
    pub async fn next(&mut self, idle: Duration) -> Option<Result<Delivery, lapin::Error>> {
        let next = tokio::time::timeout(idle, self.consumer.next())
            .await
            .ok()??;
        if next.is_ok() {
            self.delivered += 1;
        }
        Some(next)
    }

    /// Returns credit for what was delivered, in batches: on a stream an ack removes nothing.
    pub async fn credit(&self, delivery: &Delivery) -> lapin::Result<()> {
        if self.delivered.is_multiple_of(CREDIT_EVERY) {
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await?;
        }
        Ok(())
    }

    /// Closing the channel drops unacked deliveries: nothing to nack (which a stream refuses).
    pub async fn close(self) {
        let _ = self.channel.close(200, "done reading".into()).await;
    }
}

/// A delivery's offset in its stream.
pub fn offset(delivery: &Delivery) -> Option<i64> {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| int_header(headers, OFFSET_HEADER))
}

/// The first message the stream holds (retention removes older ones), or `None` when empty.
pub async fn head(connection: &Connection, stream: &str) -> lapin::Result<Option<Delivery>> {
    let mut subscription =
        Subscription::open(connection, stream, Start::First, None, "zoom-relay-head").await?;
    let first = match subscription.next(PROBE_FIRST).await {
        Some(Ok(delivery)) => Some(delivery),
        Some(Err(error)) => return Err(error),
        None => None,
    };
    subscription.close().await;
    Ok(first)
}

/// The highest offset in the stream's last chunk, or `None` when it is empty.
pub async fn end(connection: &Connection, stream: &str) -> lapin::Result<Option<i64>> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        ShortString::from(OFFSET_HEADER),
        AMQPValue::LongString(LongString::from("last")),
    );
    let mut consumer = channel
        .basic_consume(
            stream.into(),
            "zoom-relay-end".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await?;
    let mut last = None;
    let mut wait = PROBE_FIRST;
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout(wait, consumer.next()).await {
        last = last.max(offset(&delivery));
        wait = PROBE_QUIET;
    }
    let _ = channel.close(200, "end found".into()).await;
    Ok(last)
}
