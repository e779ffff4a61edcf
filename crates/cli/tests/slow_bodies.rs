//! The real `zoom-relay ingress` process under 300 unauthenticated connections that send a
//! request head and then trickle nothing: memory stays bounded by what arrived, and every
//! connection is answered and closed by the body deadline.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 300;

struct Ingress {
    child: Child,
    namespace: String,
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The namespace's queues, declared by the ingress at start.
        let namespace = self.namespace.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let settings = relay_core::settings::AmqpSettings {
                    namespace,
                    ..Default::default()
                };
                let delays = relay_pipeline::PipelineSettings::default().retry_delays();
                let topology = relay_core::broker::Topology::new(&settings, &delays);
                let Ok(connection) = lapin::Connection::connect(
                    "amqp://guest:guest@127.0.0.1:5672/%2f",
                    lapin::ConnectionProperties::default(),
                )
                .await
                else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for queue in topology.queues() {
                        let _ = channel.queue_delete(queue.into(), Default::default()).await;
                    }
                    let _ = channel
                        .exchange_delete(topology.events_exchange().into(), Default::default())
                        .await;
                }
                let http = reqwest::Client::new();
                for policy in topology.policies() {
                    let _ = http
                        .delete(format!(
                            "http://127.0.0.1:15672/api/policies/%2F/{}",
                            policy.name
                        ))
                        .basic_auth("guest", Some("guest"))
                        .send()
                        .await;
                }
            });
        })
        .join();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn start_ingress(port: u16) -> Ingress {
    start_ingress_with(port, "")
}

fn start_ingress_with(port: u16, ingress_extra: &str) -> Ingress {
    let namespace = format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    // The configuration's format is told by its extension.
    let mut config = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("config file");
    write!(
        config,
        r#"
[amqp]
namespace = "{namespace}"
[admin]
listen = "127.0.0.1:0"
[ingress]
listen = "127.0.0.1:{port}"
body_timeout = "2s"
workers = 1
{ingress_extra}
[log]
level = "warn"
[[accounts]]
name = "acme"
account_id = "acme-account-id"
client_id = "c"
client_secret = "s"
secret_tokens = ["acme-token"]
"#
    )
    .expect("config written");
    let child = Command::new(env!("CARGO_BIN_EXE_zoom-relay"))
        .args(["--config"])
        .arg(config.path())
        .arg("ingress")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("zoom-relay starts");
    // The process has read its configuration once it answers.
    let ingress = Ingress { child, namespace };
    let ready = (0..200).any(|_| {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !up {
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    });
    assert!(ready, "the ingress did not start listening");
    drop(config);
    ingress
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_slow_bodies_hold_no_memory_and_are_closed_by_the_deadline() {
    let port = free_port();
    let ingress = start_ingress(port);
    let pid = ingress.child.id();
    let before = rss_kib(pid);
    let now = chrono::Utc::now().timestamp();
    let head = format!(
        "POST /zoom/webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: 1000000\r\nx-zm-request-timestamp: {now}\r\nx-zm-signature: v0={}\r\n\r\n{{\"event\":",
        "0".repeat(64)
    );
    let started = Instant::now();
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        socket.write_all(head.as_bytes()).await.expect("head");
        connections.push(socket);
    }
    // While all of them wait, the process holds what arrived, not what they promised.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = before;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    let answers =
        futures_util::future::join_all(connections.into_iter().map(|mut socket| async move {
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut answer))
                    .await;
            read.is_ok()
                .then(|| String::from_utf8_lossy(&answer).into_owned())
        }))
        .await;
    let elapsed = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.expect("sampler");
    let closed = answers.iter().filter(|answer| answer.is_some()).count();
    assert_eq!(
        closed, CONNECTIONS,
        "connections left open past the deadline"
    );
    let timed_out = answers
        .iter()
        .flatten()
        .filter(|answer| answer.starts_with("HTTP/1.1 408") && answer.contains("body_timeout"))
        .count();
    assert_eq!(timed_out, CONNECTIONS, "each answered 408 body_timeout");
    let grown_mib = (peak.saturating_sub(before)) as f64 / 1024.0;
    // 300 promised bodies of 1 MB would be ~290 MiB if buffers were sized from Content-Length.
    assert!(
        grown_mib < 32.0,
        "RSS grew {grown_mib:.1} MiB for {CONNECTIONS} slow connections"
    );
    eprintln!(
        "{CONNECTIONS} slow connections: RSS {before} KiB → peak {peak} KiB, all closed in {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_nearly_complete_bodies_stay_within_the_pending_bytes_budget() {
    let port = free_port();
    // 300 × 900 KB would be ~260 MiB held; the budget is 32 MiB.
    let ingress = start_ingress_with(port, "max_pending_body_bytes = 33554432");
    let pid = ingress.child.id();
    let before = rss_kib(pid);
    let now = chrono::Utc::now().timestamp();
    let head = format!(
        "POST /zoom/webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: 1000000\r\nx-zm-request-timestamp: {now}\r\nx-zm-signature: v0={}\r\n\r\n",
        "0".repeat(64)
    );
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = before;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    let senders = (0..CONNECTIONS).map(|_| {
        let head = head.clone();
        tokio::spawn(async move {
            let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let body = vec![b' '; 900_000];
            // The server may stop reading (budget spent) or answer first: writes may fail.
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                socket.write_all(head.as_bytes()).await?;
                socket.write_all(&body).await
            })
            .await;
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut answer))
                    .await;
            read.is_ok()
                .then(|| String::from_utf8_lossy(&answer).into_owned())
        })
    });
    let answers: Vec<Option<String>> = futures_util::future::join_all(senders)
        .await
        .into_iter()
        .map(|joined| joined.expect("sender"))
        .collect();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.expect("sampler");
    let closed = answers.iter().filter(|answer| answer.is_some()).count();
    assert_eq!(
        closed, CONNECTIONS,
        "connections left open past the deadline"
    );
    let busy = answers
        .iter()
        .flatten()
        .filter(|answer| answer.contains("ingress_busy"))
        .count();
    let grown_mib = (peak.saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "{CONNECTIONS} nearly complete bodies: RSS {before} KiB → peak {peak} KiB ({grown_mib:.1} MiB), {busy} answered ingress_busy"
    );
    assert!(busy > 0, "the budget was never reached");
    // The budget, plus the HTTP stack's own buffers for 300 busy connections (measured ~48 MiB
    // with a 1 MiB budget); without the budget ~300 MiB.
    assert!(
        grown_mib < 128.0,
        "RSS grew {grown_mib:.1} MiB with a 32 MiB budget"
    );
}
