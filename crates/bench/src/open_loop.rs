//! An open-loop load generator: requests leave on a fixed schedule (`rate` a second) whether or
//! not earlier ones were answered, and each latency is measured from the time its request was
//! *scheduled*, not sent. A closed-loop tool (wrk) waits for an answer before it sends the next
//! request on a connection, so a stalled server also stalls the load and its worst latencies
//! go unrecorded (coordinated omission); this one does not.
//!
//! Every request is a distinct delivery (its own nonce, tracking id and signature), as Zoom's
//! are: the ingress answers a replayed signature without storing it again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;

use crate::event::{NONCE_MARKER, sample_event};

pub struct Report {
    pub sent: u64,
    pub ok: u64,
    pub seconds: f64,
    /// Microseconds from scheduled send to the whole answer, sorted.
    pub latencies: Vec<u64>,
}

impl Report {
    pub fn percentile_ms(&self, pct: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank = ((pct / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1] as f64 / 1000.0
    }
}

pub async fn run(
    url: &str,
    secret: &str,
    size: usize,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Report> {
    let template = sample_event(size);
    let secret = SecretString::from(secret.to_owned());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(1024)
        .build()?;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(
        (rate * duration.as_secs()) as usize,
    )));
    let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = rate.saturating_mul(duration.as_secs());
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let runtime = tokio::runtime::Handle::current();
    let started = Instant::now();
    // The schedule runs on a thread of its own: the runtime's timer has millisecond granularity,
    // a thread's sleep is far finer, and a busy runtime must not delay the next send.
    let scheduler = {
        let (client, latencies, ok, url) = (client, latencies.clone(), ok.clone(), url.to_owned());
        std::thread::spawn(move || {
            let mut requests = Vec::with_capacity(total as usize);
            for index in 0..total {
                let scheduled = started + period.mul_f64(index as f64);
                if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_secs() as i64)
                    .unwrap_or_default();
                let nonce = format!("{index:016x}");
                let body = template.replacen(NONCE_MARKER, &nonce, 1);
                let signature = zoom_api::webhook::sign(&secret, timestamp, body.as_bytes());
                let request = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-zm-request-timestamp", timestamp.to_string())
                    .header("x-zm-signature", signature)
                    .header("x-zm-trackingid", format!("bench-{nonce}"))
                    .body(body);
                let (latencies, ok) = (latencies.clone(), ok.clone());
                requests.push(runtime.spawn(async move {
                    let answered = match request.send().await {
                        Ok(response) => {
                            let status = response.status();
                            response.bytes().await.is_ok() && status.is_success()
                        }
                        Err(_) => false,
                    };
                    let micros = scheduled.elapsed().as_micros() as u64;
                    if answered {
                        ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if let Ok(mut latencies) = latencies.lock() {
                        latencies.push(micros);
                    }
                }));
            }
            requests
        })
    };
    let requests = tokio::task::spawn_blocking(move || scheduler.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the scheduler thread panicked"))?;
    for request in requests {
        request.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = std::mem::take(
        &mut *latencies
            .lock()
            .map_err(|_| anyhow::anyhow!("latencies poisoned"))?,
    );
    latencies.sort_unstable();
    Ok(Report {
        sent: total,
        ok: ok.load(std::sync::atomic::Ordering::Relaxed),
        seconds,
        latencies,
    })
}

/// The same schedule straight to the broker: persistent, `mandatory` publishes with confirms on
/// `channels` channels, each latency from its scheduled time to its confirm. What the broker's
/// own storing costs, with no HTTP in the way: the floor under any handler's latency.
pub async fn run_broker(
    url: &str,
    target: &crate::ceiling::Target,
    channels: usize,
    size: usize,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Report> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let mut publishers = Vec::with_capacity(channels.max(1));
    for _ in 0..channels.max(1) {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        publishers.push(channel);
    }
    let body = Arc::new(sample_event(size).into_bytes());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(
        (rate * duration.as_secs()) as usize,
    )));
    let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = rate.saturating_mul(duration.as_secs());
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let runtime = tokio::runtime::Handle::current();
    let started = Instant::now();
    let scheduler = {
        let (latencies, ok) = (latencies.clone(), ok.clone());
        let (exchange, routing_key) = (target.exchange.clone(), target.routing_key.clone());
        std::thread::spawn(move || {
            let mut requests = Vec::with_capacity(total as usize);
            for index in 0..total {
                let scheduled = started + period.mul_f64(index as f64);
                if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let channel = publishers[index as usize % publishers.len()].clone();
                let (exchange, routing_key, body) =
                    (exchange.clone(), routing_key.clone(), body.clone());
                let (latencies, ok) = (latencies.clone(), ok.clone());
                requests.push(runtime.spawn(async move {
                    let confirmed = async {
                        let confirm = channel
                            .basic_publish(
                                exchange.as_str().into(),
                                routing_key.as_str().into(),
                                BasicPublishOptions {
                                    mandatory: true,
                                    ..Default::default()
                                },
                                &body,
                                BasicProperties::default().with_delivery_mode(2),
                            )
                            .await?;
                        Ok::<_, lapin::Error>(confirm.await?.is_ack())
                    }
                    .await
                    .unwrap_or(false);
                    let micros = scheduled.elapsed().as_micros() as u64;
                    if confirmed {
                        ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if let Ok(mut latencies) = latencies.lock() {
                        latencies.push(micros);
                    }
                }));
            }
            requests
        })
    };
    let requests = tokio::task::spawn_blocking(move || scheduler.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the scheduler thread panicked"))?;
    for request in requests {
        request.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = std::mem::take(
        &mut *latencies
            .lock()
            .map_err(|_| anyhow::anyhow!("latencies poisoned"))?,
    );
    latencies.sort_unstable();
    Ok(Report {
        sent: total,
        ok: ok.load(std::sync::atomic::Ordering::Relaxed),
        seconds,
        latencies,
    })
}
