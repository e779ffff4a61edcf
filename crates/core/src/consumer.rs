//! The one consumer loop every stage runs; a stage supplies only its logic ([`Stage::handle`]).
//!
//! The loop owns: waiting for a broker session and resubscribing on every new one (nobody trusts
//! lapin's consumer recovery), declaring the topology, prefetch, decoding, a tracing span per
//! message, bounded concurrency, acking only after the handler returned (so after its output was
//! confirmed), retry tiers, dead-lettering with the reason, and draining on shutdown.
//!
//! Outcomes of a handler:
//! - `Ok(())`: ack.
//! - [`StageError::Retry`]: republish (confirmed) to the retry tier for its attempt, with
//!   `x-attempt` + 1, then ack; after `pipeline.max_attempts`, dead-letter instead.
//! - [`StageError::Reject`]: dead-letter at once (confirmed), then ack.
//! - [`StageError::Defer`]: come back after about that long without spending an attempt.
//!
//! If the republish itself fails the delivery is nacked and requeued: nothing is dropped, and the
//! queue's `x-delivery-limit` bounds the loop. A delivery from a session that is gone cannot be
//! acked; RabbitMQ redelivers it, which every stage tolerates (they are idempotent).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, warn};

use crate::broker::{Broker, Outgoing, PublishError, Publisher, Session, StageName, Topology};
use crate::settings::{PipelineSettings, StageSettings};

const ATTEMPT_HEADER: &str = "x-attempt";

/// Who a message is about: the fields of its tracing span.
#[derive(Debug, Default, Clone)]
pub struct Subject {
    pub account: String,
    pub meeting_uuid: String,
    pub file_id: Option<String>,
    pub event: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Might work later (Zoom busy, file still processing, network).
    #[error("{code}: {reason}")]
    Retry { code: &'static str, reason: String },
    /// Will not work by waiting (a deleted file, a refused host, bad input).
    #[error("{code}: {reason}")]
    Reject { code: &'static str, reason: String },
    /// Not yet due (a grace period); does not count as an attempt.
    #[error("deferred for {0:?}")]
    Defer(Duration),
}

impl StageError {
    pub fn retry(code: &'static str, reason: impl ToString) -> Self {
        Self::Retry {
            code,
            reason: reason.to_string(),
        }
    }

    pub fn reject(code: &'static str, reason: impl ToString) -> Self {
        Self::Reject {
            code,
            reason: reason.to_string(),
        }
    }
}

impl From<PublishError> for StageError {
    fn from(error: PublishError) -> Self {
        Self::retry("publish_failed", error)
    }
}

/// A stage's logic. Everything else is the loop's.
pub trait Stage: Send + Sync + 'static {
    const NAME: StageName;
    type Message: DeserializeOwned + Send + 'static;

    fn subject(message: &Self::Message) -> Subject;

    /// Handles one message. Returning `Ok` means its output is durable (published and confirmed,
    /// or written): the delivery is acked right after.
    fn handle(
        &self,
        message: Self::Message,
        context: &Context,
    ) -> impl Future<Output = Result<(), StageError>> + Send;
}

/// What a handler may use besides its own state.
pub struct Context {
    pub publisher: Publisher,
    pub topology: Topology,
    /// The delivery's `message_id`: the event's tracking id, or the work's key.
    pub message_id: Option<String>,
}

impl Context {
    /// Hands `message` to `stage`, confirmed. `id` names the work (Zoom identities, not the
    /// delivery) so duplicates can be told apart in logs and by consumers.
    pub async fn send<M: Serialize>(
        &self,
        stage: StageName,
        id: &str,
        message: &M,
    ) -> Result<(), StageError> {
        let body = serde_json::to_vec(message)
            .map_err(|error| StageError::reject("unserialisable", error))?;
        let queue = self.topology.stage_queue(stage);
        self.publisher
            .publish(Outgoing::new("", &queue, &body).message_id(id))
            .await?;
        Ok(())
    }
}

/// Runs `stage` until `shutdown`, then drains in-flight work within `pipeline.drain_timeout`.
pub async fn run<S: Stage>(
    broker: Broker,
    stage: Arc<S>,
    stage_settings: StageSettings,
    pipeline: PipelineSettings,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(stage_settings.concurrency));
    let mut sessions = broker.sessions();
    let worker = Worker {
        broker: broker.clone(),
        stage,
        pipeline: Arc::new(pipeline),
    };
    loop {
        let session = sessions.borrow_and_update().clone();
        let Some(session) = session else {
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = sessions.changed() => if changed.is_err() { break },
            }
            continue;
        };
        let ended = worker
            .consume(
                &session,
                &mut sessions,
                stage_settings,
                &permits,
                &tracker,
                &shutdown,
            )
            .await;
        match ended {
            Ended::Shutdown => break,
            Ended::SessionChanged => {
                debug!(stage = S::NAME.as_str(), "session changed, resubscribing")
            }
            Ended::Failed(reason) => {
                warn!(
                    stage = S::NAME.as_str(),
                    reason, "consumer stopped, resubscribing"
                );
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    tracker.close();
    let drain = worker.pipeline.drain_timeout;
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        warn!(
            stage = S::NAME.as_str(),
            ?drain,
            "drain deadline passed; unfinished work will be redelivered"
        );
    }
    info!(stage = S::NAME.as_str(), "stage stopped");
}

enum Ended {
    Shutdown,
    SessionChanged,
    Failed(String),
}

struct Worker<S> {
    broker: Broker,
    stage: Arc<S>,
    pipeline: Arc<PipelineSettings>,
}

impl<S> Clone for Worker<S> {
    fn clone(&self) -> Self {
        Self {
            broker: self.broker.clone(),
            stage: self.stage.clone(),
            pipeline: self.pipeline.clone(),
        }
    }
}

impl<S: Stage> Worker<S> {
    async fn consume(
        &self,
        session: &Arc<Session>,
        sessions: &mut tokio::sync::watch::Receiver<Option<Arc<Session>>>,
        settings: StageSettings,
        permits: &Arc<Semaphore>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Ended {
        let topology = self.broker.topology();
        let queue = topology.stage_queue(S::NAME);
        let consumer_tag = format!(
            "{}-{}-{}",
            S::NAME.as_str(),
            std::process::id(),
            session.generation
        );
        let subscribe = async {
            let channel = session.connection.create_channel().await?;
            // A queue deleted while we were connected would leave a consumer that dies silently.
            topology.declare(&channel).await?;
            channel
                .basic_qos(settings.prefetch, BasicQosOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    consumer_tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((channel, consumer))
        };
        let (channel, mut consumer) =
            match tokio::time::timeout(self.broker.settings().connect_timeout, subscribe).await {
                Ok(Ok(subscribed)) => subscribed,
                Ok(Err(error)) => return Ended::Failed(error.to_string()),
                Err(_) => return Ended::Failed("subscribing timed out".into()),
            };
        info!(stage = S::NAME.as_str(), queue, "consuming");
        let generation = session.generation;
        loop {
            // Wait for capacity first: prefetched messages stay with the broker's accounting, and
            // a shutdown or lost session never strands one we took.
            let permit = tokio::select! {
                () = shutdown.cancelled() => return self.stop(&channel, &consumer_tag).await,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return Ended::Shutdown,
                },
            };
            let delivery = tokio::select! {
                () = shutdown.cancelled() => return self.stop(&channel, &consumer_tag).await,
                changed = sessions.changed() => {
                    let current = sessions.borrow().as_ref().map(|s| s.generation);
                    if changed.is_err() || current != Some(generation) {
                        return Ended::SessionChanged;
                    }
                    continue;
                }
                delivery = consumer.next() => delivery,
            };
            match delivery {
                Some(Ok(delivery)) => {
                    let worker = self.clone();
                    // The channel closes when its last handle drops, requeueing what it delivered:
                    // each task keeps it open until its own delivery is settled.
                    let channel = channel.clone();
                    tracker.spawn(async move {
                        worker.process(delivery).await;
                        drop(channel);
                        drop(permit);
                    });
                }
                Some(Err(error)) => return Ended::Failed(error.to_string()),
                None => return Ended::Failed("the broker cancelled the consumer".into()),
            }
        }
    }

    /// Stops deliveries; started work drains and acks on this channel (each task holds it open).
    /// Prefetched messages not started return to the queue when the channel closes.
    async fn stop(&self, channel: &lapin::Channel, consumer_tag: &str) -> Ended {
        let cancel = channel.basic_cancel(consumer_tag.into(), Default::default());
        let _ = tokio::time::timeout(Duration::from_secs(2), cancel).await;
        Ended::Shutdown
    }

    async fn process(&self, delivery: Delivery) {
        let attempt = header_u32(&delivery, ATTEMPT_HEADER).unwrap_or(1);
        let message: S::Message = match serde_json::from_slice(&delivery.data) {
            Ok(message) => message,
            Err(error) => {
                let failure = StageError::reject("undecodable", error);
                self.settle(&delivery, attempt, Err(failure)).await;
                return;
            }
        };
        let subject = S::subject(&message);
        let span = tracing::info_span!(
            "stage",
            stage = S::NAME.as_str(),
            account_id = subject.account,
            meeting_uuid = subject.meeting_uuid,
            file_id = subject.file_id,
            event = subject.event,
            attempt,
        );
        let context = Context {
            publisher: self.broker.publisher(),
            topology: self.broker.topology().clone(),
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string()),
        };
        let outcome = self
            .stage
            .handle(message, &context)
            .instrument(span.clone())
            .await;
        self.settle(&delivery, attempt, outcome)
            .instrument(span)
            .await;
    }

    /// Acks, or republishes to a retry tier or the dead-letter queue and then acks.
    async fn settle(&self, delivery: &Delivery, attempt: u32, outcome: Result<(), StageError>) {
        let topology = self.broker.topology();
        let delays = topology.retry_delays();
        let tier = |index: usize| delays[index.min(delays.len() - 1)];
        let republished = match &outcome {
            Ok(()) => Ok(()),
            Err(StageError::Defer(wait)) => {
                let delay = delays
                    .iter()
                    .rev()
                    .find(|delay| *delay <= wait)
                    .copied()
                    .unwrap_or(delays[0]);
                debug!(?delay, "deferred");
                self.republish(
                    delivery,
                    &topology.retry_queue(S::NAME, delay),
                    attempt,
                    None,
                )
                .await
            }
            Err(StageError::Retry { code, reason }) if attempt < self.pipeline.max_attempts => {
                let delay = tier(attempt as usize - 1);
                warn!(code, reason, ?delay, "failed, will retry");
                let queue = topology.retry_queue(S::NAME, delay);
                self.republish(delivery, &queue, attempt + 1, Some((code, reason)))
                    .await
            }
            Err(StageError::Retry { code, reason } | StageError::Reject { code, reason }) => {
                error!(
                    code,
                    reason,
                    attempts = attempt,
                    "failed for good, dead-lettered"
                );
                let queue = topology.dead_letter_queue(S::NAME);
                self.republish(delivery, &queue, attempt, Some((code, reason)))
                    .await
            }
        };
        let acked = match republished {
            Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
            Err(error) => {
                warn!(%error, "could not republish; returning the message to its queue");
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
        };
        match acked {
            Ok(true) => {}
            // A delivery from a session that is gone: RabbitMQ redelivers it.
            Ok(false) | Err(_) => {
                debug!("delivery from a previous session; it will be redelivered")
            }
        }
    }

    async fn republish(
        &self,
        delivery: &Delivery,
        queue: &str,
        attempt: u32,
        failure: Option<(&str, &str)>,
    ) -> Result<(), PublishError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(attempt)),
        );
        headers.insert(
            "x-stage".into(),
            AMQPValue::LongString(S::NAME.as_str().into()),
        );
        if let Some((code, reason)) = failure {
            headers.insert("x-error-code".into(), AMQPValue::LongString(code.into()));
            headers.insert("x-error".into(), AMQPValue::LongString(reason.into()));
        }
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string());
        let mut message = Outgoing::new("", queue, &delivery.data).headers(headers);
        if let Some(id) = &message_id {
            message = message.message_id(id);
        }
        self.broker.publisher().publish(message).await
    }
}

fn header_u32(delivery: &Delivery, key: &str) -> Option<u32> {
    match delivery.properties.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongLongInt(value) => u32::try_from(*value).ok(),
        AMQPValue::LongInt(value) => u32::try_from(*value).ok(),
        AMQPValue::LongUInt(value) => Some(*value),
        _ => None,
    }
}
