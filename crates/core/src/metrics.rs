//! Prometheus metrics shared by every component of a process: one registry, built by the
//! composition root, each component registering its families before it starts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::broker::StageName;
use crate::failure::Code;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub stage: String,
    /// `ok`, `retried`, `waiting`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub stage: String,
    pub code: String,
}

fn stage_label(stage: StageName) -> StageLabel {
    StageLabel {
        stage: stage.as_str().to_owned(),
    }
}

/// What every stage's consumer loop counts. Cheap to clone (the families are shared).
#[derive(Clone)]
pub struct StageMetrics {
    messages: Family<OutcomeLabels, Counter>,
    dead_lettered: Family<CodeLabels, Counter>,
    in_flight: Family<StageLabel, Gauge>,
    seconds: Family<StageLabel, Histogram>,
    bytes: Family<StageLabel, Counter>,
}

impl StageMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            messages: Family::default(),
            dead_lettered: Family::default(),
            in_flight: Family::default(),
            // 10 ms .. ~45 min: a stage's work ranges from a marker write to a large transfer.
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 19))
            }),
            bytes: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("zoom_relay_stage");
        registry.register(
            "messages",
            "Messages a stage handled, by outcome (ok, retried, waiting)",
            metrics.messages.clone(),
        );
        registry.register(
            "dead_lettered",
            "Messages a stage gave up on, by failure code",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "in_flight",
            "Messages a stage is working on now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "duration_seconds",
            "Time a stage spent on one message",
            metrics.seconds.clone(),
        );
        registry.register(
            "bytes",
            "Recording bytes a stage moved",
            metrics.bytes.clone(),
        );
        metrics
    }

    pub fn outcome(&self, stage: StageName, outcome: &str) {
        self.messages
            .get_or_create(&OutcomeLabels {
                stage: stage.as_str().to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn dead_lettered(&self, stage: StageName, code: Code) {
        self.dead_lettered
            .get_or_create(&CodeLabels {
                stage: stage.as_str().to_owned(),
                code: code.as_str().to_owned(),
            })
            .inc();
    }

    pub fn observe(&self, stage: StageName, seconds: f64) {
        self.seconds
            .get_or_create(&stage_label(stage))
            .observe(seconds);
    }

    pub fn add_bytes(&self, stage: StageName, bytes: u64) {
        self.bytes.get_or_create(&stage_label(stage)).inc_by(bytes);
    }

    /// Counts one message in flight until the guard drops.
    pub fn in_flight(&self, stage: StageName) -> InFlight {
        let gauge = self.in_flight.get_or_create(&stage_label(stage)).clone();
        gauge.inc();
        InFlight(gauge)
    }
}

pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The registry in text form, for `/metrics`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}
