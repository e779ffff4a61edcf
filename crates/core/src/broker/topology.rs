//! Every exchange, queue, binding and argument zoom-relay uses, and nobody else spells one.
//!
//! ```text
//!  ingress ──publish(routing key = event name)──▶ zoom.events (topic)
//!                                                   ├─ "#" ──▶ zoom.events.archive (stream, x-max-age)
//!                                                   └─ stage bindings (see `Stage`)
//! ```
//!
//! [`Topology::declare`] is idempotent and runs after every (re)connect: objects are durable and
//! declared by us, never left to lapin's recovery (auto-delete and server-named objects are not
//! replayed, see docs/broker.md).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::settings::AmqpSettings;

/// Names of the topology, under an optional namespace prefix (empty in production; unique per test).
#[derive(Debug, Clone)]
pub struct Topology {
    namespace: String,
    archive_max_age: std::time::Duration,
}

impl Topology {
    pub fn new(settings: &AmqpSettings) -> Self {
        Self {
            namespace: settings.namespace.clone(),
            archive_max_age: settings.archive_max_age,
        }
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
        Ok(())
    }
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}
