//! End-to-end tests: real components on port 0, the real local RabbitMQ, each test under a
//! namespace of its own. `TEST_LOG=1` shows the components' logs.

mod broker_outage;
mod helpers;
mod ingress;
mod media;
mod metadata;
mod notifications;
mod pipeline;
mod reconcile;
mod replay;
mod status;
mod stores;
mod topology;
mod user_oauth;
mod websocket;
mod zoom_client;
mod zoom_end_to_end;
