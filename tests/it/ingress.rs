//! The ingress as Zoom sees it: signed requests in, 200 only once the broker has the event.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

fn recording_completed(meeting_uuid: &str) -> String {
    json!({
        "event": "recording.completed",
        "event_ts": 1_700_000_000_123_i64,
        "payload": {
            "account_id": "acme-account-id",
            "object": { "uuid": meeting_uuid, "id": 123, "topic": "Weekly", "recording_files": [] }
        },
        "download_token": "eyJhbGciOiJIUzUxMiJ9.eyJleHAiOjF9.sig"
    })
    .to_string()
}

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    (
        status,
        body["error"].as_str().expect("error code").to_owned(),
    )
}

#[tokio::test]
async fn stores_verified_event_with_routing_key_headers_and_intact_body() {
    let mut app = TestApp::spawn().await;
    let body = recording_completed("4444AAAiAAAAAiAiAiiAii==");

    let response = app
        .post_signed_at(ACME_TOKEN, unix_now(), &body, Some("tracking-1"))
        .await;
    assert_eq!(response.status(), 200);

    let delivery = app.tap.next(WAIT).await.expect("event in the tap queue");
    assert_eq!(delivery.routing_key.as_str(), "recording.completed");
    assert_eq!(
        delivery.data,
        body.as_bytes(),
        "body must be the raw signed bytes"
    );
    let properties = &delivery.properties;
    assert_eq!(
        properties.message_id().as_ref().map(|id| id.as_str()),
        Some("tracking-1")
    );
    assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
    assert!(properties.timestamp().is_some());
    assert_eq!(
        properties.content_type().as_ref().map(|t| t.as_str()),
        Some("application/json")
    );
    assert_eq!(
        header(&delivery, "account_id"),
        Some(&AMQPValue::LongString(LongString::from("acme-account-id")))
    );
    assert_eq!(
        header(&delivery, "event"),
        Some(&AMQPValue::LongString(LongString::from(
            "recording.completed"
        )))
    );
    assert_eq!(
        header(&delivery, "event_ts"),
        Some(&AMQPValue::LongLongInt(1_700_000_000_123))
    );
    assert_eq!(
        header(&delivery, "origin"),
        Some(&AMQPValue::LongString(LongString::from("webhook")))
    );
    assert_eq!(
        header(&delivery, "meeting_uuid"),
        Some(&AMQPValue::LongString(LongString::from(
            "4444AAAiAAAAAiAiAiiAii=="
        )))
    );
    assert!(matches!(
        header(&delivery, "received_at"),
        Some(AMQPValue::LongLongInt(at)) if (at / 1000 - unix_now()).abs() < 60
    ));
}

#[tokio::test]
async fn an_accounts_own_path_accepts_its_token_and_binds_the_event_to_it() {
    let mut app = TestApp::spawn().await;
    let body = recording_completed("own-path");
    let response = app
        .post_signed_to(
            "/zoom/webhook/acme",
            ACME_PREVIOUS_TOKEN,
            unix_now(),
            &body,
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let delivery = app.tap.next(WAIT).await.expect("stored");
    assert_eq!(delivery.data, body.as_bytes());
    assert_eq!(
        header(&delivery, "account"),
        Some(&AMQPValue::LongString(LongString::from("acme")))
    );
}

#[tokio::test]
async fn a_delivery_replayed_within_the_window_is_stored_once() {
    let mut app = TestApp::spawn().await;
    let body = recording_completed("replayed");
    let at = unix_now();
    let first = app.post_signed_at(ACME_TOKEN, at, &body, None).await;
    assert_eq!(first.status(), 200);
    // The same bytes and signature again: a captured request replayed.
    let again = app.post_signed_at(ACME_TOKEN, at, &body, None).await;
    assert_eq!(again.status(), 200);
    let answer: Value = again.json().await.expect("JSON");
    assert_eq!(answer["status"], "duplicate");
    // Zoom's own retry is a new delivery (a new timestamp): stored.
    let retry = app.post_signed_at(ACME_TOKEN, at + 1, &body, None).await;
    assert_eq!(retry.status(), 200);
    let marker = recording_completed("after-replay");
    assert_eq!(app.post_signed(ACME_TOKEN, &marker).await.status(), 200);
    let mut stored = Vec::new();
    while let Some(delivery) = app.tap.next(WAIT).await {
        let done = delivery.data == marker.as_bytes();
        stored.push(delivery.data);
        if done {
            break;
        }
    }
    assert_eq!(stored.len(), 3, "the original, Zoom's retry, the marker");
}

#[tokio::test]
async fn a_slow_body_is_cut_off_at_its_deadline() {
    let app = TestApp::spawn_configured(TestOptions::default(), |settings| {
        settings.ingress.body_timeout = Duration::from_millis(500);
    })
    .await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let now = unix_now();
    let head = format!(
        "POST /zoom/webhook HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: 60000\r\nx-zm-request-timestamp: {now}\r\nx-zm-signature: v0={}\r\n\r\n{{\"event\"",
        "0".repeat(64)
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    // Nothing more is sent: the ingress answers when the deadline passes, not before the
    // sender gives up.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the connection was not closed by the deadline"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

#[tokio::test]
async fn message_id_without_tracking_id_is_the_body_digest() {
    let mut app = TestApp::spawn().await;
    let body = recording_completed("digest-meeting");
    assert_eq!(app.post_signed(ACME_TOKEN, &body).await.status(), 200);
    let delivery = app.tap.next(WAIT).await.expect("event stored");
    let id = delivery
        .properties
        .message_id()
        .clone()
        .expect("message id");
    use sha2::Digest;
    let expected = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    );
    assert_eq!(id.as_str(), expected);
}

#[tokio::test]
async fn accepts_a_vector_signed_outside_the_code_under_test() {
    let mut app = TestApp::spawn_with(TestOptions {
        // The vector's timestamp is fixed in the past.
        timestamp_tolerance_secs: 100 * 365 * 24 * 3600,
        ..TestOptions::default()
    })
    .await;
    let body = r#"{"event":"recording.completed","payload":{}}"#;
    let post = |signature: &'static str| {
        app.http
            .post(app.url("/zoom/webhook"))
            .header("x-zm-request-timestamp", "1658940994")
            .header("x-zm-signature", signature)
            .body(body)
            .send()
    };
    // python3: hmac.new(b'zoom-secret-token', b'v0:1658940994:' + body, sha256): not our secret.
    let foreign = post("v0=c8a8e9da2d6c4404a08317fe5964020702b1cfe75235b13cb70a1a75bd69a114");
    assert_eq!(
        error_code(foreign.await.expect("sent")).await,
        (401, "invalid_signature".into())
    );
    // python3: hmac.new(b'acme-current-token', b'v0:1658940994:' + body, sha256): acme's.
    let ours = post("v0=f4340bdba42e7f89fca43682c94483f6761f46b4f67a67db7e099b304b38044e");
    assert_eq!(ours.await.expect("sent").status(), 200);
    let stored = app.tap.next(WAIT).await.expect("stored");
    assert_eq!(stored.data, body.as_bytes());
}

#[tokio::test]
async fn answers_url_validation_only_when_signed_and_publishes_nothing() {
    let mut app = TestApp::spawn().await;
    let challenge = json!({
        "event": "endpoint.url_validation",
        "payload": { "plainToken": "qgg8vlvZRS6UYooatFL8Aw" },
        "event_ts": 1_654_503_849_680_i64
    })
    .to_string();

    let unsigned = app
        .http
        .post(app.url("/zoom/webhook"))
        .body(challenge.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(
        error_code(unsigned).await,
        (401, "missing_signature".into())
    );

    let response = app.post_signed(GLOBEX_TOKEN, &challenge).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON answer");
    assert_eq!(answer["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    // printf 'qgg8vlvZRS6UYooatFL8Aw' | openssl dgst -sha256 -hmac globex-token
    let expected = {
        use hmac::Mac;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(GLOBEX_TOKEN.as_bytes()).expect("key");
        mac.update(b"qgg8vlvZRS6UYooatFL8Aw");
        hex::encode(mac.finalize().into_bytes())
    };
    assert_eq!(answer["encryptedToken"], expected.as_str());

    // Nothing was published for the challenge: the next message is the event sent after it.
    let marker = recording_completed("after-validation");
    assert_eq!(app.post_signed(ACME_TOKEN, &marker).await.status(), 200);
    let first = app.tap.next(WAIT).await.expect("marker event");
    assert_eq!(first.data, marker.as_bytes());
}

#[tokio::test]
async fn each_rejection_answers_its_code_and_publishes_nothing() {
    let mut app = TestApp::spawn().await;
    let body = recording_completed("rejected");
    let now = unix_now();
    let signed = |secret: &str, ts: i64, body: &str| zoom_signature(secret, ts, body.as_bytes());

    let cases: Vec<(&str, reqwest::RequestBuilder, (u16, &str))> = vec![
        (
            "no headers",
            app.http.post(app.url("/zoom/webhook")).body(body.clone()),
            (401, "missing_signature"),
        ),
        (
            "wrong secret",
            app.http
                .post(app.url("/zoom/webhook"))
                .header("x-zm-request-timestamp", now.to_string())
                .header("x-zm-signature", signed("not-our-secret", now, &body))
                .body(body.clone()),
            (401, "invalid_signature"),
        ),
        (
            "body altered after signing",
            app.http
                .post(app.url("/zoom/webhook"))
                .header("x-zm-request-timestamp", now.to_string())
                .header("x-zm-signature", signed(ACME_TOKEN, now, &body))
                .body(format!("{body} ")),
            (401, "invalid_signature"),
        ),
        (
            "stale timestamp",
            app.http
                .post(app.url("/zoom/webhook"))
                .header("x-zm-request-timestamp", (now - 301).to_string())
                .header("x-zm-signature", signed(ACME_TOKEN, now - 301, &body))
                .body(body.clone()),
            (401, "stale_timestamp"),
        ),
        (
            "oversized body",
            {
                let big = "x".repeat(64 * 1024 + 1);
                app.http
                    .post(app.url("/zoom/webhook"))
                    .header("x-zm-request-timestamp", now.to_string())
                    .header("x-zm-signature", signed(ACME_TOKEN, now, &big))
                    .body(big)
            },
            (413, "body_too_large"),
        ),
        (
            "signed but not JSON",
            app.http
                .post(app.url("/zoom/webhook"))
                .header("x-zm-request-timestamp", now.to_string())
                .header("x-zm-signature", signed(ACME_TOKEN, now, "{not json"))
                .body("{not json"),
            (400, "invalid_json"),
        ),
        (
            "signed JSON without event",
            app.http
                .post(app.url("/zoom/webhook"))
                .header("x-zm-request-timestamp", now.to_string())
                .header(
                    "x-zm-signature",
                    signed(ACME_TOKEN, now, r#"{"payload":{}}"#),
                )
                .body(r#"{"payload":{}}"#),
            (400, "missing_event"),
        ),
        (
            "wrong method",
            app.http.get(app.url("/zoom/webhook")),
            (405, "method_not_allowed"),
        ),
        (
            "wrong path",
            app.http.post(app.url("/webhook")).body(body.clone()),
            (404, "not_found"),
        ),
        (
            "signature of the wrong form, refused before the body",
            app.http
                .post(app.url("/zoom/webhook"))
                .header("x-zm-request-timestamp", now.to_string())
                .header("x-zm-signature", "v0=not-hex")
                .body(body.clone()),
            (401, "invalid_signature"),
        ),
        (
            "an account's own path with another account's token",
            app.http
                .post(app.url("/zoom/webhook/acme"))
                .header("x-zm-request-timestamp", now.to_string())
                .header("x-zm-signature", signed(GLOBEX_TOKEN, now, &body))
                .body(body.clone()),
            (401, "invalid_signature"),
        ),
        (
            "an account that is not configured: told apart from a wrong signature by nothing",
            app.http
                .post(app.url("/zoom/webhook/initech"))
                .header("x-zm-request-timestamp", now.to_string())
                .header("x-zm-signature", signed(ACME_TOKEN, now, &body))
                .body(body.clone()),
            (401, "invalid_signature"),
        ),
        (
            "signed by globex, naming acme's account",
            app.http
                .post(app.url("/zoom/webhook"))
                .header("x-zm-request-timestamp", now.to_string())
                .header("x-zm-signature", signed(GLOBEX_TOKEN, now, &body))
                .body(body.clone()),
            (403, "account_mismatch"),
        ),
    ];
    for (name, request, expected) in cases {
        let response = request.send().await.expect("sent");
        let (status, code) = error_code(response).await;
        assert_eq!((status, code.as_str()), expected, "{name}");
    }

    let marker = recording_completed("marker");
    assert_eq!(app.post_signed(ACME_TOKEN, &marker).await.status(), 200);
    let first = app.tap.next(WAIT).await.expect("marker event");
    assert_eq!(
        first.data,
        marker.as_bytes(),
        "a rejected request reached the broker"
    );

    let metrics = app.metrics().await;
    for outcome in [
        "invalid_signature",
        "stale_timestamp",
        "body_too_large",
        "account_mismatch",
        "accepted",
    ] {
        assert!(
            metrics.contains(&format!("outcome=\"{outcome}\"")),
            "{outcome} not counted:\n{metrics}"
        );
    }
    assert!(metrics.contains("zoom_relay_ingress_events_total{event=\"recording.completed\"} 1"));
}

#[tokio::test]
async fn a_verified_event_naming_another_account_is_refused_and_not_stored() {
    let mut app = TestApp::spawn().await;
    // Signed with acme's token, naming globex: in the payload or in the object.
    let forged = [
        json!({
            "event": "recording.completed",
            "payload": { "account_id": "globex-account-id", "object": { "uuid": "globex-meeting==" } }
        }),
        json!({
            "event": "recording.completed",
            "payload": { "account_id": "acme-account-id",
                         "object": { "uuid": "globex-meeting==", "account_id": "globex-account-id" } }
        }),
    ];
    for body in forged {
        let response = app.post_signed(ACME_TOKEN, &body.to_string()).await;
        assert_eq!(
            error_code(response).await,
            (403, "account_mismatch".into()),
            "{body}"
        );
    }
    let marker = recording_completed("after-forgery");
    assert_eq!(app.post_signed(ACME_TOKEN, &marker).await.status(), 200);
    let first = app.tap.next(WAIT).await.expect("marker");
    assert_eq!(first.data, marker.as_bytes(), "a forged event was stored");
}

/// Posts `body` signed with `secret`, with a replay claim signed by `claim_secret`.
async fn post_with_claim(
    app: &TestApp,
    secret: &str,
    claim_secret: &str,
    claim: &relay_core::binding::ReplayClaim,
    body: &str,
) -> reqwest::Response {
    use relay_core::binding::replay_header;
    let timestamp = unix_now();
    let claim_signature = zoom_api::webhook::sign_message(
        &secrecy::SecretString::from(claim_secret),
        claim
            .signed_text(&timestamp.to_string(), body.as_bytes())
            .as_bytes(),
    );
    app.http
        .post(app.url("/zoom/webhook"))
        .header("content-type", "application/json")
        .header("x-zm-request-timestamp", timestamp.to_string())
        .header(
            "x-zm-signature",
            zoom_signature(secret, timestamp, body.as_bytes()),
        )
        .header(replay_header::JOB, &claim.job)
        .header(replay_header::FLAGS, claim.flags())
        .header(replay_header::SIGNATURE, claim_signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn a_replay_claim_binds_the_event_as_a_replay_only_when_signed_with_the_same_token() {
    let mut app = TestApp::spawn().await;
    let claim = relay_core::binding::ReplayClaim::new("job-42", true, false);
    // A claim to delete, signed with another account's token, on a body acme signed.
    let forged = recording_completed("forged-claim");
    let response = post_with_claim(&app, ACME_TOKEN, GLOBEX_TOKEN, &claim, &forged).await;
    assert_eq!(
        error_code(response).await,
        (401, "invalid_replay_claim".into())
    );

    let replayed = recording_completed("replayed");
    let response = post_with_claim(&app, ACME_TOKEN, ACME_TOKEN, &claim, &replayed).await;
    assert_eq!(response.status(), 200);
    let delivery = app.tap.next(WAIT).await.expect("stored");
    assert_eq!(
        delivery.data,
        replayed.as_bytes(),
        "the forged claim stored nothing"
    );
    let text = |key: &str| header(&delivery, key).cloned();
    assert_eq!(
        text("origin"),
        Some(AMQPValue::LongString(LongString::from("replay")))
    );
    assert_eq!(
        text("replay_job"),
        Some(AMQPValue::LongString(LongString::from("job-42")))
    );
    assert_eq!(text("allow_delete"), Some(AMQPValue::LongLongInt(1)));
    assert_eq!(
        text("account"),
        Some(AMQPValue::LongString(LongString::from("acme")))
    );
}

#[tokio::test]
async fn accepts_previous_and_current_secret_during_rotation() {
    let mut app = TestApp::spawn().await;
    for (secret, meeting) in [(ACME_PREVIOUS_TOKEN, "old"), (ACME_TOKEN, "new")] {
        let body = recording_completed(meeting);
        assert_eq!(
            app.post_signed(secret, &body).await.status(),
            200,
            "{secret}"
        );
        let delivery = app.tap.next(WAIT).await.expect("stored");
        assert_eq!(delivery.data, body.as_bytes());
        assert_eq!(
            header(&delivery, "account"),
            Some(&AMQPValue::LongString(LongString::from("acme")))
        );
    }
}

#[tokio::test]
async fn archive_stream_holds_every_verified_event() {
    let app = TestApp::spawn().await;
    let bodies: Vec<String> = (0..3)
        .map(|n| recording_completed(&format!("archived-{n}")))
        .collect();
    for body in &bodies {
        assert_eq!(app.post_signed(ACME_TOKEN, body).await.status(), 200);
    }

    let connection = Connection::connect(&broker_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_qos(10, BasicQosOptions::default())
        .await
        .expect("qos: streams need a prefetch");
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString("first".into()),
    );
    let mut consumer = channel
        .basic_consume(
            app.broker.topology().archive_stream().into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .expect("stream consumer");
    for body in &bodies {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("archived in time")
            .expect("stream open")
            .expect("delivery");
        assert_eq!(delivery.data, body.as_bytes());
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
}

#[tokio::test]
async fn healthz_and_readyz_answer_ok_when_connected() {
    let app = TestApp::spawn().await;
    let health = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert!(app.is_ready().await);
}
