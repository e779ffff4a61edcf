//! Zoom's WebSocket event delivery: events sent by the simulator over the socket land like
//! webhook events; closes, silence and outages are recovered from, and what Zoom emitted while
//! no socket was open is found by the reconciliation pass over the gap; a wrong credential is
//! retried with back-off and a revoked token replaced; two replicas hold one socket.

use std::time::{Duration, Instant};

use relay_app::{App, Component, Settings};
use relay_core::binding::text_header;
use relay_core::shutdown::CancellationToken;
use relay_websocket::Subscription;
use secrecy::SecretString;
use serde_json::{Value, json};
use zoom_api::GrantType;
use zoom_sim::{MeetingSpec, Simulator};

use crate::helpers::*;
use crate::pipeline::{PIPELINE, TestPipeline, WAIT, assert_delivered, small};
use crate::zoom_client::point_at_simulator;

const SUBSCRIPTION: &str = "acme-event-subscription";

/// acme subscribes over a socket, with timings short enough for tests.
fn subscribe(settings: &mut Settings) {
    let websocket = &mut settings.websocket;
    websocket.heartbeat_interval = Duration::from_millis(200);
    websocket.silence_timeout = Duration::from_secs(1);
    websocket.connect_timeout = Duration::from_secs(3);
    websocket.backoff_initial = Duration::from_millis(100);
    websocket.backoff_max = Duration::from_millis(500);
    websocket.lease_ttl = Duration::from_secs(3);
    websocket.subscriptions = vec![Subscription {
        account: "acme".into(),
        subscription_id: SUBSCRIPTION.into(),
        grant_type: GrantType::ClientCredentials,
    }];
}

/// The pipeline, with the WebSocket delivery beside the ingress.
async fn start() -> TestPipeline {
    let mut components = PIPELINE.to_vec();
    components.push(Component::Websocket);
    TestPipeline::start_with(&components, subscribe).await
}

fn complete() -> MeetingSpec {
    small(MeetingSpec {
        transcript_later: false,
        segments: 1,
        ..MeetingSpec::default()
    })
}

async fn sim_post(pipeline: &TestPipeline, path: &str, body: Value) -> Value {
    let response = pipeline
        .http
        .post(format!("{}{path}", pipeline.sim))
        .json(&body)
        .send()
        .await
        .expect("sim");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

/// Zoom emits `event` for acme: how many sockets it reached.
async fn emit(pipeline: &TestPipeline, event: &Value) -> u64 {
    sim_post(
        pipeline,
        "/_sim/websocket/events",
        json!({"account": "acme", "event": event}),
    )
    .await["delivered"]
        .as_u64()
        .expect("delivered")
}

/// Waits until the simulator has accepted `connections` sockets so far and one is open.
async fn wait_for_socket(pipeline: &TestPipeline, connections: u64) {
    let open = eventually(WAIT, || async {
        let figures = pipeline.sim_get("/_sim/websocket").await;
        figures["open"] == 1 && figures["connections"].as_u64() >= Some(connections)
    })
    .await;
    assert!(
        open,
        "no socket #{connections}: {}",
        pipeline.sim_get("/_sim/websocket").await
    );
}

async fn wait_for_metric(admin: &str, series: &str, at_least: f64) {
    let reached = eventually(WAIT, || async {
        let metrics = reqwest::get(format!("{admin}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        metric_value(&metrics, series) >= at_least
    })
    .await;
    assert!(reached, "{series} never reached {at_least}");
}

fn gap_passes_done() -> &'static str {
    "zoom_relay_websocket_gap_passes_total{account=\"acme\",outcome=\"done\"}"
}

#[tokio::test]
async fn events_over_the_socket_land_like_webhook_events_bound_to_the_subscriptions_account() {
    let pipeline = start().await;
    let status = crate::status::StatusApp::start(&pipeline.settings).await;
    let namespace = pipeline.settings.amqp.namespace.clone();
    let mut tap = Tap::declare(&namespace, &topology(&pipeline.settings).events_exchange()).await;
    wait_for_socket(&pipeline, 1).await;
    let created = pipeline.create(&complete()).await;

    assert_eq!(emit(&pipeline, &created.recording_completed).await, 1);

    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);
    // Published as the ingress publishes: the event's own bytes (the frame's `content` string),
    // bound to the subscription's account, from the socket.
    let published = tap.next(WAIT).await.expect("the event was published");
    assert_eq!(
        published.data,
        created.recording_completed.to_string().into_bytes()
    );
    let headers = published.properties.headers().clone().expect("headers");
    assert_eq!(
        text_header(&headers, "origin").as_deref(),
        Some("websocket")
    );
    assert_eq!(text_header(&headers, "account").as_deref(), Some("acme"));
    let metrics = pipeline.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "zoom_relay_websocket_events_total{account=\"acme\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(&metrics, "zoom_relay_websocket_connected{account=\"acme\"}"),
        1.0
    );
    let heartbeats = eventually(WAIT, || async {
        pipeline.sim_get("/_sim/websocket").await["heartbeats"].as_u64() > Some(0)
    })
    .await;
    assert!(heartbeats, "heartbeats are sent, and answered");
    // The status page tells the socket's state, as the process serving it reports it.
    let acme_socket = || async {
        let accounts = status.json("/api/accounts").await;
        accounts["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|account| account["account"] == "acme")
            .map(|account| account["websocket"].clone())
            .unwrap_or_default()
    };
    let reported = eventually(WAIT, || async {
        let socket = acme_socket().await;
        socket["state"] == "connected" && socket["events"].as_u64() >= Some(1)
    })
    .await;
    assert!(reported, "{:#}", acme_socket().await);
    assert_eq!(acme_socket().await["subscription_id"], SUBSCRIPTION);
    delete_topology(&topology(&pipeline.settings), &[tap.queue.clone()]);
}

#[tokio::test]
async fn a_socket_closed_by_zoom_and_a_silent_socket_are_replaced_and_events_flow_again() {
    let pipeline = start().await;
    wait_for_socket(&pipeline, 1).await;

    sim_post(
        &pipeline,
        "/_sim/websocket/close",
        json!({"account": "acme"}),
    )
    .await;
    wait_for_socket(&pipeline, 2).await;

    // Open, but answering nothing: only the missing heartbeat answers tell.
    sim_post(
        &pipeline,
        "/_sim/websocket/silence",
        json!({"account": "acme"}),
    )
    .await;
    wait_for_socket(&pipeline, 3).await;
    let metrics = pipeline.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "zoom_relay_websocket_failures_total{account=\"acme\",reason=\"silent\"}"
        ) >= 1.0,
        "the silent socket was noticed"
    );
    assert!(
        metric_value(
            &metrics,
            "zoom_relay_websocket_reconnects_total{account=\"acme\"}"
        ) >= 2.0
    );

    let created = pipeline.create(&complete()).await;
    assert_eq!(emit(&pipeline, &created.recording_completed).await, 1);
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);
}

#[tokio::test]
async fn what_zoom_emitted_while_the_socket_was_down_is_found_by_the_pass_over_the_gap() {
    let pipeline = start().await;
    wait_for_socket(&pipeline, 1).await;
    // The first socket's own pass (over the time before this process held the subscription).
    wait_for_metric(&pipeline.admin, gap_passes_done(), 1.0).await;

    sim_post(&pipeline, "/_sim/websocket/outage", json!({"down": true})).await;
    wait_for_metric(
        &pipeline.admin,
        "zoom_relay_websocket_failures_total{account=\"acme\",reason=\"refused\"}",
        1.0,
    )
    .await;
    let created = pipeline.create(&complete()).await;
    assert_eq!(
        emit(&pipeline, &created.recording_completed).await,
        0,
        "no socket open: Zoom's event is lost"
    );
    sim_post(&pipeline, "/_sim/websocket/outage", json!({"down": false})).await;

    wait_for_socket(&pipeline, 2).await;
    wait_for_metric(&pipeline.admin, gap_passes_done(), 2.0).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);
}

#[tokio::test]
async fn a_wrong_credential_is_reported_and_retried_with_back_off_not_in_a_tight_loop() {
    init_test_log();
    let staging = tempfile::tempdir().expect("staging dir");
    let destination = tempfile::tempdir().expect("destination dir");
    let mut settings = crate::pipeline::pipeline_settings(staging.path(), destination.path());
    subscribe(&mut settings);
    settings.websocket.backoff_initial = Duration::from_millis(400);
    settings.websocket.backoff_max = Duration::from_secs(5);
    let simulator =
        Simulator::build(&settings.sim, relay_app::sim_accounts(&settings)).expect("simulator");
    let sim = simulator.base_url();
    let sim_shutdown = CancellationToken::new();
    tokio::spawn(simulator.run(sim_shutdown.clone()));
    point_at_simulator(&mut settings, &sim);
    // The app's secret was rotated at Zoom; this configuration still has the old one.
    settings.accounts[0].client_secret = SecretString::from("rotated-away");

    let started = Instant::now();
    let app = App::build(settings.clone(), &[Component::Websocket]).expect("websocket starts");
    let admin = format!("http://127.0.0.1:{}", app.admin_port());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    let http = reqwest::Client::new();
    // The subscription's token requests (its grant), not the API client's.
    let token_requests = || async {
        let requests: Vec<Value> = http
            .get(format!("{sim}/_sim/requests"))
            .send()
            .await
            .expect("sim")
            .json()
            .await
            .expect("json");
        requests
            .iter()
            .filter(|request| {
                request["path"] == "/oauth/token"
                    && request["query"]
                        .as_str()
                        .is_some_and(|query| query.contains("grant_type=client_credentials"))
            })
            .count()
    };
    let retried = eventually(WAIT, || async { token_requests().await >= 3 }).await;
    let elapsed = started.elapsed();
    let requests = token_requests().await;
    let failures = reqwest::get(format!("{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    shutdown.cancel();
    sim_shutdown.cancel();
    delete_topology(&topology(&settings), &[]);

    assert!(retried, "the token was asked for again");
    // Pauses of at least half of 400 ms, then of 800 ms, come before the third request.
    assert!(
        elapsed >= Duration::from_millis(550),
        "three token requests within {elapsed:?}: a tight loop"
    );
    assert!(
        requests <= 5,
        "{requests} token requests within {elapsed:?}"
    );
    assert!(
        metric_value(
            &failures,
            "zoom_relay_websocket_failures_total{account=\"acme\",reason=\"credentials\"}"
        ) >= 3.0,
        "refused credentials are reported"
    );
}

#[tokio::test]
async fn two_replicas_hold_one_socket_and_the_second_takes_over_when_the_first_stops() {
    let pipeline =
        TestPipeline::start_with(&[Component::Ingress, Component::Websocket], subscribe).await;
    wait_for_socket(&pipeline, 1).await;

    let second = App::build(pipeline.settings.clone(), &[Component::Websocket]).expect("replica");
    let second_admin = format!("http://127.0.0.1:{}", second.admin_port());
    let second_shutdown = CancellationToken::new();
    tokio::spawn(second.run(second_shutdown.clone()));
    wait_for_metric(
        &second_admin,
        "zoom_relay_websocket_standby{account=\"acme\"}",
        1.0,
    )
    .await;
    let figures = pipeline.sim_get("/_sim/websocket").await;
    assert_eq!(figures["open"], 1, "{figures}");
    assert_eq!(figures["max_concurrent"][SUBSCRIPTION], 1, "{figures}");

    // The first replica stops: it closes its socket and gives the lease back.
    pipeline.shutdown.cancel();
    wait_for_metric(
        &second_admin,
        "zoom_relay_websocket_connected{account=\"acme\"}",
        1.0,
    )
    .await;
    let figures = pipeline.sim_get("/_sim/websocket").await;
    second_shutdown.cancel();
    assert_eq!(figures["connections"], 2, "{figures}");
    assert_eq!(
        figures["max_concurrent"][SUBSCRIPTION], 1,
        "never two sockets at once: {figures}"
    );
}

#[tokio::test]
async fn a_token_zoom_no_longer_accepts_is_replaced_at_the_next_connection() {
    let pipeline = start().await;
    wait_for_socket(&pipeline, 1).await;
    // Zoom revokes every token issued so far, then closes the socket.
    let revoked = pipeline
        .http
        .post(format!("{}/_sim/faults", pipeline.sim))
        .json(&json!({"revoke_tokens": true}))
        .send()
        .await
        .expect("sim");
    assert_eq!(revoked.status(), 204);
    sim_post(
        &pipeline,
        "/_sim/websocket/close",
        json!({"account": "acme"}),
    )
    .await;

    wait_for_socket(&pipeline, 2).await;
    let figures = pipeline.sim_get("/_sim/websocket").await;
    assert!(
        figures["refused"].as_u64() >= Some(1),
        "the cached token was tried and refused first: {figures}"
    );
    let created = pipeline.create(&complete()).await;
    assert_eq!(emit(&pipeline, &created.recording_completed).await, 1);
    pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
}
