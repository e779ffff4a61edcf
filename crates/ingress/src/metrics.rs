//! Prometheus metrics of the ingress, registered in the process's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

#[derive(Clone)]
pub struct Metrics {
    requests: Family<OutcomeLabels, Counter>,
    events: Family<EventLabels, Counter>,
    publish_seconds: Histogram,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("zoom_relay_ingress");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "requests",
            "Webhook requests by outcome (accepted, url_validation, or an error code)",
            requests.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Verified events stored in the broker, by event name",
            events.clone(),
        );
        // 1 ms .. ~8 s: persistent confirms batch fsyncs and can reach hundreds of ms.
        let publish_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "publish_confirm_seconds",
            "Time from publish to the broker's confirm",
            publish_seconds.clone(),
        );
        Self {
            requests,
            events,
            publish_seconds,
        }
    }

    pub fn request(&self, outcome: &str) {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// An event the broker confirmed: counts it, its request as `accepted`, and the latency.
    pub fn event_stored(&self, event: &str, seconds: f64) {
        self.request("accepted");
        self.events
            .get_or_create(&EventLabels {
                event: event.to_owned(),
            })
            .inc();
        self.publish_seconds.observe(seconds);
    }
}
