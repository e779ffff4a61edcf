//! The test harness: a real ingress on port 0, a real RabbitMQ under a namespace of its own, a tap
//! queue that sees everything published, and a signer independent of the code under test.

pub mod proxy;

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use relay_app::{App, Component, Settings};
use relay_core::broker::{Broker, Topology};
use relay_core::shutdown::CancellationToken;
use sha2::Sha256;

pub const ACME_TOKEN: &str = "acme-current-token";
pub const ACME_PREVIOUS_TOKEN: &str = "acme-previous-token";
pub const GLOBEX_TOKEN: &str = "globex-token";

/// The broker the tests share; `TEST_AMQP_URL` points elsewhere.
pub fn broker_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn broker_address() -> std::net::SocketAddr {
    "127.0.0.1:5672".parse().expect("address")
}

pub fn init_test_log() {
    if std::env::var_os("TEST_LOG").is_some() {
        relay_core::telemetry::init(&relay_core::settings::LogSettings::default());
    }
}

/// `v0=` + hex HMAC-SHA256 over `v0:{timestamp}:{body}`, written here from Zoom's documentation,
/// not taken from the code under test.
pub fn zoom_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Polls `condition` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn unique_namespace() -> String {
    format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub struct TestOptions {
    /// A namespace of the test's own; a fresh one when absent.
    pub namespace: Option<String>,
    pub amqp_url: String,
    pub timestamp_tolerance_secs: u64,
    pub max_body_bytes: usize,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            amqp_url: broker_url(),
            timestamp_tolerance_secs: 300,
            max_body_bytes: 64 * 1024,
        }
    }
}

pub fn test_settings(namespace: &str, options: &TestOptions) -> Settings {
    Settings::from_toml(&format!(
        r#"
        [amqp]
        url = "{url}"
        namespace = "{namespace}"
        reconnect_max_backoff = "500ms"
        connect_timeout = "3s"
        heartbeat = "5s"
        [admin]
        listen = "127.0.0.1:0"
        [status]
        listen = "127.0.0.1:0"
        [ingress]
        listen = "127.0.0.1:0"
        workers = 1
        max_body_bytes = {max_body}
        timestamp_tolerance_secs = {tolerance}
        shutdown_timeout = "5s"
        [[accounts]]
        name = "acme"
        account_id = "acme-account-id"
        client_id = "acme-client"
        client_secret = "acme-client-secret"
        secret_tokens = ["{ACME_TOKEN}", "{ACME_PREVIOUS_TOKEN}"]
        [[accounts]]
        name = "globex"
        account_id = "globex-account-id"
        client_id = "globex-client"
        client_secret = "globex-client-secret"
        secret_tokens = ["{GLOBEX_TOKEN}"]
        "#,
        url = options.amqp_url,
        max_body = options.max_body_bytes,
        tolerance = options.timestamp_tolerance_secs,
    ))
    .expect("test settings")
}

/// The topology a test's settings name: for looking queues up and cleaning them away.
pub fn topology(settings: &Settings) -> Topology {
    Topology::new(&settings.amqp, &settings.pipeline.retry_delays())
}

/// A running ingress with its broker connection and a tap on everything it publishes.
pub struct TestApp {
    pub address: String,
    pub admin: String,
    pub broker: Broker,
    pub http: reqwest::Client,
    pub tap: Tap,
    shutdown: CancellationToken,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    pub async fn spawn_with(options: TestOptions) -> Self {
        Self::spawn_configured(options, |_| {}).await
    }

    pub async fn spawn_configured(
        options: TestOptions,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        init_test_log();
        let namespace = options.namespace.clone().unwrap_or_else(unique_namespace);
        let mut settings = test_settings(&namespace, &options);
        configure(&mut settings);
        let app = App::build(settings.clone(), &[Component::Ingress]).expect("ingress builds");
        let broker = app.broker().clone();
        assert!(
            broker.wait_ready(Duration::from_secs(15)).await,
            "broker not ready"
        );
        let address = format!(
            "http://127.0.0.1:{}",
            app.ingress_port().expect("ingress port")
        );
        let admin = format!("http://127.0.0.1:{}", app.admin_port());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        let tap = Tap::declare(&namespace, &broker.topology().events_exchange()).await;
        Self {
            address,
            admin,
            broker,
            http: reqwest::Client::new(),
            tap,
            shutdown,
        }
    }

    /// `/metrics` of the process, from its admin listener.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Posts `body` signed with `secret` as Zoom would, now.
    pub async fn post_signed(&self, secret: &str, body: &str) -> reqwest::Response {
        self.post_signed_at(secret, unix_now(), body, None).await
    }

    pub async fn post_signed_at(
        &self,
        secret: &str,
        timestamp: i64,
        body: &str,
        tracking_id: Option<&str>,
    ) -> reqwest::Response {
        self.post_signed_to("/zoom/webhook", secret, timestamp, body, tracking_id)
            .await
    }

    pub async fn post_signed_to(
        &self,
        path: &str,
        secret: &str,
        timestamp: i64,
        body: &str,
        tracking_id: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("x-zm-request-timestamp", timestamp.to_string())
            .header(
                "x-zm-signature",
                zoom_signature(secret, timestamp, body.as_bytes()),
            )
            .body(body.to_owned());
        if let Some(id) = tracking_id {
            request = request.header("x-zm-trackingid", id);
        }
        request.send().await.expect("request sent")
    }

    pub async fn is_ready(&self) -> bool {
        matches!(
            self.http.get(self.url("/readyz")).send().await,
            Ok(response) if response.status() == 200
        )
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        delete_topology(
            self.broker.topology(),
            std::slice::from_ref(&self.tap.queue),
        );
    }
}

/// Counts a metric's value in a Prometheus text exposition (0 when absent).
pub fn metric_value(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(name_and_labels)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Deletes a test's queues (and `extra` ones), exchange and policies. Drop cannot await; a thread
/// of its own runs the clean-up even while a test panics.
pub fn delete_topology(topology: &Topology, extra: &[String]) {
    let mut queues = topology.queues();
    queues.extend_from_slice(extra);
    let exchange = topology.events_exchange();
    let policies: Vec<String> = topology.policies().into_iter().map(|p| p.name).collect();
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let cleanup = async {
                let connection =
                    Connection::connect(&broker_url(), ConnectionProperties::default())
                        .await
                        .ok()?;
                let channel = connection.create_channel().await.ok()?;
                for queue in queues {
                    let _ = channel
                        .queue_delete(queue.into(), QueueDeleteOptions::default())
                        .await;
                }
                let _ = channel
                    .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                    .await;
                let _ = connection.close(200, "test cleaned up".into()).await;
                let http = reqwest::Client::new();
                for policy in policies {
                    let _ = http
                        .delete(format!("http://127.0.0.1:15672/api/policies/%2F/{policy}"))
                        .basic_auth("guest", Some("guest"))
                        .send()
                        .await;
                }
                Some(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), cleanup).await;
        });
    })
    .join();
}

/// Every message in `queue`, read without taking it: the messages stay in the queue (they are
/// returned when the reading channel closes).
pub async fn peek_queue(queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let connection = Connection::connect(&broker_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let mut messages = Vec::new();
    while let Ok(Some(message)) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
    {
        messages.push(message);
    }
    let _ = connection.close(200, "peeked".into()).await;
    messages
}

/// A durable queue bound to the events exchange with `#`, read over its own direct connection.
pub struct Tap {
    pub queue: String,
    connection: Connection,
    consumer: Option<lapin::Consumer>,
}

impl Tap {
    pub async fn declare(namespace: &str, exchange: &str) -> Self {
        let queue = format!("{namespace}tap");
        let connection = Connection::connect(&broker_url(), ConnectionProperties::default())
            .await
            .expect("tap connection");
        let channel = connection.create_channel().await.expect("tap channel");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .expect("tap queue");
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("tap binding");
        Self {
            queue,
            connection,
            consumer: None,
        }
    }

    /// The next message, acknowledged, or `None` after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Delivery> {
        if self.consumer.is_none() {
            let channel = self.connection.create_channel().await.expect("tap channel");
            let consumer = channel
                .basic_consume(
                    self.queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("tap consumer");
            self.consumer = Some(consumer);
        }
        let consumer = self.consumer.as_mut()?;
        let delivery = tokio::time::timeout(timeout, consumer.next())
            .await
            .ok()??
            .ok()?;
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        Some(delivery)
    }

    /// Drains the tap over a fresh connection (the old one may have died with the broker) until
    /// every id in `expected` was seen; returns the ids still missing.
    pub async fn find_all(&self, expected: &HashSet<String>, timeout: Duration) -> HashSet<String> {
        let mut missing = expected.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        while !missing.is_empty() && tokio::time::Instant::now() < deadline {
            let Ok(connection) =
                Connection::connect(&broker_url(), ConnectionProperties::default()).await
            else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let Ok(channel) = connection.create_channel().await else {
                continue;
            };
            while let Ok(Some(message)) = channel
                .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
            {
                if let Some(id) = message.delivery.properties.message_id() {
                    missing.remove(id.as_str());
                }
            }
            if !missing.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        missing
    }
}

pub fn header<'a>(delivery: &'a Delivery, key: &str) -> Option<&'a lapin::types::AMQPValue> {
    delivery.properties.headers().as_ref()?.inner().get(key)
}

/// Messages ready in `queue` (a passive declare: nothing is taken).
pub async fn queue_length(queue: &str) -> u32 {
    let Ok(connection) = Connection::connect(&broker_url(), ConnectionProperties::default()).await
    else {
        return u32::MAX;
    };
    let length = match connection.create_channel().await {
        Ok(channel) => channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map(|queue| queue.message_count())
            .unwrap_or(u32::MAX),
        Err(_) => u32::MAX,
    };
    let _ = connection.close(200, "counted".into()).await;
    length
}

/// Peeks at `queue` until it holds at least `count` messages or `timeout` passed.
pub async fn wait_for_messages(
    queue: &str,
    count: usize,
    timeout: Duration,
) -> Vec<lapin::message::BasicGetMessage> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let messages = peek_queue(queue).await;
        if messages.len() >= count || tokio::time::Instant::now() >= deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(path, query, status)` of every request a simulator at `base` served under `prefix`.
pub async fn sim_requests(
    http: &reqwest::Client,
    base: &str,
    prefix: &str,
) -> Vec<(String, String, u64)> {
    let requests: serde_json::Value = http
        .get(format!("{base}/_sim/requests"))
        .send()
        .await
        .expect("simulator reachable")
        .json()
        .await
        .expect("JSON");
    requests
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let path = r["path"].as_str()?;
            path.starts_with(prefix).then(|| {
                (
                    path.to_owned(),
                    r["query"].as_str().unwrap_or_default().to_owned(),
                    r["status"].as_u64().unwrap_or_default(),
                )
            })
        })
        .collect()
}
