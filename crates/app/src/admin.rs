//! Every process's admin listener: `/healthz` (the process runs), `/readyz` (its broker
//! connection is usable: a load balancer or an orchestrator can act on it) and `/metrics`
//! (Prometheus text). Separate from the webhook listener, so it can stay on an internal address.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{App, HttpResponse, HttpServer, web};
use prometheus_client::registry::Registry;
use relay_core::broker::Broker;
use relay_core::shutdown::CancellationToken;
use serde_json::json;

struct State {
    broker: Broker,
    registry: Arc<Registry>,
}

pub struct Admin {
    server: actix_web::dev::Server,
    port: u16,
}

impl Admin {
    pub fn build(
        listen: SocketAddr,
        broker: Broker,
        registry: Arc<Registry>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen)?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(State { broker, registry });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics))
                .default_service(web::to(not_found))
        })
        .disable_signals()
        .workers(1)
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        Ok(Self { server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let handle = self.server.handle();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        self.server.await
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "up" }))
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    if state.broker.is_ready() {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({
            "error": "broker_unavailable",
            "message": "not connected to RabbitMQ",
        }))
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .body(relay_core::metrics::encode(&state.registry))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({ "error": "not_found", "message": "no such endpoint" }))
}
