//! HTTP handlers.
//!
//! A request is refused as early and as cheaply as possible: the signature headers' form and the
//! timestamp's freshness before the body is read; the body's size as it arrives (never presized
//! from `Content-Length`) and its arrival within `ingress.body_timeout`; then one HMAC per
//! candidate token — one account's tokens on `/zoom/webhook/{account}`, every account's on the
//! shared path — and only then any parsing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::StreamExt;
use prometheus_client::registry::Registry;
use relay_core::binding::{Binding, Origin, ReplayClaim, replay_header};
use relay_core::broker::{Broker, Publisher};
use relay_core::entry::Checked;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, debug, info, warn};
use zoom_api::EventName;
use zoom_api::webhook::{
    SIGNATURE_HEADER, SignedHeaders, SigningKey, TIMESTAMP_HEADER, TRACKING_ID_HEADER,
};

use crate::dedupe::Seen;
use crate::error::IngressError;
use crate::metrics::Metrics;
use crate::settings::IngressSettings;

/// Longer tracking ids are replaced by the body's digest (message ids are AMQP short strings).
const MAX_TRACKING_ID: usize = 128;

/// Which configured account a key belongs to.
#[derive(Debug, Clone)]
pub struct Signer {
    pub name: String,
    pub account_id: String,
}

pub struct State {
    /// Every account's keys, for the shared path.
    pub keys: Vec<SigningKey<Signer>>,
    /// Each account's own keys, for its own path.
    pub keys_by_account: HashMap<String, Vec<SigningKey<Signer>>>,
    pub exchange: String,
    pub publisher: Publisher,
    pub broker: Broker,
    pub settings: IngressSettings,
    pub metrics: Metrics,
    pub seen: Seen,
    /// Bytes of bodies held now, over every request (`ingress.max_pending_body_bytes`).
    pub pending_bytes: Arc<Semaphore>,
    /// The process's registry, for `/metrics` when `ingress.serve_metrics` is on.
    pub registry: Arc<Registry>,
}

pub fn configure(config: &mut web::ServiceConfig, serve_metrics: bool) {
    config
        .service(
            web::resource("/zoom/webhook")
                .route(web::post().to(shared_webhook))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/zoom/webhook/{account}")
                .route(web::post().to(account_webhook))
                .default_service(web::to(method_not_allowed)),
        )
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
    if serve_metrics {
        config.route("/metrics", web::get().to(metrics));
    }
    config.default_service(web::to(not_found));
}

async fn shared_webhook(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, IngressError> {
    webhook(request, payload, &state, &state.keys).await
}

async fn account_webhook(
    request: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, IngressError> {
    // An unknown name has no keys: refused like a wrong signature, so the answer does not tell
    // which account names exist.
    let keys = state
        .keys_by_account
        .get(path.as_str())
        .map(Vec::as_slice)
        .unwrap_or_default();
    webhook(request, payload, &state, keys).await
}

/// Verifies, then stores, then answers: 200 means the broker has the event.
async fn webhook(
    request: HttpRequest,
    payload: web::Payload,
    state: &State,
    keys: &[SigningKey<Signer>],
) -> Result<HttpResponse, IngressError> {
    let span = tracing::info_span!(
        "webhook",
        account = tracing::field::Empty,
        account_id = tracing::field::Empty,
        event = tracing::field::Empty,
        meeting_uuid = tracing::field::Empty,
        message_id = tracing::field::Empty,
        replay_job = tracing::field::Empty,
    );
    let outcome = receive(&request, payload, state, keys)
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    match &outcome {
        // Counted where the confirm arrived (`event_stored`): a client that hung up meanwhile
        // drops this future, and the count must still match what the broker holds.
        Ok(Received::Stored) => {}
        Ok(Received::Duplicate) => state.metrics.request("duplicate"),
        Ok(Received::UrlValidation(_)) => state.metrics.request("url_validation"),
        Err(error) => {
            state.metrics.request(error.code());
            // Never the body nor a header value: they may carry tokens and emails.
            warn!(error = error.code(), reason = %error, "webhook refused");
        }
    }
    outcome.map(|received| match received {
        Received::Stored => HttpResponse::Ok().json(json!({ "status": "stored" })),
        Received::Duplicate => HttpResponse::Ok().json(json!({ "status": "duplicate" })),
        Received::UrlValidation(answer) => HttpResponse::Ok().json(answer),
    })
}

enum Received {
    Stored,
    /// This exact delivery was stored already, within the timestamp window.
    Duplicate,
    UrlValidation(serde_json::Value),
}

async fn receive(
    request: &HttpRequest,
    payload: web::Payload,
    state: &State,
    keys: &[SigningKey<Signer>],
) -> Result<Received, IngressError> {
    let header_value = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let settings = &state.settings;
    // Refuse a malformed, unsigned or stale request before spending anything on its body.
    let signed = SignedHeaders::parse(
        header_value(TIMESTAMP_HEADER),
        header_value(SIGNATURE_HEADER),
        unix_now(),
        settings.timestamp_tolerance_secs,
    )?;
    let declared_length =
        header_value(CONTENT_LENGTH.as_str()).and_then(|length| length.parse().ok());
    // Held until the request is answered: the bytes count against the shared budget.
    let (body, _held) = tokio::time::timeout(
        settings.body_timeout,
        read_body(
            payload,
            declared_length,
            settings.max_body_bytes,
            &state.pending_bytes,
        ),
    )
    .await
    .map_err(|_| IngressError::BodyTimeout(settings.body_timeout))??;
    let verified = signed.verify(&body, keys)?;
    let signer = verified.owner();
    let span = tracing::Span::current();
    record_fields(
        &span,
        [
            ("account", signer.name.as_str()),
            ("account_id", signer.account_id.as_str()),
        ],
    );

    // Signed by one account, it may act only for that account.
    let checked = Checked::parse(verified.body(), &signer.account_id)?;
    let envelope = &checked.envelope;
    span.record("event", envelope.event.as_str());

    // A replay's claim (its job; may it delete) counts only when the same token signed it.
    let replay = ReplayClaim::from_request(
        header_value(replay_header::JOB),
        header_value(replay_header::FLAGS),
        header_value(replay_header::SIGNATURE),
        signed.timestamp(),
        verified.body(),
        |text, signature| verified.same_key_signed(text, signature),
    )?;

    if envelope.event == EventName::EndpointUrlValidation.as_str() {
        let plain_token = envelope
            .plain_token()
            .ok_or(IngressError::MissingPlainToken)?;
        info!("answered endpoint.url_validation");
        return Ok(Received::UrlValidation(json!({
            "plainToken": plain_token,
            "encryptedToken": verified.answer_url_validation(plain_token),
        })));
    }
    if state.seen.contains(signed.digest()) {
        info!("a delivery stored before, replayed within the window: not stored again");
        return Ok(Received::Duplicate);
    }

    // Zoom's tracking id names this delivery; without one, the body does.
    let message_id = match header_value(TRACKING_ID_HEADER) {
        Some(tracking_id) if !tracking_id.is_empty() && tracking_id.len() <= MAX_TRACKING_ID => {
            tracking_id.to_owned()
        }
        _ => checked.digest_id(),
    };
    record_fields(
        &span,
        [
            ("message_id", message_id.as_str()),
            ("meeting_uuid", checked.meeting_uuid()),
        ],
    );
    let mut binding = Binding::new(&signer.name, &signer.account_id, Origin::Webhook);
    if let Some(claim) = &replay {
        span.record("replay_job", claim.job.as_str());
        claim.apply(&mut binding);
    }
    let started = Instant::now();
    checked
        .publish(&state.publisher, &state.exchange, &binding, &message_id)
        .await?;
    let acceptable_until = signed.sent_at() + settings.timestamp_tolerance_secs as i64;
    let valid_for = (acceptable_until - unix_now()).clamp(0, i64::MAX) as u64;
    state
        .seen
        .insert(*signed.digest(), Duration::from_secs(valid_for));
    state
        .metrics
        .event_stored(&envelope.event, started.elapsed().as_secs_f64());
    // Not at info: at full rate a line per event costs the ingress a third of its CPU (the JSON
    // formatter re-reads every span's fields for each line; docs/benchmarks.md), and says no
    // more than `zoom_relay_ingress_events_total` and the archive stream, which holds each event
    // with its account. Refusals stay at warn.
    debug!("event stored");
    Ok(Received::Stored)
}

/// Reads the raw body, refusing as soon as it would exceed `limit`: an oversized body is never
/// held whole, and memory grows with what arrived, not with what `Content-Length` claims. Every
/// byte held is taken from the shared `budget` first; the permit returned gives them back.
async fn read_body(
    mut payload: web::Payload,
    declared_length: Option<usize>,
    limit: usize,
    budget: &Arc<Semaphore>,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), IngressError> {
    if declared_length.is_some_and(|length| length > limit) {
        return Err(IngressError::BodyTooLarge { limit });
    }
    // Chunks as they arrived, joined at the end into a buffer of the exact size: a growing
    // buffer would hold up to twice what arrived.
    let mut chunks = Vec::new();
    let mut received = 0usize;
    let mut held: Option<OwnedSemaphorePermit> = None;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| IngressError::BodyUnreadable)?;
        if received + chunk.len() > limit {
            return Err(IngressError::BodyTooLarge { limit });
        }
        let bytes = u32::try_from(chunk.len()).map_err(|_| IngressError::BodyTooLarge { limit })?;
        let more = budget
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| IngressError::Busy)?;
        match held.as_mut() {
            Some(held) => held.merge(more),
            None => held = Some(more),
        }
        received += chunk.len();
        // A copy of its own: a chunk shares the (larger) read buffer it was cut from, which
        // would stay alive, uncounted, as long as the chunk does.
        chunks.push(chunk.to_vec());
    }
    // One chunk (the usual delivery) is the body as it is; several are joined once, exactly.
    let body = if chunks.len() == 1 {
        chunks.swap_remove(0)
    } else {
        chunks.concat()
    };
    Ok((body, held))
}

/// Records several of the span's fields in one call. The JSON log format re-reads and rewrites
/// a span's recorded fields on every `record`, each request, whether or not a line is written:
/// one call for fields known together instead of one call each (docs/benchmarks.md).
fn record_fields<const N: usize>(span: &tracing::Span, values: [(&str, &str); N]) {
    let Some(metadata) = span.metadata() else {
        return;
    };
    let fields = metadata.fields();
    let named = values.map(|(name, value)| (fields.field(name), value));
    let pairs = named.each_ref().map(|(field, value)| {
        field
            .as_ref()
            .map(|field| (field, Some(value as &dyn tracing::Value)))
    });
    // Every name is the webhook span's own; a misspelt one is skipped rather than recorded.
    if let Some(pairs) = pairs.iter().copied().collect::<Option<Vec<_>>>()
        && let Ok(pairs) = <[_; N]>::try_from(pairs)
    {
        span.record_all(&fields.value_set(&pairs));
    }
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
        .body(relay_core::metrics::encode(&state.registry))
}

async fn not_found() -> HttpResponse {
    IngressError::NotFound.error_response()
}

async fn method_not_allowed() -> HttpResponse {
    IngressError::MethodNotAllowed.error_response()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::record_fields;

    /// What the JSON log format wrote.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn fields_recorded_together_reach_a_refusal_line() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "webhook",
                account = tracing::field::Empty,
                account_id = tracing::field::Empty,
                message_id = tracing::field::Empty,
                meeting_uuid = tracing::field::Empty,
            );
            let _entered = span.enter();
            record_fields(&span, [("account", "acme"), ("account_id", "A1")]);
            record_fields(&span, [("message_id", "m1"), ("meeting_uuid", "u1==")]);
            tracing::warn!("webhook refused");
        });
        let written = lines.0.lock().expect("lines").clone();
        let text = String::from_utf8(written).expect("utf-8");
        for field in [
            r#""account":"acme""#,
            r#""account_id":"A1""#,
            r#""message_id":"m1""#,
            r#""meeting_uuid":"u1==""#,
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
    }
}
