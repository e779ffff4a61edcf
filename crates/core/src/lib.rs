//! Shared core of zoom-relay: what every component needs besides its own logic.
//!
//! - [`settings`]: the `[amqp]` and `[log]` sections.
//! - [`telemetry`]: logging set-up (JSON in production).
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token.
//! - [`broker`]: the supervised RabbitMQ connection, the [`broker::Topology`] (the only place
//!   exchange, queue and policy names are spelled), the confirming [`broker::Publisher`], and the
//!   management API.
//! - [`binding`]: the account a message acts for, carried in its headers; every header name.
//! - [`entry`]: where a Zoom event enters (webhook or WebSocket): its checks and its publish.
//! - [`consumer`]: the one consumer loop every stage runs, and the [`consumer::Task`] routes.
//! - [`failure`]: the stable failure codes operators match on.
//! - [`status`]: meeting transitions, as published to the status stream.
//! - [`metrics`]: the stage metrics every process exports.
//! - [`testing`]: a recording outbox for running handlers without a broker.
//!
//! Data enters a component from HTTP (ingress) or from a queue, and leaves through the publisher.

pub mod binding;
pub mod broker;
pub mod consumer;
pub mod entry;
pub mod failure;
pub mod metrics;
pub mod settings;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod testing;

pub use binding::{Binding, Origin};
pub use failure::{Code, StageError};
