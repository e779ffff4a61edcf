//! Running a stage's handler without a broker: an outbox that records what it was given, so
//! decisions are table-tested in the stage's own crate and broker tests prove only the wiring.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use lapin::types::FieldTable;

use crate::binding::Binding;
use crate::broker::{PublishError, StageName};
use crate::consumer::{Context, Outbox};
use crate::status::{StatusMessage, Transition};

/// One message a handler sent on.
#[derive(Debug, Clone)]
pub struct Sent {
    pub stage: StageName,
    pub key: String,
    pub body: serde_json::Value,
    pub binding: Binding,
}

/// Records every message and transition; fails every send while `failing` is set.
#[derive(Default)]
pub struct RecordingOutbox {
    pub sent: Mutex<Vec<Sent>>,
    pub recorded: Mutex<Vec<StatusMessage>>,
    pub failing: std::sync::atomic::AtomicBool,
}

impl RecordingOutbox {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A handler context for a message bound to `binding`, sending here.
    pub fn context(self: &Arc<Self>, binding: Binding) -> Context {
        Context::new(binding, None, 1, self.clone())
    }

    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.sent).clone()
    }

    pub fn sent_to(&self, stage: StageName) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|sent| sent.stage == stage)
            .collect()
    }

    pub fn transitions(&self) -> Vec<Transition> {
        lock(&self.recorded)
            .iter()
            .filter_map(|message| match message {
                StatusMessage::Transition(transition) => Some(transition.clone()),
                _ => None,
            })
            .collect()
    }

    /// Everything recorded in the status stream: transitions and reports.
    pub fn recorded(&self) -> Vec<StatusMessage> {
        lock(&self.recorded).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Outbox for RecordingOutbox {
    fn send(
        &self,
        stage: StageName,
        key: String,
        body: Vec<u8>,
        headers: FieldTable,
    ) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(PublishError::Unavailable);
            }
            let binding = Binding::from_headers(Some(&headers))
                .unwrap_or_else(|error| panic!("sent without a binding: {error}"));
            lock(&self.sent).push(Sent {
                stage,
                key,
                body: serde_json::from_slice(&body).unwrap_or_default(),
                binding,
            });
            Ok(())
        })
    }

    fn record(&self, message: StatusMessage) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(PublishError::Unavailable);
            }
            lock(&self.recorded).push(message);
            Ok(())
        })
    }
}
