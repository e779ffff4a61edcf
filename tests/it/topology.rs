//! What operators change, and what older versions left behind, never takes the relay down.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};

use crate::helpers::*;

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Declares queues the way an earlier version did: the delivery limit and the archive's
/// retention as queue arguments, fixed at creation.
async fn declare_as_an_older_version(namespace: &str) {
    let connection = Connection::connect(&broker_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let mut stream = FieldTable::default();
    stream.insert(ShortString::from("x-queue-type"), text("stream"));
    stream.insert(ShortString::from("x-max-age"), text("604800s"));
    channel
        .queue_declare(
            format!("{namespace}zoom.events.archive").into(),
            QueueDeclareOptions::durable(),
            stream,
        )
        .await
        .expect("archive");
    let mut plan = FieldTable::default();
    plan.insert(ShortString::from("x-queue-type"), text("quorum"));
    plan.insert(
        ShortString::from("x-delivery-limit"),
        AMQPValue::LongLongInt(20),
    );
    plan.insert(ShortString::from("x-dead-letter-exchange"), text(""));
    plan.insert(
        ShortString::from("x-dead-letter-routing-key"),
        text(&format!("{namespace}zoom.stage.plan.dead")),
    );
    channel
        .queue_declare(
            format!("{namespace}zoom.stage.plan").into(),
            QueueDeclareOptions::durable(),
            plan,
        )
        .await
        .expect("plan queue");
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn changed_tunables_and_an_older_versions_queues_keep_the_ingress_answering() {
    let namespace = unique_namespace();
    declare_as_an_older_version(&namespace).await;
    let mut app = TestApp::spawn_configured(
        TestOptions {
            namespace: Some(namespace.clone()),
            ..TestOptions::default()
        },
        |settings| {
            settings.pipeline.delivery_limit = 7;
            settings.amqp.archive_max_age = Duration::from_secs(86_400);
        },
    )
    .await;
    let body = json!({
        "event": "recording.completed",
        "payload": { "account_id": "acme-account-id", "object": { "uuid": "after-upgrade" } }
    })
    .to_string();
    let response = app.post_signed(ACME_TOKEN, &body).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let stored = app.tap.next(Duration::from_secs(10)).await.expect("stored");
    assert_eq!(stored.data, body.as_bytes());

    // The changed retention reaches the existing stream as a policy, which wins over the
    // argument it was created with.
    let policy_url = format!(
        "http://127.0.0.1:15672/api/policies/%2F/{}",
        format!("{namespace}zoom-relay-archive").replace('.', "%2E")
    );
    let applied = eventually(Duration::from_secs(15), || async {
        let Ok(response) = app
            .http
            .get(&policy_url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await
        else {
            return false;
        };
        response
            .json::<Value>()
            .await
            .is_ok_and(|policy| policy["definition"]["max-age"] == "86400s")
    })
    .await;
    assert!(applied, "the archive's retention policy was not applied");
    let _ = app
        .http
        .delete(&policy_url)
        .basic_auth("guest", Some("guest"))
        .send()
        .await;
    // Nothing of the plan queue's old arguments blocks the stages either: the topology is
    // declared (passively where it exists) on every connection.
    assert!(app.broker.is_ready());
}
