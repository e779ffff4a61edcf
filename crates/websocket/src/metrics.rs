//! Prometheus metrics of the WebSocket delivery, registered in the process's registry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    account: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    account: String,
    outcome: String,
}

#[derive(Clone)]
pub struct Metrics {
    connected: Family<AccountLabel, Gauge>,
    standby: Family<AccountLabel, Gauge>,
    last_frame: Family<AccountLabel, Gauge>,
    reconnects: Family<AccountLabel, Counter>,
    events: Family<AccountLabel, Counter>,
    failures: Family<ReasonLabels, Counter>,
    gap_passes: Family<OutcomeLabels, Counter>,
    /// The same facts per account, for the status stream's socket reports.
    sockets: Arc<Mutex<BTreeMap<String, Socket>>>,
}

/// A subscription's socket as the status stream is told of it.
#[derive(Debug, Clone, Default)]
pub struct Socket {
    pub state: &'static str,
    pub last_frame_at: Option<DateTime<Utc>>,
    pub reconnects: u64,
    pub events: u64,
    pub last_failure: Option<String>,
    /// Something worth telling at once happened since the last report (a state, a failure).
    pub changed: bool,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            connected: Family::default(),
            standby: Family::default(),
            last_frame: Family::default(),
            reconnects: Family::default(),
            events: Family::default(),
            failures: Family::default(),
            gap_passes: Family::default(),
            sockets: Arc::default(),
        };
        let registry = registry.sub_registry_with_prefix("zoom_relay_websocket");
        registry.register(
            "connected",
            "1 while the subscription's socket is open",
            metrics.connected.clone(),
        );
        registry.register(
            "standby",
            "1 while another replica holds the subscription's lease",
            metrics.standby.clone(),
        );
        registry.register(
            "last_frame_timestamp_seconds",
            "When the last frame was received",
            metrics.last_frame.clone(),
        );
        registry.register(
            "reconnects",
            "Connections replaced after a close, an error or silence",
            metrics.reconnects.clone(),
        );
        registry.register(
            "events",
            "Events received over the socket and stored in the broker",
            metrics.events.clone(),
        );
        registry.register(
            "failures",
            "What ended or prevented a connection, or lost an event, by reason",
            metrics.failures.clone(),
        );
        registry.register(
            "gap_passes",
            "Reconciliation passes over the time a socket was down, by outcome",
            metrics.gap_passes.clone(),
        );
        metrics
    }

    fn account(account: &str) -> AccountLabel {
        AccountLabel {
            account: account.to_owned(),
        }
    }

    fn socket(&self, account: &str, update: impl FnOnce(&mut Socket)) {
        let mut sockets = match self.sockets.lock() {
            Ok(sockets) => sockets,
            Err(poisoned) => poisoned.into_inner(),
        };
        update(sockets.entry(account.to_owned()).or_insert_with(|| Socket {
            state: "connecting",
            changed: true,
            ..Socket::default()
        }));
    }

    /// The account's socket as last seen, marked told.
    pub(crate) fn take_socket(&self, account: &str) -> Socket {
        let mut taken = Socket::default();
        self.socket(account, |socket| {
            taken = socket.clone();
            socket.changed = false;
        });
        taken
    }

    /// The account's socket is to be told again (its last report was not published).
    pub(crate) fn mark_changed(&self, account: &str) {
        self.socket(account, |socket| socket.changed = true);
    }

    fn set_state(&self, account: &str, state: &'static str) {
        self.socket(account, |socket| {
            socket.changed |= socket.state != state;
            socket.state = state;
        });
    }

    pub(crate) fn connected(&self, account: &str, connected: bool) {
        self.connected
            .get_or_create(&Self::account(account))
            .set(i64::from(connected));
        self.set_state(account, if connected { "connected" } else { "connecting" });
    }

    pub(crate) fn standby(&self, account: &str, standby: bool) {
        self.standby
            .get_or_create(&Self::account(account))
            .set(i64::from(standby));
        self.set_state(account, if standby { "standby" } else { "connecting" });
    }

    pub(crate) fn frame(&self, account: &str) {
        let now = Utc::now();
        self.last_frame
            .get_or_create(&Self::account(account))
            .set(now.timestamp());
        self.socket(account, |socket| socket.last_frame_at = Some(now));
    }

    pub(crate) fn reconnect(&self, account: &str) {
        self.reconnects.get_or_create(&Self::account(account)).inc();
        self.socket(account, |socket| socket.reconnects += 1);
    }

    pub(crate) fn event_stored(&self, account: &str) {
        self.events.get_or_create(&Self::account(account)).inc();
        self.socket(account, |socket| socket.events += 1);
    }

    pub(crate) fn failure(&self, account: &str, reason: &str) {
        self.socket(account, |socket| {
            socket.changed |= socket.last_failure.as_deref() != Some(reason);
            socket.last_failure = Some(reason.to_owned());
        });
        self.failures
            .get_or_create(&ReasonLabels {
                account: account.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub(crate) fn gap_pass(&self, account: &str, outcome: &str) {
        self.gap_passes
            .get_or_create(&OutcomeLabels {
                account: account.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}
