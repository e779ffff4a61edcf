//! zoom-relay ingress: Zoom's event-notification endpoint.
//!
//! A request enters at `POST /zoom/webhook` ([`routes::webhook`]) and leaves either as a refusal
//! with a JSON `{"error": code}` body ([`error::IngressError`]), as the answer to Zoom's
//! `endpoint.url_validation` challenge, or as a message in RabbitMQ: the handler answers 200 only
//! after the broker confirmed it stored the event (exchange and archive stream: see
//! `relay_core::broker::Topology`).
//!
//! - [`routes`]: the handlers (webhook, `/healthz`, `/readyz`, `/metrics`).
//! - [`error`]: refusals and their stable codes.
//! - [`metrics`]: the Prometheus registry of this instance.
//!
//! [`Ingress::build`] binds the listener (port 0 in tests) and [`Ingress::run`] serves until the
//! shutdown token is cancelled, then drains in-flight requests and their confirms.

pub mod error;
pub mod metrics;
pub mod routes;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use relay_core::Settings;
use relay_core::broker::Broker;
use relay_core::shutdown::CancellationToken;
use zoom_api::webhook::SigningKey;

/// Which configured Zoom app signed a request.
#[derive(Debug, Clone)]
pub struct AccountRef {
    pub name: String,
    pub account_id: String,
}

pub struct Ingress {
    server: actix_web::dev::Server,
    port: u16,
}

impl Ingress {
    /// Binds `ingress.listen` and prepares the server; nothing is served until [`Ingress::run`].
    pub fn build(settings: &Settings, broker: Broker) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.ingress.listen)?;
        let port = listener.local_addr()?.port();
        let keys: Vec<SigningKey<AccountRef>> = settings
            .accounts
            .iter()
            .flat_map(|account| {
                account.secret_tokens.iter().map(|secret| SigningKey {
                    owner: AccountRef {
                        name: account.name.clone(),
                        account_id: account.account_id.clone(),
                    },
                    secret: secret.clone(),
                })
            })
            .collect();
        let metrics = Arc::new(metrics::Metrics::new());
        let state = web::Data::new(routes::State {
            keys,
            exchange: broker.topology().events_exchange(),
            publisher: broker.publisher(),
            broker,
            max_body_bytes: settings.ingress.max_body_bytes,
            timestamp_tolerance_secs: settings.ingress.timestamp_tolerance_secs,
            metrics,
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
        })
        .disable_signals()
        .shutdown_timeout(settings.ingress.shutdown_timeout.as_secs().max(1))
        .listen(listener)?;
        if let Some(workers) = settings.ingress.workers {
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
