//! Outgoing notifications, received by a real HTTP server: what arrives, how it is signed, how
//! failures of the receiver are retried, and that a restarted notifier tells nothing twice.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use relay_app::{App, Component, Settings};
use relay_core::shutdown::CancellationToken;
use secrecy::SecretString;
use serde_json::Value;
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use zoom_sim::{FileFaults, MeetingSpec};

use crate::helpers::*;
use crate::pipeline::{TestPipeline, WAIT, small};

/// 32 bytes, as a Standard Webhooks secret.
const KEY: [u8; 32] = *b"zoom-relay notification test key";

fn secret() -> String {
    format!("whsec_{}", STANDARD.encode(KEY))
}

/// acme notifies `receiver`; globex notifies nobody.
fn notifying(receiver: &MockServer) -> impl FnOnce(&mut Settings) {
    let url = format!("{}/hooks", receiver.uri());
    move |settings| {
        settings.accounts[0].notification_url = Some(url);
        settings.accounts[0].notification_secret = Some(SecretString::from(secret()));
        settings.notifications.backoff = Duration::from_millis(100);
        settings.notifications.lease_ttl = Duration::from_secs(3);
    }
}

/// A notifier process of its own, stopped when dropped.
struct Notifier(CancellationToken);

impl Notifier {
    fn start(settings: &Settings) -> Self {
        let app =
            App::build(settings.clone(), &[Component::Notifications]).expect("notifier starts");
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        Self(shutdown)
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// One POST the receiver got.
struct Received {
    id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
    json: Value,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}: {}", self.id, self.timestamp, self.json)
    }
}

async fn received(receiver: &MockServer) -> Vec<Received> {
    let header = |request: &wiremock::Request, name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|request| Received {
            id: header(&request, "webhook-id"),
            timestamp: header(&request, "webhook-timestamp").parse().unwrap_or(0),
            signature: header(&request, "webhook-signature"),
            json: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
            body: request.body,
        })
        .collect()
}

/// What a receiver does with the shared key (written from the specification, not the code).
fn verifies(received: &Received) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).expect("key");
    mac.update(format!("{}.{}.", received.id, received.timestamp).as_bytes());
    mac.update(&received.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    received.signature.split(' ').any(|given| given == expected)
}

async fn wait_received(receiver: &MockServer, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
    let arrived = eventually(WAIT, || async { done(&received(receiver).await) }).await;
    let all = received(receiver).await;
    assert!(arrived, "never received what was expected; got {all:#?}");
    all
}

fn about<'a>(all: &'a [Received], kind: &str, uuid: &str) -> Vec<&'a Received> {
    all.iter()
        .filter(|r| r.json["type"] == kind && r.json["data"]["meeting_uuid"] == uuid)
        .collect()
}

fn html_mp4s(spec: MeetingSpec) -> MeetingSpec {
    let mut spec = small(spec);
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            deleted_html: true,
            ..FileFaults::default()
        },
    );
    spec
}

#[tokio::test]
async fn a_landed_meeting_and_a_failed_one_are_told_signed_the_standard_webhooks_way() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let pipeline = TestPipeline::start(notifying(&receiver)).await;
    let _notifier = Notifier::start(&pipeline.settings);
    let landed = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            topic: "Réunion « budget » 週次".into(),
            ..MeetingSpec::default()
        }))
        .await;
    let failing = pipeline
        .create(&html_mp4s(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    let elsewhere = pipeline
        .create(&small(MeetingSpec {
            account: Some("globex".into()),
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&landed.recording_completed).await;
    pipeline.send(&failing.recording_completed).await;
    pipeline
        .send_as(GLOBEX_TOKEN, &elsewhere.recording_completed)
        .await;
    let manifest = pipeline
        .wait_for_manifest(&landed.uuid, |m| m.files().count() == landed.files.len())
        .await;
    let all = wait_received(&receiver, |all| {
        !about(all, "meeting.archived", &landed.uuid).is_empty()
            && !about(all, "meeting.failed", &failing.uuid).is_empty()
    })
    .await;

    for received in &all {
        assert!(verifies(received), "signed: {received:?}");
        assert!(
            (chrono::Utc::now().timestamp() - received.timestamp).abs() < 300,
            "a fresh timestamp"
        );
        assert_eq!(received.json["data"]["account"], "acme", "acme's only");
    }
    let archived = about(&all, "meeting.archived", &landed.uuid);
    assert_eq!(archived.len(), 1, "told once");
    let data = &archived[0].json["data"];
    assert_eq!(data["manifest"], manifest.manifest_path.as_str());
    assert_eq!(data["topic"], "Réunion « budget » 週次");
    assert_eq!(data["files"], landed.files.len());
    assert_eq!(data["account_id"], pipeline.settings.accounts[0].account_id);
    let failed = about(&all, "meeting.failed", &failing.uuid);
    let data = &failed[0].json["data"];
    assert_eq!(data["stage"], "download");
    assert_eq!(data["code"], "html_instead_of_file");
    assert!(
        data["replay"]
            .as_str()
            .is_some_and(|command| command.starts_with("zoom-relay replay --from-dlq download")),
        "{data}"
    );
    let body = String::from_utf8_lossy(&failed[0].body);
    assert!(
        !body.contains("access_token") && !body.contains("download_access_token"),
        "no token in a notification: {body}"
    );
}

#[tokio::test]
async fn a_receiver_failing_for_a_while_gets_the_same_notification_until_it_takes_it() {
    let receiver = MockServer::start().await;
    // The first two deliveries meet a receiver that is down; the third is taken.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let pipeline = TestPipeline::start(notifying(&receiver)).await;
    let _notifier = Notifier::start(&pipeline.settings);
    let created = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&created.recording_completed).await;
    let all = wait_received(&receiver, |all| all.len() >= 3).await;
    let ids: std::collections::BTreeSet<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        1,
        "one notification, delivered three times: {all:#?}"
    );
    assert!(all.iter().all(verifies), "each attempt signed afresh");
    assert!(
        eventually(WAIT, || pipeline.quiet()).await,
        "the pipeline is not held by the receiver"
    );
}

#[tokio::test]
async fn a_restarted_notifier_resumes_after_what_it_told() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let pipeline = TestPipeline::start(notifying(&receiver)).await;
    let first = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    let notifier = Notifier::start(&pipeline.settings);
    pipeline.send(&first.recording_completed).await;
    wait_received(&receiver, |all| {
        !about(all, "meeting.archived", &first.uuid).is_empty()
    })
    .await;
    drop(notifier);

    // While no notifier runs, another meeting lands; the next notifier tells it, and only it.
    let second = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&second.recording_completed).await;
    pipeline
        .wait_for_manifest(&second.uuid, |m| m.files().count() == second.files.len())
        .await;
    let _restarted = Notifier::start(&pipeline.settings);
    let all = wait_received(&receiver, |all| {
        !about(all, "meeting.archived", &second.uuid).is_empty()
    })
    .await;
    // At least once, with one id: a duplicate upload of the first meeting read only by the
    // restarted notifier is told again under the same id, which a receiver drops.
    let ids = |uuid: &str| {
        about(&all, "meeting.archived", uuid)
            .iter()
            .map(|r| r.id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    assert_eq!(
        ids(&first.uuid),
        1,
        "the first meeting is one piece of news: {all:#?}"
    );
    assert_eq!(ids(&second.uuid), 1);
}
