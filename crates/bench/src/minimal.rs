//! The essential work of the ingress and nothing else: actix-web, the signature checked
//! (headers' form and freshness, then HMAC-SHA256 over the raw body), a persistent `mandatory`
//! publish on one of `channels` confirm-mode channels, and 200 once the broker confirmed. No
//! parsing, no headers on the message, no metrics, no logs: what the ingress is compared with.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use secrecy::SecretString;
use zoom_api::webhook::{SIGNATURE_HEADER, SignedHeaders, SigningKey, TIMESTAMP_HEADER};

struct State {
    keys: Vec<SigningKey<()>>,
    channels: Vec<Channel>,
    next: AtomicUsize,
    exchange: String,
    routing_key: String,
}

pub async fn serve(
    listen: &str,
    url: &str,
    secret: String,
    exchange: String,
    routing_key: String,
    channels: usize,
) -> anyhow::Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let mut opened = Vec::with_capacity(channels);
    for _ in 0..channels.max(1) {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        opened.push(channel);
    }
    let state = web::Data::from(Arc::new(State {
        keys: vec![SigningKey {
            owner: (),
            secret: SecretString::from(secret),
        }],
        channels: opened,
        next: AtomicUsize::new(0),
        exchange,
        routing_key,
    }));
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/zoom/webhook", web::post().to(webhook))
            .default_service(web::to(HttpResponse::Ok))
    })
    .bind(listen)?
    .run()
    .await?;
    Ok(())
}

async fn webhook(request: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default();
    let verified =
        SignedHeaders::parse(header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER), now, 300)
            .and_then(|signed| signed.verify(&body, &state.keys).map(|_| ()));
    if verified.is_err() {
        return HttpResponse::Unauthorized().finish();
    }
    let index = state.next.fetch_add(1, Ordering::Relaxed) % state.channels.len();
    let confirmed = async {
        state.channels[index]
            .basic_publish(
                state.exchange.as_str().into(),
                state.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await
    }
    .await;
    match confirmed {
        Ok(confirmation) if confirmation.is_ack() => HttpResponse::Ok().finish(),
        _ => HttpResponse::ServiceUnavailable().finish(),
    }
}
