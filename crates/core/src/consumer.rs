//! The one consumer loop every stage runs; a stage supplies only its logic ([`Stage::handle`]).
//!
//! A stage declares its input, a [`Task`]; a task type names the one stage it goes to, so
//! [`Context::send`] builds the queue and the idempotency key from the type, and handing a task to
//! the wrong stage does not compile.
//!
//! The loop owns: waiting for a broker session and resubscribing on every new one (nobody trusts
//! lapin's consumer recovery), declaring the topology, prefetch, the account [`Binding`] (read
//! from every delivery, refused when absent, copied onto everything sent on), the delivery limit
//! (from the quorum queue's `x-delivery-count`), decoding, a tracing span per message, bounded
//! concurrency, catching a handler's panic, acking only after the handler returned (so after its
//! output was confirmed), retry tiers, dead-lettering with the reason, and draining on shutdown.
//!
//! Outcomes of a handler:
//! - `Ok(())`: ack.
//! - [`StageError::Failed`] with a retryable [`Code`]: republish (confirmed) to the retry tier for
//!   its attempt, with `x-attempt` + 1, then ack; after `max_attempts`, dead-letter instead.
//! - [`StageError::Failed`] with a permanent code: dead-letter at once (confirmed), then ack.
//! - [`StageError::Wait`]: come back after about that long without spending an attempt; past its
//!   deadline (counted from the first wait), dead-letter with the deadline's code.
//! - a panic: [`Code::HandlerPanicked`], retried, then dead-lettered; the loop goes on.
//!
//! Every dead letter also publishes a `failed` transition to the status stream. If a republish
//! fails the delivery is nacked and requeued: nothing is dropped, and the delivery limit bounds
//! the loop. A delivery from a session that is gone cannot be acked; RabbitMQ redelivers it, which
//! every stage tolerates (they are idempotent).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, warn};

use crate::binding::{Binding, header, int_header, set_int, set_text};
use crate::broker::{Broker, Outgoing, PublishError, Session, StageName, Topology};
use crate::failure::{Code, StageError};
use crate::metrics::StageMetrics;
use crate::status::{State, StatusMessage, Transition};

/// How long a delivery whose outcome could not be republished waits before it is returned.
const REPUBLISH_BACKOFF: Duration = Duration::from_secs(5);

/// Who a message is about: the fields of its tracing span (the account comes from the binding).
#[derive(Debug, Default, Clone)]
pub struct Subject {
    pub meeting_uuid: String,
    pub file_id: Option<String>,
    pub event: Option<String>,
}

/// A unit of work for one stage.
pub trait Task: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stage that takes this task.
    const STAGE: StageName;

    /// The work's identity, from Zoom's identities (never the delivery's): the message id, by
    /// which duplicates are told apart.
    fn key(&self) -> String;

    fn subject(&self) -> Subject;
}

/// A stage's logic. Everything else is the loop's.
pub trait Stage: Send + Sync + 'static {
    type Input: Task;

    /// Handles one message. Returning `Ok` means its output is durable (published and confirmed,
    /// or written): the delivery is acked right after.
    fn handle(
        &self,
        input: Self::Input,
        context: &Context,
    ) -> impl Future<Output = Result<(), StageError>> + Send;
}

/// Where a handler's output goes: the broker, or a recording in tests.
pub trait Outbox: Send + Sync {
    /// Publishes `body` to `stage`'s queue, confirmed, with `key` as its message id.
    fn send(
        &self,
        stage: StageName,
        key: String,
        body: Vec<u8>,
        headers: FieldTable,
    ) -> BoxFuture<'_, Result<(), PublishError>>;

    /// Publishes a transition or a report to the status stream, confirmed.
    fn record(&self, message: StatusMessage) -> BoxFuture<'_, Result<(), PublishError>>;
}

/// What a handler may use besides its own state.
pub struct Context {
    binding: Binding,
    message_id: Option<String>,
    attempt: u32,
    rechecking: bool,
    outbox: Arc<dyn Outbox>,
}

impl Context {
    pub fn new(
        binding: Binding,
        message_id: Option<String>,
        attempt: u32,
        outbox: Arc<dyn Outbox>,
    ) -> Self {
        Self {
            binding,
            message_id,
            attempt,
            rechecking: false,
            outbox,
        }
    }

    /// Marks the message as back from a [`StageError::Wait`].
    pub fn rechecking(mut self, rechecking: bool) -> Self {
        self.rechecking = rechecking;
        self
    }

    /// Whether this message came back after the handler asked it to wait: what was done the
    /// first time need not be done again.
    pub fn is_recheck(&self) -> bool {
        self.rechecking
    }

    /// The account this message acts for, as verified where it entered.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// The delivery's `message_id`: the event's tracking id, or the work's key.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Hands `task` to its stage, confirmed, under this message's binding.
    pub async fn send<T: Task>(&self, task: &T) -> Result<(), StageError> {
        let body = serde_json::to_vec(task)
            .map_err(|error| StageError::from_error(Code::Undecodable, &error))?;
        self.outbox
            .send(T::STAGE, task.key(), body, self.binding.to_headers())
            .await
            .map_err(|error| StageError::from_error(Code::PublishFailed, &error))
    }

    /// Records a meeting's transition in the status stream, confirmed.
    pub async fn record(&self, transition: Transition) -> Result<(), StageError> {
        self.outbox
            .record(StatusMessage::Transition(transition))
            .await
            .map_err(|error| StageError::from_error(Code::PublishFailed, &error))
    }
}

/// The broker as an outbox: the default exchange to a stage's queue, the status stream.
pub struct BrokerOutbox {
    broker: Broker,
}

impl BrokerOutbox {
    pub fn new(broker: Broker) -> Self {
        Self { broker }
    }
}

impl Outbox for BrokerOutbox {
    fn send(
        &self,
        stage: StageName,
        key: String,
        body: Vec<u8>,
        headers: FieldTable,
    ) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            let queue = self.broker.topology().stage_queue(stage);
            self.broker
                .publisher()
                .publish(
                    Outgoing::new("", &queue, &body)
                        .message_id(&key)
                        .headers(headers),
                )
                .await
        })
    }

    fn record(&self, message: StatusMessage) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move { message.publish(&self.broker).await })
    }
}

/// How one stage process consumes.
#[derive(Debug, Clone, Copy)]
pub struct LoopSettings {
    /// Messages handled concurrently.
    pub concurrency: usize,
    /// Messages the broker sends ahead (quorum queues cap it at 2,000).
    pub prefetch: u16,
    /// Attempts before a retryable failure is dead-lettered.
    pub max_attempts: u32,
    /// Deliveries allowed before a message whose consumers keep dying is dead-lettered.
    pub delivery_limit: u32,
    /// In-flight work is given this long to finish on shutdown.
    pub drain_timeout: Duration,
}

/// Runs `stage` until `shutdown`, then drains in-flight work within `drain_timeout`.
pub async fn run<S: Stage>(
    broker: Broker,
    stage: Arc<S>,
    settings: LoopSettings,
    metrics: StageMetrics,
    shutdown: CancellationToken,
) {
    let name = S::Input::STAGE;
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut sessions = broker.sessions();
    let worker = Worker {
        outbox: Arc::new(BrokerOutbox::new(broker.clone())),
        broker,
        stage,
        settings,
        metrics,
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
            .consume(&session, &mut sessions, &permits, &tracker, &shutdown)
            .await;
        match ended {
            Ended::Shutdown => break,
            Ended::SessionChanged => {
                debug!(stage = name.as_str(), "session changed, resubscribing")
            }
            Ended::Failed(reason) => {
                warn!(
                    stage = name.as_str(),
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
    let drain = worker.settings.drain_timeout;
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        warn!(
            stage = name.as_str(),
            ?drain,
            "drain deadline passed; unfinished work will be redelivered"
        );
    }
    info!(stage = name.as_str(), "stage stopped");
}

enum Ended {
    Shutdown,
    SessionChanged,
    Failed(String),
}

struct Worker<S> {
    broker: Broker,
    outbox: Arc<dyn Outbox>,
    stage: Arc<S>,
    settings: LoopSettings,
    metrics: StageMetrics,
}

impl<S> Clone for Worker<S> {
    fn clone(&self) -> Self {
        Self {
            broker: self.broker.clone(),
            outbox: self.outbox.clone(),
            stage: self.stage.clone(),
            settings: self.settings,
            metrics: self.metrics.clone(),
        }
    }
}

/// What the loop does with a delivery once its handler is done.
#[derive(Debug, PartialEq)]
enum Verdict {
    Ack,
    /// To the retry tier of this delay, as attempt `attempt`.
    Retry {
        delay: Duration,
        attempt: u32,
        code: Code,
        reason: String,
    },
    /// To a retry tier without spending an attempt; `since` starts the wait's clock.
    Wait {
        delay: Duration,
        since: i64,
    },
    DeadLetter {
        code: Code,
        reason: String,
    },
}

/// The retry, wait or dead-letter decision, without a broker.
fn decide(
    outcome: Result<(), StageError>,
    attempt: u32,
    max_attempts: u32,
    delays: &[Duration],
    waiting_since: Option<i64>,
    now_ms: i64,
) -> Verdict {
    let tier = |index: usize| {
        delays
            .get(index.min(delays.len().saturating_sub(1)))
            .copied()
            .unwrap_or(Duration::from_secs(10))
    };
    match outcome {
        Ok(()) => Verdict::Ack,
        Err(StageError::Failed { code, reason })
            if code.is_retryable() && attempt < max_attempts =>
        {
            Verdict::Retry {
                delay: tier(attempt.saturating_sub(1) as usize),
                attempt: attempt + 1,
                code,
                reason,
            }
        }
        Err(StageError::Failed { code, reason }) => Verdict::DeadLetter { code, reason },
        Err(StageError::Wait {
            code,
            reason,
            retry_in,
            give_up_after,
        }) => {
            let since = waiting_since.unwrap_or(now_ms);
            let waited = Duration::from_millis(now_ms.saturating_sub(since).max(0) as u64);
            if let Some(limit) = give_up_after
                && waited >= limit
            {
                let code = match code {
                    Code::FileProcessing => Code::FileProcessingTimeout,
                    other => other,
                };
                return Verdict::DeadLetter {
                    code,
                    reason: format!("still waiting after {}: {reason}", humanize(waited)),
                };
            }
            // The longest tier not longer than the wait; the shortest when all are longer.
            let delay = delays
                .iter()
                .rev()
                .find(|delay| **delay <= retry_in)
                .copied()
                .unwrap_or_else(|| tier(0));
            Verdict::Wait { delay, since }
        }
    }
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl<S: Stage> Worker<S> {
    fn name(&self) -> StageName {
        S::Input::STAGE
    }

    async fn consume(
        &self,
        session: &Arc<Session>,
        sessions: &mut tokio::sync::watch::Receiver<Option<Arc<Session>>>,
        permits: &Arc<Semaphore>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Ended {
        let topology = self.broker.topology();
        let queue = topology.stage_queue(self.name());
        let consumer_tag = format!(
            "{}-{}-{}",
            self.name().as_str(),
            std::process::id(),
            session.generation
        );
        let subscribe = async {
            // A queue deleted while we were connected would leave a consumer that dies silently.
            topology
                .declare_stage(&session.connection, self.name())
                .await?;
            let channel = session.connection.create_channel().await?;
            channel
                .basic_qos(self.settings.prefetch, BasicQosOptions::default())
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
        info!(stage = self.name().as_str(), queue, "consuming");
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
        let headers = delivery.properties.headers().as_ref();
        let header_int = |key: &str| headers.and_then(|headers| int_header(headers, key));
        let attempt = header_int(header::ATTEMPT)
            .and_then(|attempt| u32::try_from(attempt).ok())
            .unwrap_or(1)
            .max(1);
        let stage = self.name().as_str();
        let binding = match Binding::from_headers(headers) {
            Ok(binding) => binding,
            Err(error) => {
                let reason = error.to_string();
                warn!(stage, code = %Code::MissingBinding, reason, "refused");
                self.dead_letter(&delivery, None, attempt, Code::MissingBinding, &reason)
                    .await;
                return;
            }
        };
        let span = tracing::info_span!(
            "stage",
            stage,
            account = binding.account,
            account_id = binding.account_id,
            origin = binding.origin.as_str(),
            meeting_uuid = tracing::field::Empty,
            file_id = tracing::field::Empty,
            event = tracing::field::Empty,
            attempt,
        );
        async {
            let deliveries = header_int(header::DELIVERY_COUNT).unwrap_or(0);
            if deliveries > i64::from(self.settings.delivery_limit) {
                let reason = format!(
                    "delivered {} times; its consumers kept stopping before they finished",
                    deliveries + 1
                );
                self.fail(
                    &delivery,
                    &binding,
                    None,
                    attempt,
                    Code::DeliveryLimit,
                    &reason,
                )
                .await;
                return;
            }
            let input: S::Input = match serde_json::from_slice(&delivery.data) {
                Ok(input) => input,
                Err(error) => {
                    let reason = error.to_string();
                    self.fail(
                        &delivery,
                        &binding,
                        None,
                        attempt,
                        Code::Undecodable,
                        &reason,
                    )
                    .await;
                    return;
                }
            };
            let subject = input.subject();
            let span = tracing::Span::current();
            span.record("meeting_uuid", subject.meeting_uuid.as_str());
            if let Some(file_id) = &subject.file_id {
                span.record("file_id", file_id.as_str());
            }
            if let Some(event) = &subject.event {
                span.record("event", event.as_str());
            }
            let context = Context::new(
                binding.clone(),
                delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string()),
                attempt,
                self.outbox.clone(),
            )
            .rechecking(header_int(header::WAITING_SINCE).is_some());
            let _in_flight = self.metrics.in_flight(self.name());
            let started = std::time::Instant::now();
            let outcome = AssertUnwindSafe(self.stage.handle(input, &context))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let reason = panic
                        .downcast_ref::<&str>()
                        .map(|text| text.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".into());
                    error!(reason, "stage handler panicked");
                    Err(StageError::new(Code::HandlerPanicked, reason))
                });
            self.metrics
                .observe(self.name(), started.elapsed().as_secs_f64());
            self.settle(&delivery, &binding, &subject, attempt, outcome)
                .await;
        }
        .instrument(span)
        .await
    }

    /// Acks, or republishes to a retry tier or the dead-letter queue and then acks.
    async fn settle(
        &self,
        delivery: &Delivery,
        binding: &Binding,
        subject: &Subject,
        attempt: u32,
        outcome: Result<(), StageError>,
    ) {
        let topology: &Topology = self.broker.topology();
        let waiting_since = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| int_header(headers, header::WAITING_SINCE));
        let verdict = decide(
            outcome,
            attempt,
            self.settings.max_attempts,
            topology.retry_delays(),
            waiting_since,
            now_ms(),
        );
        let name = self.name();
        let republished = match verdict {
            Verdict::Ack => {
                self.metrics.outcome(name, "ok");
                Ok(())
            }
            Verdict::Wait { delay, since } => {
                debug!(?delay, "waiting");
                self.metrics.outcome(name, "waiting");
                let queue = topology.retry_queue(name, delay);
                self.republish(delivery, &queue, |headers| {
                    set_int(headers, header::ATTEMPT, i64::from(attempt));
                    set_int(headers, header::WAITING_SINCE, since);
                })
                .await
            }
            Verdict::Retry {
                delay,
                attempt,
                code,
                reason,
            } => {
                warn!(%code, reason, ?delay, "failed, will retry");
                self.metrics.outcome(name, "retried");
                let queue = topology.retry_queue(name, delay);
                self.republish(delivery, &queue, |headers| {
                    set_int(headers, header::ATTEMPT, i64::from(attempt));
                })
                .await
            }
            Verdict::DeadLetter { code, reason } => {
                self.fail(delivery, binding, Some(subject), attempt, code, &reason)
                    .await;
                return;
            }
        };
        self.finish(delivery, republished).await;
    }

    /// Dead-letters a message of a known account and records the failure in its meeting's
    /// history.
    async fn fail(
        &self,
        delivery: &Delivery,
        binding: &Binding,
        subject: Option<&Subject>,
        attempt: u32,
        code: Code,
        reason: &str,
    ) {
        error!(%code, reason, attempts = attempt, "failed for good, dead-lettered");
        if let Some(subject) = subject.filter(|subject| !subject.meeting_uuid.is_empty()) {
            let mut transition = Transition::new(
                binding,
                &subject.meeting_uuid,
                State::Failed,
                self.name().as_str(),
            );
            transition.file_id = subject.file_id.clone();
            transition.code = Some(code.as_str().to_owned());
            transition.reason = Some(reason.to_owned());
            transition.attempt = Some(attempt);
            if let Err(error) = self
                .outbox
                .record(StatusMessage::Transition(transition))
                .await
            {
                warn!(%error, "could not record the failure in the status stream");
            }
        }
        self.dead_letter(delivery, Some(binding), attempt, code, reason)
            .await;
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        _binding: Option<&Binding>,
        attempt: u32,
        code: Code,
        reason: &str,
    ) {
        self.metrics.dead_lettered(self.name(), code);
        let queue = self.broker.topology().dead_letter_queue(self.name());
        let stage = self.name().as_str();
        let republished = self
            .republish(delivery, &queue, |headers| {
                set_int(headers, header::ATTEMPT, i64::from(attempt));
                set_text(headers, header::STAGE, stage);
                set_text(headers, header::ERROR_CODE, code.as_str());
                set_text(headers, header::ERROR, reason);
            })
            .await;
        self.finish(delivery, republished).await;
    }

    async fn finish(&self, delivery: &Delivery, republished: Result<(), PublishError>) {
        let acked = match republished {
            Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
            Err(error) => {
                warn!(%error, "could not republish; returning the message to its queue");
                // Not at once: a broker refusing publishes (a resource alarm) would have the
                // message back in a moment, its work redone, over and over.
                tokio::time::sleep(REPUBLISH_BACKOFF).await;
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
        annotate: impl FnOnce(&mut FieldTable),
    ) -> Result<(), PublishError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        annotate(&mut headers);
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

#[cfg(test)]
mod tests {
    use super::*;

    const DELAYS: [Duration; 3] = [
        Duration::from_secs(10),
        Duration::from_secs(60),
        Duration::from_secs(300),
    ];

    fn failed(code: Code) -> Result<(), StageError> {
        Err(StageError::new(code, "why"))
    }

    #[test]
    fn retryable_failures_climb_the_tiers_then_dead_letter() {
        let decide = |attempt| decide(failed(Code::StorageFailed), attempt, 4, &DELAYS, None, 0);
        assert!(matches!(
            decide(1),
            Verdict::Retry { delay, attempt: 2, code: Code::StorageFailed, .. } if delay == DELAYS[0]
        ));
        assert!(matches!(
            decide(3),
            Verdict::Retry { delay, attempt: 4, .. } if delay == DELAYS[2]
        ));
        assert!(matches!(
            decide(4),
            Verdict::DeadLetter {
                code: Code::StorageFailed,
                ..
            }
        ));
    }

    #[test]
    fn permanent_failures_dead_letter_at_once() {
        assert!(matches!(
            decide(failed(Code::HtmlInsteadOfFile), 1, 8, &DELAYS, None, 0),
            Verdict::DeadLetter {
                code: Code::HtmlInsteadOfFile,
                ..
            }
        ));
    }

    #[test]
    fn a_wait_spends_no_attempt_and_gives_up_at_its_deadline() {
        let wait = || {
            Err(StageError::Wait {
                code: Code::FileProcessing,
                reason: "transcript".into(),
                retry_in: Duration::from_secs(120),
                give_up_after: Some(Duration::from_secs(3600)),
            })
        };
        assert_eq!(
            decide(wait(), 1, 8, &DELAYS, None, 5_000),
            Verdict::Wait {
                delay: DELAYS[1],
                since: 5_000
            },
            "the clock starts at the first wait, on the longest tier that fits"
        );
        assert_eq!(
            decide(wait(), 1, 8, &DELAYS, Some(5_000), 5_000 + 3_599_000),
            Verdict::Wait {
                delay: DELAYS[1],
                since: 5_000
            }
        );
        assert!(matches!(
            decide(wait(), 1, 8, &DELAYS, Some(5_000), 5_000 + 3_600_000),
            Verdict::DeadLetter {
                code: Code::FileProcessingTimeout,
                ..
            }
        ));
    }

    #[test]
    fn a_wait_shorter_than_every_tier_takes_the_shortest() {
        let wait = Err(StageError::wait(
            Code::Waiting,
            "claim",
            Duration::from_secs(1),
        ));
        assert_eq!(
            decide(wait, 1, 8, &DELAYS, None, 0),
            Verdict::Wait {
                delay: DELAYS[0],
                since: 0
            }
        );
    }
}
