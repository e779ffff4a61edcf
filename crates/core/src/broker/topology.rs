//! Every exchange, queue, binding, argument and policy zoom-relay uses; nobody else spells one.
//!
//! ```text
//!  ingress ──publish(routing key = event name)──▶ zoom.events (topic)
//!                                                   ├─ "#" ──▶ zoom.events.archive (stream)
//!                                                   └─ recording.* ──▶ zoom.stage.plan
//!
//!  zoom.stage.{plan,download,assemble,upload,cleanup}   quorum, dead-letters to …
//!  zoom.stage.{stage}.dead                              quorum: what failed for good, with why
//!  zoom.stage.{stage}.retry.{delay}                     quorum, x-message-ttl = delay, dead-letters
//!                                                       back to zoom.stage.{stage}, at least once
//!  zoom.status                                          stream: every meeting's transitions
//! ```
//!
//! Stages hand work on through the default exchange, straight to the next stage's queue; the
//! route of a message is its type's ([`crate::consumer::Task`]).
//!
//! [`Topology::declare`] runs after every (re)connect and never fails on a queue that exists
//! with other arguments: RabbitMQ refuses such a redeclaration (PRECONDITION_FAILED, closing the
//! channel), and the existing queue is then used as it is, after a passive check. The
//! arguments are structural and never change (type, dead-letter route, a retry tier's delay,
//! which names the tier). What an operator may change lives elsewhere: the delivery limit is
//! enforced by the consumer loop from `x-delivery-count`, and the archive's retention is a policy
//! ([`Topology::policies`]) applied through the management API, which wins over the stream's
//! creation-time `x-max-age`.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};
use serde_json::json;
use zoom_api::EventName;

use crate::settings::AmqpSettings;

/// The pipeline's stages, in order. Each has a work queue, retry tiers and a dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageName {
    /// Turns an event into one download task per wanted file.
    Plan,
    Download,
    Assemble,
    Upload,
    Cleanup,
}

impl StageName {
    pub const ALL: [StageName; 5] = [
        Self::Plan,
        Self::Download,
        Self::Assemble,
        Self::Upload,
        Self::Cleanup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::Download => "download",
            Self::Assemble => "assemble",
            Self::Upload => "upload",
            Self::Cleanup => "cleanup",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|stage| stage.as_str() == name)
    }

    /// Events routed from `zoom.events` into this stage's queue: plan takes every recording
    /// event (those without files are recorded, not fetched).
    fn event_bindings(self) -> Vec<EventName> {
        match self {
            Self::Plan => EventName::ALL
                .into_iter()
                .filter(|event| *event != EventName::EndpointUrlValidation)
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for StageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A RabbitMQ policy zoom-relay keeps in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub pattern: String,
    pub apply_to: &'static str,
    pub priority: i64,
    pub definition: serde_json::Value,
}

/// Names of the topology, under an optional namespace prefix (empty in production; unique per test).
#[derive(Debug, Clone)]
pub struct Topology {
    namespace: String,
    archive_max_age: Duration,
    retry_delays: Vec<Duration>,
}

impl Topology {
    pub fn new(amqp: &AmqpSettings, retry_delays: &[Duration]) -> Self {
        Self {
            namespace: amqp.namespace.clone(),
            archive_max_age: amqp.archive_max_age,
            retry_delays: retry_delays.to_vec(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A stage's work queue.
    pub fn stage_queue(&self, stage: StageName) -> String {
        self.name(&format!("zoom.stage.{}", stage.as_str()))
    }

    /// Where a stage's messages go when they failed for good.
    pub fn dead_letter_queue(&self, stage: StageName) -> String {
        self.name(&format!("zoom.stage.{}.dead", stage.as_str()))
    }

    /// The retry tier holding a message `delay` before returning it to its stage. Named by its
    /// delay: a changed delay is a new queue, never a conflicting redeclaration.
    pub fn retry_queue(&self, stage: StageName, delay: Duration) -> String {
        self.name(&format!(
            "zoom.stage.{}.retry.{}ms",
            stage.as_str(),
            delay.as_millis()
        ))
    }

    /// The configured retry delays, shortest first.
    pub fn retry_delays(&self) -> &[Duration] {
        &self.retry_delays
    }

    /// The durable topic exchange verified Zoom events are published to, keyed by event name.
    pub fn events_exchange(&self) -> String {
        self.name("zoom.events")
    }

    /// The stream every verified event also lands in: the record replay reads.
    pub fn archive_stream(&self) -> String {
        self.name("zoom.events.archive")
    }

    /// The stream of every meeting's state transitions, folded by `zoom-relay status`.
    pub fn status_stream(&self) -> String {
        self.name("zoom.status")
    }

    /// Every queue declared, for operators' tooling and test clean-up.
    pub fn queues(&self) -> Vec<String> {
        let mut queues = vec![self.archive_stream(), self.status_stream()];
        for stage in StageName::ALL {
            queues.push(self.stage_queue(stage));
            queues.push(self.dead_letter_queue(stage));
            for delay in &self.retry_delays {
                queues.push(self.retry_queue(stage, *delay));
            }
        }
        queues
    }

    fn name(&self, local: &str) -> String {
        format!("{}{local}", self.namespace)
    }

    /// The policies that carry the tunables; applied through the management API.
    pub fn policies(&self) -> Vec<Policy> {
        vec![Policy {
            name: self.name("zoom-relay-archive"),
            pattern: format!("^{}$", regex_escape(&self.archive_stream())),
            apply_to: "queues",
            priority: 10,
            definition: json!({ "max-age": format!("{}s", self.archive_max_age.as_secs().max(1)) }),
        }]
    }

    /// Declares everything, idempotently, on channels of `connection` (a refused declaration
    /// closes its channel).
    pub async fn declare(&self, connection: &Connection) -> lapin::Result<()> {
        let mut declarer = Declarer::open(connection).await?;
        declarer
            .channel
            .exchange_declare(
                self.events_exchange().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;

        let mut archive = queue_type("stream");
        archive.insert(
            ShortString::from("x-max-age"),
            string(&format!("{}s", self.archive_max_age.as_secs().max(1))),
        );
        declarer.ensure(&self.archive_stream(), archive).await?;
        let mut status = queue_type("stream");
        // Older history stays in the manifests at the destination.
        status.insert(ShortString::from("x-max-age"), string("30D"));
        declarer.ensure(&self.status_stream(), status).await?;
        declarer
            .bind(&self.archive_stream(), &self.events_exchange(), "#")
            .await?;
        for stage in StageName::ALL {
            self.declare_stage_with(&mut declarer, stage).await?;
        }
        declarer.close().await;
        Ok(())
    }

    /// Declares one stage's queues and bindings: what its consumer needs to exist.
    pub async fn declare_stage(
        &self,
        connection: &Connection,
        stage: StageName,
    ) -> lapin::Result<()> {
        let mut declarer = Declarer::open(connection).await?;
        self.declare_stage_with(&mut declarer, stage).await?;
        declarer.close().await;
        Ok(())
    }

    async fn declare_stage_with(
        &self,
        declarer: &mut Declarer<'_>,
        stage: StageName,
    ) -> lapin::Result<()> {
        let queue = self.stage_queue(stage);
        let dead = self.dead_letter_queue(stage);
        declarer.ensure(&dead, queue_type("quorum")).await?;
        let mut arguments = queue_type("quorum");
        arguments.insert(ShortString::from("x-dead-letter-exchange"), string(""));
        arguments.insert(
            ShortString::from("x-dead-letter-routing-key"),
            string(&dead),
        );
        declarer.ensure(&queue, arguments).await?;
        for event in stage.event_bindings() {
            declarer
                .bind(&queue, &self.events_exchange(), event.as_str())
                .await?;
        }
        // One queue per delay: per-message TTLs expire only at the head of a queue. Quorum,
        // dead-lettering at least once: a message waiting here was already acked from its
        // stage, so losing it on the hop back (a leader election, a node loss) would lose the
        // work.
        for delay in &self.retry_delays {
            let mut tier = queue_type("quorum");
            tier.insert(
                ShortString::from("x-dead-letter-strategy"),
                string("at-least-once"),
            );
            tier.insert(ShortString::from("x-overflow"), string("reject-publish"));
            tier.insert(
                ShortString::from("x-message-ttl"),
                AMQPValue::LongLongInt(delay.as_millis().min(i64::MAX as u128) as i64),
            );
            tier.insert(ShortString::from("x-dead-letter-exchange"), string(""));
            tier.insert(
                ShortString::from("x-dead-letter-routing-key"),
                string(&queue),
            );
            declarer
                .ensure(&self.retry_queue(stage, *delay), tier)
                .await?;
        }
        Ok(())
    }
}

/// Declares on one channel, opening a fresh one after a refusal (which closes it).
struct Declarer<'c> {
    connection: &'c Connection,
    channel: Channel,
}

impl<'c> Declarer<'c> {
    async fn open(connection: &'c Connection) -> lapin::Result<Self> {
        Ok(Self {
            connection,
            channel: connection.create_channel().await?,
        })
    }

    /// Declares `queue` with `arguments`; if RabbitMQ refuses because the queue exists with
    /// other arguments (an older version's, a changed setting), the existing queue is used as it
    /// is: a passive declaration checks it is there.
    async fn ensure(&mut self, queue: &str, arguments: FieldTable) -> lapin::Result<()> {
        let declared = self
            .channel
            .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
            .await;
        match declared {
            Ok(_) => Ok(()),
            Err(error) if is_precondition_failed(&error) => {
                tracing::warn!(
                    queue,
                    "the queue exists with other arguments than this version declares; using it as it is"
                );
                self.channel = self.connection.create_channel().await?;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                self.channel
                    .queue_declare(queue.into(), passive, FieldTable::default())
                    .await?;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    async fn bind(&self, queue: &str, exchange: &str, routing_key: &str) -> lapin::Result<()> {
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    async fn close(self) {
        let _ = self.channel.close(200, "topology declared".into()).await;
    }
}

fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406)
}

fn queue_type(kind: &str) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(ShortString::from("x-queue-type"), string(kind));
    arguments
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Escapes a queue name for a policy's regular expression.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        if !ch.is_ascii_alphanumeric() && ch != '_' && ch != '-' {
            escaped.push('\\');
        }
        escaped.push(ch);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(namespace: &str) -> Topology {
        let amqp = AmqpSettings {
            namespace: namespace.into(),
            archive_max_age: Duration::from_secs(86_400),
            ..AmqpSettings::default()
        };
        Topology::new(&amqp, &[Duration::from_secs(10), Duration::from_secs(60)])
    }

    #[test]
    fn names_carry_the_namespace() {
        let topology = topology("t1.");
        assert_eq!(topology.stage_queue(StageName::Plan), "t1.zoom.stage.plan");
        assert_eq!(
            topology.retry_queue(StageName::Upload, Duration::from_secs(60)),
            "t1.zoom.stage.upload.retry.60000ms"
        );
        assert_eq!(topology.queues().len(), 2 + 5 * 4);
    }

    #[test]
    fn the_archive_policy_matches_only_its_stream() {
        let policy = &topology("t1.").policies()[0];
        assert_eq!(policy.pattern, r"^t1\.zoom\.events\.archive$");
        assert_eq!(policy.definition["max-age"], "86400s");
    }

    #[test]
    fn plan_takes_every_recording_event_but_no_url_validation() {
        let events = StageName::Plan.event_bindings();
        assert!(events.contains(&EventName::RecordingCompleted));
        assert!(events.contains(&EventName::RecordingRenamed));
        assert!(!events.contains(&EventName::EndpointUrlValidation));
        assert!(StageName::Download.event_bindings().is_empty());
    }
}
