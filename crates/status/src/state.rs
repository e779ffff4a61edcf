//! What one status process holds: the view, the last queue figures, the readers' progress.
//! Cheap to clone; the readers write, the HTTP handlers, the metrics and the CLI read.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use relay_core::broker::{QueueFigures, StageName, Topology};
use relay_pipeline::settings::AccountSettings;
use tokio::sync::watch;

use crate::api::{AccountsPage, ManagementView, MeetingsPage, QueuesPage, StageView, Summary};
use crate::fold::{AccountConfig, Filter, FoldSettings, View};
use crate::reader::Progress;
use crate::settings::StatusSettings;

/// The last look at RabbitMQ's management API.
#[derive(Debug, Clone, Default)]
pub struct QueueState {
    pub figures: Vec<QueueFigures>,
    pub error: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct StatusState {
    inner: Arc<Inner>,
}

struct Inner {
    view: RwLock<View>,
    queues: RwLock<QueueState>,
    progress: watch::Sender<Progress>,
    last_failure: RwLock<Option<String>>,
    topology: Topology,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the fold needs of the configured accounts.
pub fn fold_settings(settings: &StatusSettings, accounts: &[AccountSettings]) -> FoldSettings {
    FoldSettings {
        max_meetings: settings.max_meetings,
        auto_delete_window: settings.auto_delete_window,
        accounts: accounts
            .iter()
            .map(|account| AccountConfig {
                name: account.name.clone(),
                account_id: account.account_id.clone(),
                cleanup_grace: account
                    .deletes()
                    .then(|| Duration::from_secs(u64::from(account.delete_after_days) * 86_400)),
            })
            .collect(),
    }
}

impl StatusState {
    pub fn new(fold: FoldSettings, topology: Topology) -> Self {
        let (progress, _) = watch::channel(Progress::default());
        Self {
            inner: Arc::new(Inner {
                view: RwLock::new(View::new(fold)),
                queues: RwLock::new(QueueState::default()),
                progress,
                last_failure: RwLock::new(None),
                topology,
            }),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Changes the view (the readers; tests).
    pub fn with_view<R>(&self, change: impl FnOnce(&mut View) -> R) -> R {
        change(&mut write(&self.inner.view))
    }

    pub fn read_view<R>(&self, look: impl FnOnce(&View) -> R) -> R {
        look(&read(&self.inner.view))
    }

    /// The last offsets folded from the status and the archive streams.
    pub fn folded_offsets(&self) -> (Option<i64>, Option<i64>) {
        self.read_view(|view| (view.status_offset(), view.archive_offset()))
    }

    /// Where a resubscription starts (after these).
    pub fn offsets(&self) -> (Option<i64>, Option<i64>) {
        self.folded_offsets()
    }

    pub fn progress(&self) -> Progress {
        *self.inner.progress.borrow()
    }

    pub fn set_connected(&self, connected: bool) {
        self.inner
            .progress
            .send_modify(|progress| progress.connected = connected);
    }

    /// A reader session failed: counted until one reads again.
    pub fn set_failure(&self, reason: String) {
        *write(&self.inner.last_failure) = Some(reason);
        self.inner
            .progress
            .send_modify(|progress| progress.failures += 1);
    }

    /// The readers are subscribed again: the failures in a row are over.
    pub fn set_reading(&self) {
        if self.progress().failures > 0 {
            self.inner
                .progress
                .send_modify(|progress| progress.failures = 0);
        }
    }

    /// Why the last reader session failed.
    pub fn last_failure(&self) -> Option<String> {
        read(&self.inner.last_failure).clone()
    }

    /// Waits until the readers caught up (`true`), failed `failures` sessions in a row or
    /// `timeout` passed (`false`).
    pub async fn wait_caught_up_or_failing(&self, timeout: Duration, failures: u32) -> bool {
        let mut progress = self.inner.progress.subscribe();
        let settled =
            progress.wait_for(|progress| progress.caught_up || progress.failures >= failures);
        matches!(
            tokio::time::timeout(timeout, settled).await,
            Ok(Ok(progress)) if progress.caught_up
        )
    }

    pub fn set_caught_up(&self) {
        self.inner
            .progress
            .send_modify(|progress| progress.caught_up = true);
    }

    /// Waits until the readers caught up, at most `timeout`; returns whether they did.
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let mut progress = self.inner.progress.subscribe();
        tokio::time::timeout(timeout, progress.wait_for(|progress| progress.caught_up))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }

    pub fn set_queues(&self, looked: Result<Vec<QueueFigures>, String>) {
        let mut queues = write(&self.inner.queues);
        queues.checked_at = Some(Utc::now());
        match looked {
            Ok(figures) => {
                queues.figures = figures;
                queues.error = None;
            }
            // The figures of the last good look are kept, and said to be old.
            Err(error) => queues.error = Some(error),
        }
    }

    pub fn queue_state(&self) -> QueueState {
        read(&self.inner.queues).clone()
    }

    pub fn meetings(&self, filter: &Filter) -> MeetingsPage {
        let caught_up = self.progress().caught_up;
        let (total, meetings) = self.read_view(|view| view.list(filter));
        MeetingsPage {
            caught_up,
            total,
            meetings,
        }
    }

    pub fn accounts(&self, now: DateTime<Utc>) -> AccountsPage {
        AccountsPage {
            accounts: self.read_view(|view| view.accounts(now)),
        }
    }

    /// Each stage's queue figures (when known) beside what the fold says waits there.
    pub fn queues(&self, now: DateTime<Utc>) -> QueuesPage {
        let looked = self.queue_state();
        let pending = self.read_view(|view| view.pending_by_stage());
        let topology = self.topology();
        let known = looked.checked_at.is_some() && !looked.figures.is_empty();
        let figure = |name: &str| looked.figures.iter().find(|queue| queue.name == name);
        let stages = StageName::ALL
            .into_iter()
            .map(|stage| {
                let queue = topology.stage_queue(stage);
                let main = figure(&queue);
                let dead = figure(&topology.dead_letter_queue(stage));
                let retry_prefix = format!("{queue}.retry.");
                let retrying: u64 = looked
                    .figures
                    .iter()
                    .filter(|figures| figures.name.starts_with(&retry_prefix))
                    .map(|figures| figures.messages)
                    .sum();
                let (count, oldest) = pending.get(&stage).cloned().unwrap_or_default();
                StageView {
                    stage: stage.as_str().to_owned(),
                    queue,
                    ready: main.map(|queue| queue.messages_ready),
                    unacked: main.map(|queue| queue.messages_unacknowledged),
                    consumers: main.map(|queue| queue.consumers),
                    dead_letters: dead.map(|queue| queue.messages),
                    retrying: known.then_some(retrying),
                    pending_meetings: count,
                    oldest_pending_seconds: oldest
                        .as_ref()
                        .map(|oldest| (now - oldest.since).num_seconds().max(0)),
                    oldest_pending: oldest,
                }
            })
            .collect();
        QueuesPage {
            management: ManagementView {
                ok: looked.checked_at.is_some() && looked.error.is_none(),
                error: looked.error.clone(),
                checked_at: looked.checked_at,
            },
            stages,
        }
    }

    pub fn summary(&self, now: DateTime<Utc>) -> Summary {
        let progress = self.progress();
        let accounts = self.accounts(now).accounts;
        let queues = self.queues(now);
        let (meetings, failures, stream) = self.read_view(|view| {
            let mut by_state = std::collections::BTreeMap::new();
            for meeting in view.meetings() {
                *by_state
                    .entry(meeting.state().as_str().to_owned())
                    .or_insert(0usize) += 1;
            }
            let failed = Filter {
                state: Some(relay_core::status::State::Failed),
                limit: 20,
                ..Filter::default()
            };
            (
                by_state,
                view.list(&failed).1,
                view.stream(progress.caught_up),
            )
        });
        crate::words::summarize(progress, meetings, failures, accounts, queues, stream)
    }
}
