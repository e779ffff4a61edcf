//! zoom-relay's status: what happened to every meeting, how every account fares, what waits
//! where — as a web page, a JSON API, Prometheus series and terminal output (docs/status.md).
//!
//! Data enters from two RabbitMQ streams and leaves through HTTP, `/metrics` and stdout:
//!
//! ```text
//!  stages, consumer loop ─Transition─┐                         ┌─▶ server: / and /api/… (page, JSON)
//!  processes with Zoom ─AccountReport┼▶ zoom.status ──┐         ├─▶ metrics: zoom_relay_queue_… (Prometheus)
//!  reconcile ─ReconcileReport────────┘                ├▶ reader ─▶ fold (View) ─┤
//!  ingress ─every event─▶ zoom.events.archive ────────┘         └─▶ cli: --summary, --meeting, --json
//!  RabbitMQ management API ─queue figures─▶ server's poller ─────┘
//! ```
//!
//! - [`machine`]: one meeting's documented, guarded state machine.
//! - [`fold`]: the [`fold::View`]: every meeting and account, and the queries.
//! - [`reader`]: the stream consumers (own connection, offsets, resubscription).
//! - [`state`]: what one status process holds, shared by the readers, the server and metrics.
//! - [`server`]: the component: listener, page, JSON API, queue poller.
//! - [`page`]: the HTML; [`words`]: the plain sentences, advice and replay commands.
//! - [`api`]: the JSON types, stable field names.
//! - [`metrics`]: the Status series of docs/metrics.md.
//! - [`report`]: the account reports every process holding Zoom clients publishes.
//! - [`cli`]: `zoom-relay status --summary | --meeting UUID [--json]`.
//! - [`settings`]: the `[status]` section.
//!
//! No second datastore: the stream is the state (30 days, a RabbitMQ stream replicated like the
//! queues), and every reader folds it the same way. Older history is in the manifests.

pub mod api;
pub mod cli;
pub mod fold;
pub mod machine;
pub mod metrics;
pub mod page;
pub mod reader;
pub mod report;
pub mod server;
pub mod settings;
pub mod state;
pub mod words;

pub use settings::StatusSettings;
pub use state::StatusState;
