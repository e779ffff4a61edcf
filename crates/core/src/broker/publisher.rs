//! `publish()` means *stored*: persistent, `mandatory`, on a confirm-mode channel, and returns only
//! once the broker confirmed — or fails within `publish_timeout`.
//!
//! Every caller awaits its own confirm, so many publishes are in flight at once across the
//! session's channels; nothing waits for an unrelated message's round trip.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation};

use super::Broker;

/// Pause before republishing a nacked message on a fresh channel.
const NACK_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker unavailable: not connected")]
    Unavailable,
    #[error("broker did not confirm within {0:?}")]
    Timeout(Duration),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for routing key `{routing_key}`: {reply}")]
    Unroutable { routing_key: String, reply: String },
    #[error("publish failed: {0}")]
    Amqp(#[from] lapin::Error),
}

/// A message to publish. Headers are strings or integers; body and ids are borrowed.
pub struct Outgoing<'a> {
    exchange: &'a str,
    routing_key: &'a str,
    body: &'a [u8],
    message_id: Option<&'a str>,
    content_type: &'a str,
    headers: FieldTable,
}

impl<'a> Outgoing<'a> {
    pub fn new(exchange: &'a str, routing_key: &'a str, body: &'a [u8]) -> Self {
        Self {
            exchange,
            routing_key,
            body,
            message_id: None,
            content_type: "application/json",
            headers: FieldTable::default(),
        }
    }

    /// Consumers deduplicate on it after a redelivery or a retried publish.
    pub fn message_id(mut self, id: &'a str) -> Self {
        self.message_id = Some(id);
        self
    }

    pub fn header(mut self, key: &str, value: impl Into<HeaderValue>) -> Self {
        let value = match value.into() {
            HeaderValue::Text(text) => AMQPValue::LongString(LongString::from(text)),
            HeaderValue::Integer(number) => AMQPValue::LongLongInt(number),
        };
        self.headers.insert(ShortString::from(key), value);
        self
    }

    pub fn headers(mut self, headers: FieldTable) -> Self {
        // Taken as they are when there are none yet (the usual case): no copy of each entry.
        if self.headers.inner().is_empty() {
            self.headers = headers;
            return self;
        }
        for (key, value) in &headers {
            self.headers.insert(key.clone(), value.clone());
        }
        self
    }
}

pub enum HeaderValue {
    Text(String),
    Integer(i64),
}

impl From<&str> for HeaderValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for HeaderValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<i64> for HeaderValue {
    fn from(value: i64) -> Self {
        Self::Integer(value)
    }
}

#[derive(Clone)]
pub struct Publisher {
    broker: Broker,
}

impl Publisher {
    pub(super) fn new(broker: Broker) -> Self {
        Self { broker }
    }

    /// Publishes and waits for the broker's confirm. `Ok` means the broker has stored the message.
    ///
    /// An error does not prove the message is absent (a confirm can be lost with the connection):
    /// delivery is at least once, and consumers deduplicate.
    // At debug: the caller's span already names the work; one more span per message, with its
    // fields formatted and entered on every poll, cost the ingress a few µs a request at info.
    #[tracing::instrument(
        name = "publish",
        level = "debug",
        skip_all,
        fields(routing_key = message.routing_key)
    )]
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<(), PublishError> {
        let session = self.broker.session().ok_or(PublishError::Unavailable)?;
        let timeout = self.broker.settings().publish_timeout;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default();
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(message.content_type.into())
            .with_timestamp(timestamp)
            .with_headers(message.headers);
        if let Some(id) = message.message_id {
            properties = properties.with_message_id(short_message_id(id).into());
        }
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let (slot, mut channel) = session.publish_channel();
        let mut renewed = false;
        let started = tokio::time::Instant::now();
        loop {
            let remaining = timeout.saturating_sub(started.elapsed());
            let confirmed = tokio::time::timeout(remaining, async {
                channel
                    .basic_publish(
                        message.exchange.into(),
                        message.routing_key.into(),
                        options,
                        message.body,
                        properties.clone(),
                    )
                    .await?
                    .await
            })
            .await;
            return match confirmed {
                Err(_) => {
                    self.broker.report_stall();
                    Err(PublishError::Timeout(timeout))
                }
                Ok(Err(error)) => Err(PublishError::Amqp(error)),
                Ok(Ok(Confirmation::Ack(None))) => Ok(()),
                Ok(Ok(Confirmation::Ack(Some(returned)))) => Err(PublishError::Unroutable {
                    routing_key: message.routing_key.to_owned(),
                    reply: returned.reply_text.to_string(),
                }),
                Ok(Ok(Confirmation::Nack(_))) if !renewed => {
                    // A nack on a cluster can mean a channel bound to a dead leader: a fresh
                    // channel, after a short pause, sees the new one.
                    renewed = true;
                    let remaining = timeout.saturating_sub(started.elapsed());
                    let renewal = async {
                        tokio::time::sleep(NACK_PAUSE).await;
                        session.renew_channel(slot, &channel).await
                    };
                    channel = match tokio::time::timeout(remaining, renewal).await {
                        Ok(renewed) => renewed?,
                        Err(_) => return Err(PublishError::Timeout(timeout)),
                    };
                    continue;
                }
                Ok(Ok(Confirmation::Nack(_) | Confirmation::NotRequested)) => {
                    Err(PublishError::Nacked)
                }
            };
        }
    }
}

/// Message ids are AMQP short strings (255 bytes at most); a longer one (a key built from
/// untrusted identities) is replaced by its digest rather than refused or truncated into a
/// collision.
fn short_message_id(id: &str) -> String {
    if id.len() <= 200 {
        return id.to_owned();
    }
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(id.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_message_ids_become_digests_short_ones_stay() {
        assert_eq!(short_message_id("download:u==:f1"), "download:u==:f1");
        let long = format!("download:{}:f1", "u".repeat(400));
        let short = short_message_id(&long);
        assert!(short.len() <= 255 && short.starts_with("sha256:"));
        assert_ne!(short, short_message_id(&format!("{long}2")));
    }
}
