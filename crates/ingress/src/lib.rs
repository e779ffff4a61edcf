//! zoom-relay ingress: Zoom's event-notification endpoint.
//!
//! A request enters at `POST /zoom/webhook` (any configured account's secret token) or
//! `POST /zoom/webhook/{account}` (that account's only: the HMAC work does not grow with the
//! number of accounts) ([`routes`]), and leaves either as a refusal with a JSON
//! `{"error": code}` body ([`error::IngressError`]), as the answer to Zoom's
//! `endpoint.url_validation` challenge, or as a message in RabbitMQ bound to the account whose
//! token verified it: the handler answers 200 only after the broker confirmed it stored the
//! event (exchange and archive stream: see `relay_core::broker::Topology`).
//!
//! - [`settings`]: the `[ingress]` section and what the ingress knows of an account.
//! - [`routes`]: the handlers (webhooks, `/healthz`, `/readyz`, and `/metrics` when asked).
//! - [`error`]: refusals and their stable codes.
//! - [`metrics`]: the ingress's Prometheus families.
//! - [`dedupe`]: deliveries already stored, so a replay within the window is not stored again.
//!
//! [`Ingress::build`] binds the listener (port 0 in tests) and [`Ingress::run`] serves until the
//! shutdown token is cancelled, then drains in-flight requests and their confirms.

pub mod dedupe;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod settings;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use prometheus_client::registry::Registry;
use relay_core::broker::Broker;
use relay_core::shutdown::CancellationToken;
use zoom_api::webhook::SigningKey;

pub use metrics::Metrics;
pub use settings::{IngressSettings, WebhookAccount};

use routes::Signer;

pub struct Ingress {
    server: actix_web::dev::Server,
    port: u16,
}

impl Ingress {
    /// Binds `ingress.listen` and prepares the server; nothing is served until [`Ingress::run`].
    pub fn build(
        settings: &IngressSettings,
        accounts: &[WebhookAccount],
        broker: Broker,
        metrics: Metrics,
        registry: Arc<Registry>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen)?;
        let port = listener.local_addr()?.port();
        let keys_of = |account: &WebhookAccount| -> Vec<SigningKey<Signer>> {
            account
                .secret_tokens
                .iter()
                .map(|secret| SigningKey {
                    owner: Signer {
                        name: account.name.clone(),
                        account_id: account.account_id.clone(),
                    },
                    secret: secret.clone(),
                })
                .collect()
        };
        let keys_by_account: HashMap<String, Vec<SigningKey<Signer>>> = accounts
            .iter()
            .map(|account| (account.name.clone(), keys_of(account)))
            .collect();
        let state = web::Data::new(routes::State {
            keys: accounts.iter().flat_map(keys_of).collect(),
            keys_by_account,
            exchange: broker.topology().events_exchange(),
            publisher: broker.publisher(),
            broker,
            seen: dedupe::Seen::new(),
            pending_bytes: Arc::new(tokio::sync::Semaphore::new(settings.max_pending_body_bytes)),
            settings: settings.clone(),
            metrics,
            registry,
        });
        let serve_metrics = settings.serve_metrics;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(|config| routes::configure(config, serve_metrics))
        })
        .disable_signals()
        // Covers the request head only; the body has its own deadline (ingress.body_timeout).
        .client_request_timeout(Duration::from_secs(5))
        .max_connections(settings.max_connections)
        .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1))
        .listen(listener)?;
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        Ok(Self {
            server: server.run(),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and drains in-flight requests
    /// (and so their confirms) within `ingress.shutdown_timeout`.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let handle = self.server.handle();
        let port = self.port;
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!(port, "ingress draining");
            handle.stop(true).await;
        });
        tracing::info!(port, "ingress listening");
        self.server.await
    }
}
