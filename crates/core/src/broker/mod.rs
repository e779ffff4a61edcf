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
//!
//! With several broker URLs (a cluster), each attempt goes to the next node in turn, so a node
//! that died is skipped after one failed attempt. Each new session also (re)applies the
//! topology's policies through the management API, in the background.

pub mod management;
mod publisher;
pub mod stream;
mod topology;

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use management::{Management, QueueFigures};
pub use publisher::{HeaderValue, Outgoing, PublishError, Publisher};
pub use topology::{Policy, StageName, Topology};

use crate::settings::AmqpSettings;

/// How often the supervisor looks at the connection status between events.
const STATUS_POLL: Duration = Duration::from_secs(1);
/// Bound on the watchdog's probe (open and close a channel) after a reported stall.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A live connection with its confirm-mode publishing channels. Replaced, never repaired —
/// but for a channel that nacks, which is swapped for a fresh one (see [`Publisher`]).
pub struct Session {
    pub connection: Connection,
    publish_channels: Vec<Mutex<Channel>>,
    next_channel: AtomicUsize,
    /// Counts sessions since start; lets a holder tell a fresh session from the one it saw.
    pub generation: u64,
}

impl Session {
    /// The next publishing channel, and its slot (to replace it after a nack).
    fn publish_channel(&self) -> (usize, Channel) {
        let index = self.next_channel.fetch_add(1, Ordering::Relaxed) % self.publish_channels.len();
        (index, lock(&self.publish_channels[index]).clone())
    }

    /// Replaces the channel in `slot` with a fresh confirm-mode one. On a cluster, a channel
    /// opened just as a queue leader died can nack every publish until that node returns; a new
    /// channel sees the new leader (docs/operations.md).
    /// `nacked` is the channel the caller used: another publisher may have replaced it already,
    /// and its fresh channel must not be closed under it.
    async fn renew_channel(&self, slot: usize, nacked: &Channel) -> lapin::Result<Channel> {
        let channel = self.connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let replaced = {
            let mut current = lock(&self.publish_channels[slot]);
            if current.id() == nacked.id() {
                Some(std::mem::replace(&mut *current, channel.clone()))
            } else {
                None
            }
        };
        if let Some(old) = replaced {
            tokio::spawn(async move {
                let _ = old.close(200, "replaced after a nack".into()).await;
            });
        }
        Ok(channel)
    }

    pub fn is_usable(&self) -> bool {
        self.connection.status().connected()
            && self
                .publish_channels
                .iter()
                .all(|channel| lock(channel).status().connected())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Handle to the supervised connection; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AmqpSettings,
    urls: Vec<SecretString>,
    topology: Topology,
    management: Option<Management>,
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
    pub fn start(settings: &AmqpSettings, topology: Topology, shutdown: CancellationToken) -> Self {
        let (sessions, _) = watch::channel(None);
        let management = match Management::new(settings) {
            Ok(management) => Some(management),
            Err(error) => {
                warn!(%error, "no RabbitMQ management API: retention policies are not applied");
                None
            }
        };
        let broker = Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                urls: settings.urls(),
                topology,
                management,
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

    /// The management API, when one could be configured.
    pub fn management(&self) -> Option<&Management> {
        self.inner.management.as_ref()
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
                    self.apply_policies();
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

    /// Puts the topology's policies in place, in the background: a management API that is down
    /// delays a changed retention, never the relay.
    fn apply_policies(&self) {
        let Some(management) = self.inner.management.clone() else {
            return;
        };
        let policies = self.inner.topology.policies();
        tokio::spawn(async move {
            for policy in policies {
                match management.apply_policy(&policy).await {
                    Ok(()) => debug!(policy = policy.name, "policy applied"),
                    Err(error) => warn!(
                        policy = policy.name,
                        %error,
                        "could not apply a RabbitMQ policy; the queue keeps its previous settings"
                    ),
                }
            }
        });
    }

    async fn connect(&self, generation: u64) -> Result<Session, ConnectError> {
        let settings = &self.inner.settings;
        let urls = &self.inner.urls;
        // Each attempt tries the next node: a dead one costs one failed attempt, not all of them.
        let url = urls
            .get((generation as usize).saturating_sub(1) % urls.len().max(1))
            .ok_or_else(|| ConnectError::Url("no broker URL configured".into()))?;
        let connection = open(url, settings, "zoom-relay").await?;
        self.inner.topology.declare(&connection).await?;
        let mut publish_channels = Vec::with_capacity(settings.publish_channels);
        for _ in 0..settings.publish_channels {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            publish_channels.push(Mutex::new(channel));
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

/// A connection of its own for a reader (a stream, a dead-letter queue): a mistake there (a
/// `basic.nack` on a stream closes the connection) must not take the publishing session with
/// it. Tries each configured node in turn, each within `connect_timeout`.
pub async fn connect_reader(
    settings: &AmqpSettings,
    name: &str,
) -> Result<Connection, ConnectError> {
    let mut last = ConnectError::Url("no broker URL configured".into());
    for url in settings.urls() {
        match tokio::time::timeout(settings.connect_timeout, open(&url, settings, name)).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(error)) => last = error,
            Err(_) => last = ConnectError::Timeout(settings.connect_timeout),
        }
    }
    Err(last)
}

async fn open(
    url: &SecretString,
    settings: &AmqpSettings,
    name: &str,
) -> Result<Connection, ConnectError> {
    let mut uri = AMQPUri::from_str(url.expose_secret())
        // The parser's message may quote the URL, password included.
        .map_err(|_| ConnectError::Url("not a valid AMQP URI".into()))?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = u16::try_from(settings.heartbeat.as_secs()).ok();
    }
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("{name}-{}", std::process::id()).into());
    Ok(Connection::connect_uri(uri, properties).await?)
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
