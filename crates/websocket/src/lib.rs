//! zoom-relay's WebSocket event delivery: Zoom's event notifications over a socket the relay
//! opens itself, for sites that cannot expose an HTTPS endpoint. A second way into the same
//! pipeline as the ingress.
//!
//! - [`settings`]: the `[websocket]` section and its `[[websocket.subscriptions]]`.
//! - [`protocol`]: Zoom's frames (`build_connection`, `heartbeat`, `message`).
//! - [`metrics`]: connected or not, last frame, reconnects, events, failures, gap passes.
//!
//! Per subscription, one task ([`WebsocketDelivery::run`]):
//!
//! 1. takes the subscription's lease in staging (one socket per subscription across replicas;
//!    the others stand by and take over when it expires or is released);
//! 2. asks the account's app for a token (under the subscription's grant type), opens
//!    `{url}?subscriptionId=…&access_token=…`, and sends the heartbeat every interval;
//! 3. takes in every `message` frame exactly as the ingress takes in a webhook: the same checks
//!    and the same publish to the events exchange (`relay_core::entry`), bound to the
//!    subscription's account with origin `websocket`;
//! 4. on a close, an error, a refused token or a socket that stays silent, connects again after
//!    a growing, jittered pause (the token cache renews what expired);
//! 5. after every connection, lists the account's recordings over the time the socket was
//!    down (`relay_reconcile::Reconciler::pass`): Zoom buffers nothing for a closed socket.
//!
//! The access token is part of the URL: neither the URL nor the token is ever logged.

pub mod metrics;
pub mod protocol;
pub mod settings;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use relay_core::binding::{Binding, Origin};
use relay_core::broker::{Broker, Publisher};
use relay_core::entry::Checked;
use relay_core::shutdown::CancellationToken;
use relay_pipeline::lease::Lease;
use relay_pipeline::{Accounts, Shared, Staging};
use relay_reconcile::{Handover, ReconcileError, Reconciler, Summary};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{Instrument, debug, info, warn};
use zoom_api::client::TokenCache;
use zoom_api::{EventName, ZoomError};

pub use metrics::Metrics;
pub use settings::{Subscription, WebsocketSettings};

use protocol::{Frame, HEARTBEAT};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("websocket.subscriptions: no configured account named `{0}`")]
    UnknownAccount(String),
}

/// Every configured subscription, ready to run.
pub struct WebsocketDelivery {
    links: Vec<Link>,
    broker: Broker,
    metrics: Metrics,
}

impl WebsocketDelivery {
    pub fn new(
        settings: &WebsocketSettings,
        shared: &Shared,
        broker: &Broker,
        reconciler: Arc<Reconciler>,
        metrics: Metrics,
    ) -> Result<Self, StartError> {
        let settings = Arc::new(settings.clone());
        let links = settings
            .subscriptions
            .iter()
            .map(|subscription| {
                let account = shared
                    .accounts
                    .by_name(&subscription.account)
                    .ok_or_else(|| StartError::UnknownAccount(subscription.account.clone()))?;
                Ok(Link {
                    account: account.name().to_owned(),
                    account_id: account.settings.account_id.clone(),
                    subscription_id: subscription.subscription_id.clone(),
                    tokens: account.zoom.tokens().with_grant(subscription.grant_type),
                    accounts: shared.accounts.clone(),
                    staging: shared.staging.clone(),
                    publisher: broker.publisher(),
                    exchange: broker.topology().events_exchange(),
                    reconciler: reconciler.clone(),
                    settings: settings.clone(),
                    metrics: metrics.clone(),
                })
            })
            .collect::<Result<Vec<_>, StartError>>()?;
        Ok(Self {
            links,
            broker: broker.clone(),
            metrics,
        })
    }

    /// Serves every subscription until `shutdown`, then closes the sockets and gives the leases
    /// back.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.links.is_empty() {
            info!("no [[websocket.subscriptions]] configured: nothing to connect");
            shutdown.cancelled().await;
            return;
        }
        let subscriptions: Vec<(String, String, String)> = self
            .links
            .iter()
            .map(|link| {
                (
                    link.account.clone(),
                    link.account_id.clone(),
                    link.subscription_id.clone(),
                )
            })
            .collect();
        let mut running = JoinSet::new();
        for link in self.links {
            running.spawn(link.run(shutdown.clone()));
        }
        running.spawn(report(
            self.broker,
            self.metrics,
            subscriptions,
            shutdown.clone(),
        ));
        while running.join_next().await.is_some() {}
    }
}

/// Tells the status stream how each subscription's socket fares: at once when its state
/// changes or a socket fails, and at least every [`REPORT_EVERY`] (events, last frame).
async fn report(
    broker: Broker,
    metrics: Metrics,
    subscriptions: Vec<(String, String, String)>,
    shutdown: CancellationToken,
) {
    const LOOK_EVERY: Duration = Duration::from_secs(1);
    const REPORT_EVERY: Duration = Duration::from_secs(60);
    let mut last: std::collections::HashMap<String, Instant> = Default::default();
    loop {
        for (account, account_id, subscription_id) in &subscriptions {
            let socket = metrics.take_socket(account);
            let due = last
                .get(account)
                .is_none_or(|at| at.elapsed() >= REPORT_EVERY);
            if !(socket.changed || due) {
                continue;
            }
            let message =
                relay_core::status::StatusMessage::Socket(relay_core::status::SocketReport {
                    at: Utc::now(),
                    account: account.clone(),
                    account_id: account_id.clone(),
                    process: relay_core::status::process_name(),
                    subscription_id: subscription_id.clone(),
                    state: socket.state.to_owned(),
                    last_frame_at: socket.last_frame_at,
                    reconnects: socket.reconnects,
                    events: socket.events,
                    last_failure: socket.last_failure,
                });
            match message.publish(&broker).await {
                Ok(()) => {
                    last.insert(account.clone(), Instant::now());
                }
                Err(error) => {
                    // Told again next round: what changed is not lost to a broker hiccup.
                    metrics.mark_changed(account);
                    debug!(%error, "socket report not published; next round");
                }
            }
        }
        if !pause(LOOK_EVERY, &shutdown).await {
            return;
        }
    }
}

/// One subscription's socket.
struct Link {
    account: String,
    account_id: String,
    subscription_id: String,
    /// The account's app's credentials, asked under the subscription's grant.
    tokens: TokenCache,
    accounts: Accounts,
    staging: Staging,
    publisher: Publisher,
    exchange: String,
    reconciler: Arc<Reconciler>,
    settings: Arc<WebsocketSettings>,
    metrics: Metrics,
}

/// How a socket's life ended.
enum End {
    Shutdown,
    LeaseLost,
    /// Closed, failed, silent or never opened; `stable`: it had stayed up a while.
    Dropped {
        stable: bool,
    },
}

enum Waited {
    Elapsed,
    Shutdown,
    LeaseLost,
}

/// The subscription's lease while this process holds it, renewed every third of its time.
struct Held {
    lease: Lease,
    renew_at: Instant,
    every: Duration,
}

impl Held {
    fn new(lease: Lease, ttl: Duration) -> Self {
        let every = ttl / 3;
        Self {
            lease,
            renew_at: Instant::now() + every,
            every,
        }
    }

    /// Renews the lease when due; `false` once it is lost (another process may hold it now).
    async fn keep(&mut self) -> bool {
        if Instant::now() < self.renew_at {
            return true;
        }
        match self.lease.renew().await {
            Ok(true) => {
                self.renew_at = Instant::now() + self.every;
                true
            }
            Ok(false) => false,
            Err(error) => {
                // The staging store hiccupped: ours until the lease runs out, tried again soon.
                warn!(%error, "could not renew the subscription's lease");
                self.renew_at = Instant::now() + self.every.min(Duration::from_secs(1));
                self.lease.expires_at() > Utc::now()
            }
        }
    }
}

/// Capped, jittered exponential pauses between connections.
struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(settings: &WebsocketSettings) -> Self {
        Self {
            initial: settings.backoff_initial,
            max: settings.backoff_max,
            current: settings.backoff_initial,
        }
    }

    fn next(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        // Between half and all of it: replicas and accounts do not reconnect in step.
        base.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    fn reset(&mut self) {
        self.current = self.initial;
    }
}

type Pass<'a> = Pin<Box<dyn Future<Output = Result<Summary, ReconcileError>> + Send + 'a>>;

impl Link {
    async fn run(self, shutdown: CancellationToken) {
        let span = tracing::info_span!(
            "websocket",
            account = self.account,
            account_id = self.account_id
        );
        self.serve(&shutdown).instrument(span).await;
    }

    async fn serve(&self, shutdown: &CancellationToken) {
        let ttl = self.settings.lease_ttl;
        let lease_name = format!("websocket:{}:{}", self.account, self.subscription_id);
        let mut backoff = Backoff::new(&self.settings);
        // The earliest moment since which events may have been missed, until a pass covered it.
        let mut gap: Option<DateTime<Utc>> = None;
        while !shutdown.is_cancelled() {
            let lease = match Lease::acquire(&self.staging, &lease_name, ttl).await {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    self.metrics.standby(&self.account, true);
                    debug!("another process holds the subscription; standing by");
                    if !pause(ttl / 3, shutdown).await {
                        break;
                    }
                    continue;
                }
                Err(error) => {
                    warn!(%error, "cannot reach staging for the subscription's lease");
                    self.metrics.failure(&self.account, "lease");
                    if !pause(backoff.next(), shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            self.metrics.standby(&self.account, false);
            info!("holding the subscription");
            // Whoever held it before may have been gone for up to a lease time unnoticed.
            let unseen_since = Utc::now() - to_delta(ttl);
            gap = Some(gap.map_or(unseen_since, |since| since.min(unseen_since)));
            let mut held = Held::new(lease, ttl);
            loop {
                match self.session(&mut held, &mut gap, shutdown).await {
                    End::Shutdown => {
                        held.lease.release().await;
                        return;
                    }
                    End::LeaseLost => {
                        warn!("lost the subscription's lease; standing by");
                        break;
                    }
                    End::Dropped { stable } => {
                        gap.get_or_insert_with(Utc::now);
                        if stable {
                            backoff.reset();
                        }
                        self.metrics.reconnect(&self.account);
                        let wait = backoff.next();
                        info!(?wait, "connecting again after a pause");
                        match wait_holding(&mut held, wait, shutdown).await {
                            Waited::Elapsed => {}
                            Waited::Shutdown => {
                                held.lease.release().await;
                                return;
                            }
                            Waited::LeaseLost => {
                                warn!("lost the subscription's lease; standing by");
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    /// One socket, from the token to its end. `gap` is worked off while it is open.
    async fn session(
        &self,
        held: &mut Held,
        gap: &mut Option<DateTime<Utc>>,
        shutdown: &CancellationToken,
    ) -> End {
        let settings = &self.settings;
        let dropped = End::Dropped { stable: false };
        let token = match timeout(settings.connect_timeout, self.tokens.get()).await {
            Ok(Ok(token)) => token,
            Ok(Err(error)) => {
                let reason = match error {
                    ZoomError::Credentials { .. } => "credentials",
                    _ => "token",
                };
                self.metrics.failure(&self.account, reason);
                warn!(%error, "no access token for the subscription");
                return dropped;
            }
            Err(_) => {
                self.metrics.failure(&self.account, "token");
                warn!("the token request outlasted websocket.connect_timeout");
                return dropped;
            }
        };
        let mut url = match url::Url::parse(&settings.url) {
            Ok(url) => url,
            Err(error) => {
                warn!(%error, "websocket.url is not a URL");
                return dropped;
            }
        };
        url.query_pairs_mut()
            .append_pair("subscriptionId", &self.subscription_id)
            .append_pair("access_token", token.value.expose());
        let mut socket = match timeout(
            settings.connect_timeout,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                if matches!(status, 401 | 403) {
                    // Revoked or expired early: the next attempt asks for a fresh one.
                    self.tokens.invalidate(&token).await;
                    self.metrics.failure(&self.account, "unauthorized");
                } else {
                    self.metrics.failure(&self.account, "refused");
                }
                warn!(status, "Zoom refused the socket");
                return dropped;
            }
            Ok(Err(error)) => {
                self.metrics.failure(&self.account, "connect");
                warn!(%error, "could not open the socket");
                return dropped;
            }
            Err(_) => {
                self.metrics.failure(&self.account, "connect");
                warn!("the handshake outlasted websocket.connect_timeout");
                return dropped;
            }
        };
        self.metrics.connected(&self.account, true);
        info!("socket open");
        let opened = Instant::now();
        let mut last_frame = Instant::now();
        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + settings.heartbeat_interval,
            settings.heartbeat_interval,
        );
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The pass over the gap runs beside the socket: heartbeats and events go on meanwhile.
        let mut pass: Option<Pass<'_>> = None;
        let mut pass_at: Option<Instant> = gap.is_some().then(Instant::now);
        // Events lost while a pass runs: it may have listed before them.
        let mut lost_during_pass: Option<DateTime<Utc>> = None;
        let end = loop {
            if pass.is_none()
                && let Some(since) = *gap
                && pass_at.is_some_and(|at| at <= Instant::now())
            {
                pass = Some(Box::pin(self.recover(since)));
                pass_at = None;
            }
            let silent_at = last_frame + settings.silence_timeout;
            let next_pass = pass_at.unwrap_or(silent_at);
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = socket.close(None).await;
                    break End::Shutdown;
                }
                _ = heartbeat.tick() => {
                    if let Err(error) = socket.send(Message::text(HEARTBEAT)).await {
                        self.metrics.failure(&self.account, "error");
                        warn!(%error, "could not send the heartbeat");
                        break End::Dropped { stable: false };
                    }
                }
                () = sleep_until(silent_at) => {
                    self.metrics.failure(&self.account, "silent");
                    warn!(
                        silence = ?settings.silence_timeout,
                        "no frame from Zoom, not even a heartbeat's answer: replacing the socket"
                    );
                    break End::Dropped { stable: false };
                }
                () = sleep_until(held.renew_at) => {
                    if !held.keep().await {
                        let _ = socket.close(None).await;
                        break End::LeaseLost;
                    }
                }
                () = sleep_until(next_pass), if pass.is_none() && pass_at.is_some() => {}
                result = async {
                    match pass.as_mut() {
                        Some(pass) => pass.await,
                        None => std::future::pending().await,
                    }
                }, if pass.is_some() => {
                    pass = None;
                    match result {
                        Ok(summary) => {
                            self.metrics.gap_pass(&self.account, "done");
                            info!(
                                listed = summary.listed,
                                handed_over = summary.handed_over,
                                "the time the socket was down is reconciled"
                            );
                            *gap = lost_during_pass.take();
                            pass_at = gap.is_some().then(Instant::now);
                        }
                        Err(error) => {
                            self.metrics.gap_pass(&self.account, "failed");
                            warn!(%error, "reconciling the time the socket was down failed; trying again");
                            pass_at = Some(Instant::now() + settings.backoff_max);
                        }
                    }
                }
                frame = socket.next() => {
                    last_frame = Instant::now();
                    self.metrics.frame(&self.account);
                    match frame {
                        Some(Ok(Message::Text(text))) => match self.on_frame(text.as_str()).await {
                            Received::Ok => {}
                            Received::Lost(at) => {
                                // Not stored: a pass lists it. Never the only copy dropped.
                                if pass.is_some() {
                                    lost_during_pass.get_or_insert(at);
                                } else {
                                    gap.get_or_insert(at);
                                    pass_at.get_or_insert_with(|| {
                                        Instant::now() + settings.backoff_initial
                                    });
                                }
                            }
                            Received::Refused => {
                                break End::Dropped { stable: opened.elapsed() >= settings.heartbeat_interval };
                            }
                        },
                        Some(Ok(Message::Close(frame))) => {
                            self.metrics.failure(&self.account, "closed");
                            info!(code = ?frame.map(|frame| frame.code), "Zoom closed the socket");
                            break End::Dropped { stable: opened.elapsed() >= settings.heartbeat_interval };
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => {
                            self.metrics.failure(&self.account, "error");
                            warn!(%error, "the socket failed");
                            break End::Dropped { stable: opened.elapsed() >= settings.heartbeat_interval };
                        }
                        None => {
                            self.metrics.failure(&self.account, "closed");
                            info!("the socket closed");
                            break End::Dropped { stable: opened.elapsed() >= settings.heartbeat_interval };
                        }
                    }
                }
            }
        };
        // A pass cut short leaves the gap open: the next socket's pass covers it.
        if let Some(at) = lost_during_pass {
            *gap = Some(gap.map_or(at, |since| since.min(at)));
        }
        self.metrics.connected(&self.account, false);
        end
    }

    async fn on_frame(&self, text: &str) -> Received {
        match Frame::parse(text) {
            Ok(Frame::Message(body)) => self.take_in(&body).await,
            Ok(Frame::BuildConnection { success: true }) => {
                info!("subscription connected");
                Received::Ok
            }
            Ok(Frame::BuildConnection { success: false }) => {
                self.metrics.failure(&self.account, "refused");
                warn!("Zoom refused the subscription (is the subscription id this app's?)");
                Received::Refused
            }
            Ok(Frame::Heartbeat) => Received::Ok,
            Ok(Frame::Other(module)) => {
                debug!(module, "a frame of a module not acted on");
                Received::Ok
            }
            Err(error) => {
                warn!(%error, "ignored a frame");
                Received::Ok
            }
        }
    }

    /// An event, taken in as the ingress takes in a verified webhook.
    async fn take_in(&self, body: &str) -> Received {
        let received_at = Utc::now();
        let checked = match Checked::parse(body.as_bytes(), &self.account_id) {
            Ok(checked) => checked,
            Err(error) => {
                // Never the body: it may carry download tokens and emails.
                self.metrics.failure(&self.account, "invalid_event");
                warn!(%error, "an event not taken in");
                return Received::Ok;
            }
        };
        let span = tracing::info_span!(
            "event",
            event = checked.event(),
            meeting_uuid = checked.meeting_uuid()
        );
        if checked.event() == EventName::EndpointUrlValidation.as_str() {
            return Received::Ok;
        }
        let binding = Binding::new(&self.account, &self.account_id, Origin::WebSocket);
        // Zoom gives a socket's events no delivery id: the body names the message.
        let message_id = checked.digest_id();
        match checked
            .publish(&self.publisher, &self.exchange, &binding, &message_id)
            .instrument(span.clone())
            .await
        {
            Ok(()) => {
                self.metrics.event_stored(&self.account);
                span.in_scope(|| info!("event stored"));
                Received::Ok
            }
            Err(error) => {
                self.metrics.failure(&self.account, "publish");
                span.in_scope(|| warn!(%error, "event not stored; the gap pass will list it"));
                Received::Lost(received_at)
            }
        }
    }

    /// Lists the account's recordings from `gap_lookback` before `since` until today and hands
    /// over what neither the socket nor anything else brought.
    async fn recover(&self, since: DateTime<Utc>) -> Result<Summary, ReconcileError> {
        let account = self
            .accounts
            .by_name(&self.account)
            .ok_or_else(|| ReconcileError::UnknownAccount(self.account.clone()))?;
        let from = (since - to_delta(self.settings.gap_lookback)).date_naive();
        let to = Utc::now().date_naive();
        info!(%from, %to, "reconciling the time the socket was down");
        self.reconciler
            .pass(account, from, to, Handover::Send(Origin::Reconcile), None)
            .await
    }
}

enum Received {
    Ok,
    /// Not stored (the broker was unavailable) at this moment.
    Lost(DateTime<Utc>),
    /// Zoom refused the subscription: the socket is useless.
    Refused,
}

/// Waits `wait` (renewing the lease meanwhile).
async fn wait_holding(held: &mut Held, wait: Duration, shutdown: &CancellationToken) -> Waited {
    let until = Instant::now() + wait;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Waited::Shutdown,
            () = sleep_until(until.min(held.renew_at)) => {}
        }
        if !held.keep().await {
            return Waited::LeaseLost;
        }
        if Instant::now() >= until {
            return Waited::Elapsed;
        }
    }
}

/// `false` when shut down meanwhile.
async fn pause(wait: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_with_jitter_and_start_over() {
        let settings = WebsocketSettings {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            ..WebsocketSettings::default()
        };
        let mut backoff = Backoff::new(&settings);
        let pauses: Vec<Duration> = (0..6).map(|_| backoff.next()).collect();
        for (pause, base) in pauses.iter().zip([1, 2, 4, 8, 8, 8]) {
            let base = Duration::from_secs(base);
            assert!(
                *pause >= base / 2 && *pause <= base,
                "{pause:?} for {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next() <= Duration::from_secs(1));
    }
}
