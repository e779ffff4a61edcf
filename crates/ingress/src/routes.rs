//! HTTP handlers.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use relay_core::broker::{Broker, Outgoing, Publisher};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{Instrument, info, warn};
use zoom_api::event::Envelope;
use zoom_api::webhook::{
    SIGNATURE_HEADER, SigningKey, TIMESTAMP_HEADER, TRACKING_ID_HEADER, URL_VALIDATION_EVENT,
    Unverified,
};

use crate::AccountRef;
use crate::error::IngressError;
use crate::metrics::Metrics;

/// AMQP routing keys are short strings.
const MAX_EVENT_NAME: usize = 255;

pub struct State {
    pub keys: Vec<SigningKey<AccountRef>>,
    pub exchange: String,
    pub publisher: Publisher,
    pub broker: Broker,
    pub max_body_bytes: usize,
    pub timestamp_tolerance_secs: u64,
    pub metrics: Arc<Metrics>,
}

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/zoom/webhook")
                .route(web::post().to(webhook))
                .default_service(web::to(method_not_allowed)),
        )
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .default_service(web::to(not_found));
}

/// Verifies, then stores, then answers: 200 means the broker has the event.
pub async fn webhook(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, IngressError> {
    let span = tracing::info_span!(
        "webhook",
        account_id = tracing::field::Empty,
        event = tracing::field::Empty,
        message_id = tracing::field::Empty,
    );
    let outcome = receive(&request, payload, &state)
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    match &outcome {
        // Counted where the confirm arrived (`event_stored`): a client that hung up meanwhile
        // drops this future, and the count must still match what the broker holds.
        Ok(Received::Stored) => {}
        Ok(Received::UrlValidation(_)) => state.metrics.request("url_validation"),
        Err(error) => {
            state.metrics.request(error.code());
            // Never the body nor a header value: they may carry tokens and emails.
            warn!(error = error.code(), reason = %error, "webhook refused");
        }
    }
    outcome.map(|received| match received {
        Received::Stored => HttpResponse::Ok().json(json!({ "status": "stored" })),
        Received::UrlValidation(answer) => HttpResponse::Ok().json(answer),
    })
}

enum Received {
    Stored,
    UrlValidation(serde_json::Value),
}

async fn receive(
    request: &HttpRequest,
    payload: web::Payload,
    state: &State,
) -> Result<Received, IngressError> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let (timestamp, signature) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
    // Refuse an unsigned request before spending anything on its body.
    if timestamp.is_none() || signature.is_none() {
        return Err(zoom_api::webhook::VerifyError::MissingHeaders.into());
    }
    let declared_length = header(CONTENT_LENGTH.as_str()).and_then(|length| length.parse().ok());
    let body = read_body(payload, declared_length, state.max_body_bytes).await?;
    let verified = Unverified::new(timestamp, signature, &body).verify(
        &state.keys,
        unix_now(),
        state.timestamp_tolerance_secs,
    )?;
    let account = verified.owner();
    let span = tracing::Span::current();
    span.record("account_id", account.account_id.as_str());

    let envelope: Envelope =
        serde_json::from_slice(verified.body()).map_err(|_| IngressError::InvalidJson)?;
    if envelope.event.is_empty() || envelope.event.len() > MAX_EVENT_NAME {
        return Err(IngressError::MissingEvent);
    }
    span.record("event", envelope.event.as_str());

    if envelope.event == URL_VALIDATION_EVENT {
        let plain_token = envelope
            .plain_token()
            .ok_or(IngressError::MissingPlainToken)?;
        info!("answered endpoint.url_validation");
        return Ok(Received::UrlValidation(json!({
            "plainToken": plain_token,
            "encryptedToken": verified.answer_url_validation(plain_token),
        })));
    }

    // Zoom's tracking id names this delivery; without one, the body does.
    let message_id = match header(TRACKING_ID_HEADER) {
        Some(tracking_id) if !tracking_id.is_empty() => tracking_id.to_owned(),
        _ => format!("sha256:{}", hex::encode(Sha256::digest(verified.body()))),
    };
    span.record("message_id", message_id.as_str());
    let message = Outgoing::new(&state.exchange, &envelope.event, verified.body())
        .message_id(&message_id)
        .header("account", account.name.as_str())
        .header("account_id", account.account_id.as_str())
        .header("event", envelope.event.as_str())
        .header("event_ts", envelope.event_ts.unwrap_or_default());
    let started = Instant::now();
    state.publisher.publish(message).await?;
    state
        .metrics
        .event_stored(&envelope.event, started.elapsed().as_secs_f64());
    info!("event stored");
    Ok(Received::Stored)
}

/// Reads the raw body, refusing as soon as it would exceed `limit`: an oversized body is never
/// held whole.
async fn read_body(
    mut payload: web::Payload,
    declared_length: Option<usize>,
    limit: usize,
) -> Result<BytesMut, IngressError> {
    if declared_length.is_some_and(|length| length > limit) {
        return Err(IngressError::BodyTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared_length.unwrap_or(8 * 1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| IngressError::BodyUnreadable)?;
        if body.len() + chunk.len() > limit {
            return Err(IngressError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
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
            "message": "not connected to RabbitMQ; events are refused with 503 until it returns",
        }))
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .body(state.metrics.encode())
}

async fn not_found() -> HttpResponse {
    IngressError::NotFound.error_response()
}

async fn method_not_allowed() -> HttpResponse {
    IngressError::MethodNotAllowed.error_response()
}
