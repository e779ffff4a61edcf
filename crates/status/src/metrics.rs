//! The status process's series (docs/metrics.md, "Status"), computed from the view and the last
//! queue figures at each scrape: a meeting or a queue that is gone leaves no stale series.

use chrono::Utc;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::StatusState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageKindLabels {
    stage: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountStateLabels {
    account: String,
    state: String,
}

struct StatusCollector {
    state: StatusState,
}

impl std::fmt::Debug for StatusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusCollector")
    }
}

/// Registers the status series in `registry`.
pub fn register(state: &StatusState, registry: &mut Registry) {
    registry.register_collector(Box::new(StatusCollector {
        state: state.clone(),
    }));
}

fn emit<S: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    family: &Family<S, Gauge>,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(metric)
}

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = Utc::now();
        let queues = self.state.queues(now);
        let messages = Family::<StageKindLabels, Gauge>::default();
        let consumers = Family::<StageLabel, Gauge>::default();
        let dead = Family::<StageLabel, Gauge>::default();
        let oldest = Family::<StageLabel, Gauge>::default();
        // Queue figures only from a look that worked: a stale depth would mislead the alerts.
        let figures_fresh = queues.management.ok;
        for stage in &queues.stages {
            let label = StageLabel {
                stage: stage.stage.clone(),
            };
            if figures_fresh {
                for (kind, value) in [("ready", stage.ready), ("unacked", stage.unacked)] {
                    if let Some(value) = value {
                        messages
                            .get_or_create(&StageKindLabels {
                                stage: stage.stage.clone(),
                                kind: kind.to_owned(),
                            })
                            .set(value as i64);
                    }
                }
                if let Some(value) = stage.consumers {
                    consumers.get_or_create(&label).set(value as i64);
                }
                if let Some(value) = stage.dead_letters {
                    dead.get_or_create(&label).set(value as i64);
                }
            }
            oldest
                .get_or_create(&label)
                .set(stage.oldest_pending_seconds.unwrap_or(0));
        }
        let meetings = Family::<AccountStateLabels, Gauge>::default();
        let at_risk = Family::<AccountLabel, Gauge>::default();
        for account in self.state.accounts(now).accounts {
            for (state, count) in &account.meetings {
                meetings
                    .get_or_create(&AccountStateLabels {
                        account: account.account.clone(),
                        state: state.clone(),
                    })
                    .set(*count as i64);
            }
            at_risk
                .get_or_create(&AccountLabel {
                    account: account.account.clone(),
                })
                .set(account.auto_delete_at_risk.len() as i64);
        }
        emit(
            &mut encoder,
            "zoom_relay_queue_messages",
            "Messages in a stage's queue, by kind (ready, unacked)",
            &messages,
        )?;
        emit(
            &mut encoder,
            "zoom_relay_queue_consumers",
            "Consumers subscribed to a stage's queue",
            &consumers,
        )?;
        emit(
            &mut encoder,
            "zoom_relay_dead_letters",
            "Messages waiting in a stage's dead-letter queue",
            &dead,
        )?;
        emit(
            &mut encoder,
            "zoom_relay_oldest_pending_seconds",
            "Age of the oldest meeting waiting at a stage, from its last transition",
            &oldest,
        )?;
        emit(
            &mut encoder,
            "zoom_relay_meetings",
            "Meetings by account and state",
            &meetings,
        )?;
        emit(
            &mut encoder,
            "zoom_relay_auto_delete_at_risk",
            "Recordings Zoom deletes soon that are not archived",
            &at_risk,
        )
    }
}
