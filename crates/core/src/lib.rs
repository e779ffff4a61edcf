//! Shared core of zoom-relay: everything a component needs besides its own logic.
//!
//! - [`settings`]: the one typed configuration tree (TOML file + `ZOOM_RELAY__…` env overrides).
//! - [`telemetry`]: logging set-up (JSON in production).
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token.
//! - [`consumer`]: the one consumer loop every pipeline stage runs.
//! - [`broker`]: the supervised RabbitMQ connection, the [`broker::Topology`] (the only place
//!   exchange and queue names are spelled) and the confirming [`broker::Publisher`].
//!
//! Data enters a component from HTTP (ingress) or from a queue, and leaves through the publisher.

pub mod broker;
pub mod consumer;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use settings::Settings;
