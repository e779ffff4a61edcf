//! Prometheus metrics of the WebSocket delivery, registered in the process's registry.

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

    pub(crate) fn connected(&self, account: &str, connected: bool) {
        self.connected
            .get_or_create(&Self::account(account))
            .set(i64::from(connected));
    }

    pub(crate) fn standby(&self, account: &str, standby: bool) {
        self.standby
            .get_or_create(&Self::account(account))
            .set(i64::from(standby));
    }

    pub(crate) fn frame(&self, account: &str) {
        self.last_frame
            .get_or_create(&Self::account(account))
            .set(chrono::Utc::now().timestamp());
    }

    pub(crate) fn reconnect(&self, account: &str) {
        self.reconnects.get_or_create(&Self::account(account)).inc();
    }

    pub(crate) fn event_stored(&self, account: &str) {
        self.events.get_or_create(&Self::account(account)).inc();
    }

    pub(crate) fn failure(&self, account: &str, reason: &str) {
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
