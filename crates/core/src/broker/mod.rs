//! The RabbitMQ connection, kept alive by a supervisor of our own.
//!
//! lapin's automatic recovery was measured to hang for good in some broker restarts
//! (docs/broker.md), so it stays off. Instead one supervisor task per [`Broker`]:
//!
//! 1. connects and declares the [`Topology`] under `connect_timeout` (a hung attempt is abandoned);
//! 2. publishes the new [`Session`] (connection + confirm-mode channels) on a `watch` channel;
//! 3. watches it: a connection error event, a status that is no longer connected, or a stall
//!    reported by the publisher that a probe confirms (the watchdog) drops the session;
//! 4. reconnects with capped, jittered exponential backoff, and repeats until shutdown.
//!
//! Users never hold a connection across a reconnect: the publisher takes the current session per
//! message, consumers resubscribe on each new session ([`Broker::sessions`]).

mod publisher;
mod topology;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use rand::Rng;
use secrecy::ExposeSecret;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use publisher::{Outgoing, PublishError, Publisher};
pub use topology::{StageName, Topology};

use crate::settings::{AmqpSettings, Settings};

/// How often the supervisor looks at the connection status between events.
const STATUS_POLL: Duration = Duration::from_secs(1);
/// Bound on the watchdog's probe (open and close a channel) after a reported stall.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A live connection with its confirm-mode publishing channels. Replaced, never repaired.
pub struct Session {
    pub connection: Connection,
    publish_channels: Vec<Channel>,
    next_channel: AtomicUsize,
    /// Counts sessions since start; lets a holder tell a fresh session from the one it saw.
    pub generation: u64,
}

impl Session {
    fn publish_channel(&self) -> &Channel {
        let index = self.next_channel.fetch_add(1, Ordering::Relaxed) % self.publish_channels.len();
        &self.publish_channels[index]
    }

    pub fn is_usable(&self) -> bool {
        self.connection.status().connected()
            && self.publish_channels.iter().all(|c| c.status().connected())
    }
}

/// Handle to the supervised connection; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AmqpSettings,
    topology: Topology,
    sessions: watch::Sender<Option<Arc<Session>>>,
    stalled: Notify,
    shutdown: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid amqp.url: {0}")]
    Url(String),
    #[error("broker unreachable: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("connecting took longer than {0:?}")]
    Timeout(Duration),
}

impl Broker {
    /// Starts the supervisor; it runs until `shutdown` is cancelled, then closes the connection.
    pub fn start(settings: &Settings, shutdown: CancellationToken) -> Self {
        let (sessions, _) = watch::channel(None);
        let broker = Self {
            inner: Arc::new(Inner {
                settings: settings.amqp.clone(),
                topology: Topology::new(settings),
                sessions,
                stalled: Notify::new(),
                shutdown,
            }),
        };
        tokio::spawn(broker.clone().supervise());
        broker
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    pub fn settings(&self) -> &AmqpSettings {
        &self.inner.settings
    }

    /// The current session, if connected.
    pub fn session(&self) -> Option<Arc<Session>> {
        self.inner.sessions.borrow().clone()
    }

    /// Every session as it comes and goes (`None` while disconnected).
    pub fn sessions(&self) -> watch::Receiver<Option<Arc<Session>>> {
        self.inner.sessions.subscribe()
    }

    /// Connected, topology declared, channels open.
    pub fn is_ready(&self) -> bool {
        self.session().is_some_and(|session| session.is_usable())
    }

    /// Waits until ready or until `timeout` passes; returns readiness.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut sessions = self.sessions();
        tokio::time::timeout(timeout, async {
            loop {
                if self.is_ready() {
                    return;
                }
                if sessions.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.clone())
    }

    /// Called by the publisher when a confirm did not come in time: maybe load, maybe a hung
    /// connection. The supervisor probes and rebuilds only in the second case.
    pub(crate) fn report_stall(&self) {
        self.inner.stalled.notify_one();
    }

    async fn supervise(self) {
        let settings = &self.inner.settings;
        let shutdown = &self.inner.shutdown;
        let mut backoff = Duration::from_millis(200);
        let mut generation = 0;
        while !shutdown.is_cancelled() {
            generation += 1;
            let attempt = tokio::time::timeout(settings.connect_timeout, self.connect(generation));
            let result = tokio::select! {
                () = shutdown.cancelled() => break,
                result = attempt => result,
            };
            match result {
                Ok(Ok(session)) => {
                    info!(generation, "broker connected, topology declared");
                    backoff = Duration::from_millis(200);
                    let session = Arc::new(session);
                    self.inner.sessions.send_replace(Some(session.clone()));
                    let reason = self.watch(&session).await;
                    self.inner.sessions.send_replace(None);
                    close_in_background(session, &reason);
                    if shutdown.is_cancelled() {
                        break;
                    }
                    warn!(generation, reason, "broker session lost, reconnecting");
                }
                Ok(Err(error)) => warn!(%error, "broker connection failed"),
                Err(_) => warn!(
                    timeout = ?settings.connect_timeout,
                    "broker connection attempt hung, abandoned"
                ),
            }
            let pause = jitter(backoff);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
            backoff = (backoff * 2).min(settings.reconnect_max_backoff);
        }
        if let Some(session) = self.inner.sessions.send_replace(None) {
            close_in_background(session, "shutdown");
        }
    }

    async fn connect(&self, generation: u64) -> Result<Session, ConnectError> {
        let settings = &self.inner.settings;
        let mut uri = AMQPUri::from_str(settings.url.expose_secret())
            // The parser's message may quote the URL, password included.
            .map_err(|_| ConnectError::Url("not a valid AMQP URI".into()))?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = u16::try_from(settings.heartbeat.as_secs()).ok();
        }
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("zoom-relay-{}", std::process::id()).into());
        let connection = Connection::connect_uri(uri, properties).await?;
        let setup = connection.create_channel().await?;
        self.inner.topology.declare(&setup).await?;
        let _ = setup.close(200, "topology declared".into()).await;
        let mut publish_channels = Vec::with_capacity(settings.publish_channels);
        for _ in 0..settings.publish_channels {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            publish_channels.push(channel);
        }
        Ok(Session {
            connection,
            publish_channels,
            next_channel: AtomicUsize::new(0),
            generation,
        })
    }

    /// Returns why the session must be replaced.
    async fn watch(&self, session: &Session) -> String {
        let mut events = session.connection.events_listener();
        let mut poll = tokio::time::interval(STATUS_POLL);
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return "shutdown".into(),
                event = events.next() => match event {
                    Some(Event::Error(error)) => return format!("connection error: {error}"),
                    Some(Event::ConnectionBlocked(reason)) => warn!(reason, "broker blocked publishing (resource alarm)"),
                    Some(Event::ConnectionUnblocked) => info!("broker unblocked publishing"),
                    Some(_) => {}
                    None => return "connection event stream ended".into(),
                },
                _ = poll.tick() => {
                    if !session.is_usable() {
                        return "connection or channel no longer open".into();
                    }
                }
                () = self.inner.stalled.notified() => {
                    if !probe(session).await {
                        return "watchdog: confirms stalled and the connection does not answer".into();
                    }
                }
            }
        }
    }
}

/// Opens and closes a channel: a round trip the broker must answer if the connection is alive.
async fn probe(session: &Session) -> bool {
    let round_trip = async {
        let channel = session.connection.create_channel().await?;
        channel.close(200, "probe".into()).await
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, round_trip).await,
        Ok(Ok(()))
    )
}

/// Closing a hung connection can hang too; never let it block reconnection.
fn close_in_background(session: Arc<Session>, reason: &str) {
    let reason = reason.to_owned();
    tokio::spawn(async move {
        let close = session.connection.close(200, reason.as_str().into());
        let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
    });
}

fn jitter(base: Duration) -> Duration {
    let factor = rand::rng().random_range(0.5..1.5);
    base.mul_f64(factor)
}
