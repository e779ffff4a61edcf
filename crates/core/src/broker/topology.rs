//! Every exchange, queue, binding and argument zoom-relay uses, and nobody else spells one.
//!
//! ```text
//!  ingress ──publish(routing key = event name)──▶ zoom.events (topic)
//!                                                   ├─ "#" ──▶ zoom.events.archive (stream, x-max-age)
//!                                                   └─ recording.completed,
//!                                                      recording.transcript_completed ──▶ zoom.stage.plan
//!
//!  zoom.stage.{plan,download,assemble,upload,cleanup}   quorum, x-delivery-limit, dead-letters to …
//!  zoom.stage.{stage}.dead                              quorum: what failed for good, with why
//!  zoom.stage.{stage}.retry.{delay}                     classic, x-message-ttl = delay, dead-letters
//!                                                       back to zoom.stage.{stage}
//! ```
//!
//! Stages hand work on through the default exchange, straight to the next stage's queue.
//!
//! [`Topology::declare`] is idempotent and runs after every (re)connect: objects are durable and
//! declared by us, never left to lapin's recovery (auto-delete and server-named objects are not
//! replayed, see docs/broker.md).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use std::time::Duration;

use crate::settings::Settings;

/// The pipeline's stages, in order. Each has a work queue, retry tiers and a dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageName {
    /// Turns a recording event into one download task per wanted file.
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

    /// Events routed from `zoom.events` into this stage's queue.
    fn event_bindings(self) -> &'static [&'static str] {
        match self {
            Self::Plan => &["recording.completed", "recording.transcript_completed"],
            _ => &[],
        }
    }
}

/// Names of the topology, under an optional namespace prefix (empty in production; unique per test).
#[derive(Debug, Clone)]
pub struct Topology {
    namespace: String,
    archive_max_age: Duration,
    retry_delays: Vec<Duration>,
    delivery_limit: u32,
}

impl Topology {
    pub fn new(settings: &Settings) -> Self {
        Self {
            namespace: settings.amqp.namespace.clone(),
            archive_max_age: settings.amqp.archive_max_age,
            retry_delays: settings.pipeline.retry_delays(),
            delivery_limit: settings.pipeline.delivery_limit,
        }
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

    /// Every queue declared, for operators' tooling and test clean-up.
    pub fn queues(&self) -> Vec<String> {
        let mut queues = vec![self.archive_stream()];
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

    /// The durable topic exchange verified Zoom events are published to, keyed by event name.
    pub fn events_exchange(&self) -> String {
        self.name("zoom.events")
    }

    /// The stream every verified event also lands in: the record replay reads.
    pub fn archive_stream(&self) -> String {
        self.name("zoom.events.archive")
    }

    /// Declares everything, idempotently. Arguments must never change for an existing name:
    /// RabbitMQ refuses a redeclaration with other arguments (PRECONDITION_FAILED).
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.events_exchange().into(),
                ExchangeKind::Topic,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;

        let mut stream_arguments = FieldTable::default();
        stream_arguments.insert(ShortString::from("x-queue-type"), string("stream"));
        stream_arguments.insert(
            ShortString::from("x-max-age"),
            string(&format!("{}s", self.archive_max_age.as_secs().max(1))),
        );
        channel
            .queue_declare(
                self.archive_stream().into(),
                QueueDeclareOptions::durable(),
                stream_arguments,
            )
            .await?;
        channel
            .queue_bind(
                self.archive_stream().into(),
                self.events_exchange().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        for stage in StageName::ALL {
            self.declare_stage(channel, stage).await?;
        }
        Ok(())
    }

    async fn declare_stage(&self, channel: &Channel, stage: StageName) -> lapin::Result<()> {
        let queue = self.stage_queue(stage);
        let dead = self.dead_letter_queue(stage);
        let mut dead_arguments = FieldTable::default();
        dead_arguments.insert(ShortString::from("x-queue-type"), string("quorum"));
        channel
            .queue_declare(
                dead.as_str().into(),
                QueueDeclareOptions::durable(),
                dead_arguments,
            )
            .await?;

        // RabbitMQ 3.10 has no default delivery limit: without one a message that crashes its
        // consumer would be redelivered forever.
        let mut arguments = FieldTable::default();
        arguments.insert(ShortString::from("x-queue-type"), string("quorum"));
        arguments.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        arguments.insert(ShortString::from("x-dead-letter-exchange"), string(""));
        arguments.insert(
            ShortString::from("x-dead-letter-routing-key"),
            string(&dead),
        );
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await?;
        for event in stage.event_bindings() {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    self.events_exchange().into(),
                    (*event).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }

        // One queue per delay: per-message TTLs expire only at the head of a queue.
        for delay in &self.retry_delays {
            let mut tier = FieldTable::default();
            tier.insert(
                ShortString::from("x-message-ttl"),
                AMQPValue::LongLongInt(delay.as_millis().min(i64::MAX as u128) as i64),
            );
            tier.insert(ShortString::from("x-dead-letter-exchange"), string(""));
            tier.insert(
                ShortString::from("x-dead-letter-routing-key"),
                string(&queue),
            );
            channel
                .queue_declare(
                    self.retry_queue(stage, *delay).into(),
                    QueueDeclareOptions::durable(),
                    tier,
                )
                .await?;
        }
        Ok(())
    }
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}
