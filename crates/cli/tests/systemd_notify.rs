//! The real `zoom-relay` process under a stand-in for systemd: a unix datagram socket named by
//! `NOTIFY_SOCKET`, a watchdog period in `WATCHDOG_USEC`, and a broker reached through a proxy
//! the test can cut. What deploy/systemd/ relies on: `READY=1` once connected, `WATCHDOG=1` only
//! while the broker connection is healthy, `STOPPING=1` on SIGTERM.

// The integration tests' broker proxy (tests/it/helpers/proxy.rs), shared rather than copied.
#[path = "../../../tests/it/helpers/proxy.rs"]
#[allow(dead_code, reason = "this test only cuts; freezing is for others")]
mod proxy;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use proxy::TcpProxy;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

/// 400 ms: the process pings every 200 ms, so a silence of many periods is unmistakable.
const WATCHDOG_USEC: u64 = 400_000;

struct Systemd {
    socket: UnixDatagram,
    dir: tempfile::TempDir,
}

impl Systemd {
    fn listen() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let socket = UnixDatagram::bind(dir.path().join("notify")).expect("bind the notify socket");
        Self { socket, dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("notify")
    }

    /// The next notification, if one comes within `timeout`.
    async fn next(&self, timeout: Duration) -> Option<String> {
        let mut buffer = [0u8; 512];
        let length = tokio::time::timeout(timeout, self.socket.recv(&mut buffer))
            .await
            .ok()?
            .expect("receive a notification");
        Some(String::from_utf8_lossy(&buffer[..length]).into_owned())
    }

    /// Waits for `state`, skipping the watchdog pings before it.
    async fn expect(&self, state: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(got) if got == state => return,
                Some(got) if got == "WATCHDOG=1" => {}
                Some(got) => panic!("expected {state}, got {got}"),
                None => panic!("no {state} within {timeout:?}"),
            }
        }
    }

    /// Throws away what was sent so far.
    fn drain(&self) {
        let mut buffer = [0u8; 512];
        while self.socket.try_recv(&mut buffer).is_ok() {}
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

struct Relay {
    child: Child,
    namespace: String,
    admin: u16,
    /// Read at start; kept until the process is gone.
    _config: tempfile::NamedTempFile,
}

impl Relay {
    fn start(amqp_url: &str, notify_socket: &std::path::Path) -> Self {
        let namespace = format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let admin = free_port();
        let mut config = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("config file");
        write!(
            config,
            r#"
[amqp]
url = "{amqp_url}"
namespace = "{namespace}"
reconnect_max_backoff = "500ms"
connect_timeout = "3s"
heartbeat = "5s"
[admin]
listen = "127.0.0.1:{admin}"
[ingress]
listen = "127.0.0.1:0"
workers = 1
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
        let log = if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit
        } else {
            Stdio::null
        };
        let child = Command::new(env!("CARGO_BIN_EXE_zoom-relay"))
            .arg("--config")
            .arg(config.path())
            .arg("ingress")
            .env("NOTIFY_SOCKET", notify_socket)
            .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string())
            .env_remove("WATCHDOG_PID")
            .stdout(log())
            .stderr(log())
            .kill_on_drop(true)
            .spawn()
            .expect("zoom-relay starts");
        Self {
            child,
            namespace,
            admin,
            _config: config,
        }
    }

    async fn ready(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin);
        matches!(reqwest::get(url).await, Ok(answer) if answer.status().is_success())
    }

    async fn not_ready(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin);
        matches!(reqwest::get(url).await, Ok(answer) if answer.status().as_u16() == 503)
    }

    fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM delivered");
    }
}

impl Drop for Relay {
    /// Removes the namespace's queues, exchange and policies, declared by the process at start
    /// (on a thread of its own: a panicking test drops this inside its runtime).
    fn drop(&mut self) {
        // Gone first, so that it cannot declare the topology again.
        let _ = self.child.start_kill();
        let namespace = self.namespace.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(remove_topology(namespace));
        })
        .join();
    }
}

async fn remove_topology(namespace: String) {
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
}

async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_then_watchdog_pings_only_while_the_broker_is_reachable_then_stopping()
{
    let systemd = Systemd::listen();
    let broker = TcpProxy::start("127.0.0.1:5672".parse().expect("address")).await;
    let mut relay = Relay::start(&broker.amqp_url(), &systemd.path());

    // READY=1 is the first word: no ping before the process is connected.
    let first = systemd.next(Duration::from_secs(30)).await;
    assert_eq!(first.as_deref(), Some("READY=1"));
    assert!(relay.ready().await, "READY=1 came before /readyz agreed");
    for _ in 0..3 {
        let ping = systemd.next(Duration::from_secs(2)).await;
        assert_eq!(ping.as_deref(), Some("WATCHDOG=1"), "pings while connected");
    }

    // Broker gone: once the process knows it, it stops pinging, so systemd would restart it.
    broker.cut();
    assert!(
        eventually(Duration::from_secs(15), || relay.not_ready()).await,
        "the process never noticed the cut"
    );
    systemd.drain();
    let during_outage = systemd.next(Duration::from_secs(2)).await;
    assert_eq!(
        during_outage, None,
        "a ping while the broker is unreachable (10 watchdog half-periods)"
    );

    // Broker back: the pings resume without a restart.
    broker.restore();
    assert_eq!(
        systemd.next(Duration::from_secs(30)).await.as_deref(),
        Some("WATCHDOG=1"),
        "pings resume after reconnecting"
    );

    relay.terminate();
    systemd.expect("STOPPING=1", Duration::from_secs(10)).await;
    let exit = tokio::time::timeout(Duration::from_secs(30), relay.child.wait())
        .await
        .expect("the process exits after SIGTERM")
        .expect("exit status");
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
}
