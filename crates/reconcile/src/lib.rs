//! Reconciliation: recordings found by listing Zoom's API, handed to the pipeline when webhooks
//! did not bring them. Zoom gives up on an event after three retries within about 85 minutes,
//! refuses nothing to a receiver that is down, deletes recordings on its own schedule, and lists
//! late: listing is the only way never to miss one.
//!
//! - [`Reconciler::pass`]: one account, one window of dates. It lists the account's recordings
//!   (account-wide where Zoom allows it, else user by user, active and inactive), classifies
//!   each meeting against staging ([`Found`]), and hands every one that is neither archived nor
//!   in flight to plan as a `recording.completed` bound to the account with origin
//!   `reconcile` (or `import`) — never as if Zoom had signed it. Soonest `auto_delete_date`
//!   first: what Zoom deletes first is saved first.
//! - [`Reconciler::run`]: the continuous component. Per account, under a lease (one reconciler
//!   per account across replicas), from the account's watermark minus `reconcile.overlap` to
//!   now; the watermark advances only after a whole window was handed over, and lives in staging
//!   (it survives restarts and moves between machines).
//! - [`Reconciler::import`]: one meeting now, by uuid or numeric id (its past instances).
//!
//! Listing is background work for the Zoom client's rate budget (the live pipeline keeps its
//! share); a 429 or 5xx after the client's own retries backs the pass off and resumes the same
//! window.

pub mod settings;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use futures_util::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use relay_core::binding::{Binding, Origin};
use relay_core::consumer::{Context, Outbox};
use relay_core::failure::StageError;
use relay_core::shutdown::CancellationToken;
use relay_core::status::{ReconcileReport, StatusMessage, process_name};
use relay_pipeline::lease::Lease;
use relay_pipeline::manifest::{Manifest, VerifiedUpload};
use relay_pipeline::messages::ZoomEvent;
use relay_pipeline::staging::{RecordKey, StagingKey};
use relay_pipeline::{Account, Shared};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{Instrument, info, warn};
use zoom_api::model::MeetingRecordings;
use zoom_api::{EventName, ZoomError};

pub use settings::ReconcileSettings;

/// What staging says of a meeting Zoom lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Every wanted file is at the destination as upload verified it (or given up on).
    Archived,
    /// The pipeline touched it recently, or Zoom is still processing a file: not yet.
    InFlight,
    /// The account's filters leave it out.
    Skipped,
    /// Seen before but neither archived nor recent: its work was lost or failed.
    Stale,
    /// Archived, but Zoom now lists a wanted file the archived copy lacks (a transcript that
    /// finished after the meeting was archived, its event lost). Handed over at once: plan
    /// fetches only what is not staged.
    Incomplete,
    /// No trace at all: its webhooks never arrived.
    Missing,
}

/// What one pass did, per account: the JSON summary line's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub account: String,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub listed: usize,
    pub archived: usize,
    pub in_flight: usize,
    pub skipped: usize,
    /// Found with no trace at all: webhooks were lost.
    pub missing: usize,
    pub handed_over: usize,
    pub failed: usize,
    /// For `--dry-run`: what would be handed over.
    pub files: usize,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a pass ends for its meetings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// Hand what is not archived nor in flight over to plan.
    Send(Origin),
    /// Only say what would be handed over.
    DryRun,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no configured account named `{0}`")]
    UnknownAccount(String),
    #[error("--from {from} is after --to {to}")]
    BackwardsRange { from: NaiveDate, to: NaiveDate },
    #[error("{0} is outside what Zoom can list (cloud recordings from 2011 until today)")]
    OutOfRange(NaiveDate),
    #[error("Zoom: {0}")]
    Zoom(#[from] ZoomError),
    #[error("staging: {0}")]
    Storage(#[from] relay_storage::StorageError),
    #[error("handing over: {0}")]
    Handover(#[from] StageError),
    #[error("no meeting `{0}` in this account's cloud recordings")]
    NotFound(String),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    account: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassLabels {
    account: String,
    /// `done`, `skipped` (another replica holds the account, or passed it within the interval)
    /// or `failed`.
    outcome: String,
}

#[derive(Clone)]
pub struct Metrics {
    passes: Family<PassLabels, Counter>,
    last_success: Family<AccountLabel, Gauge>,
    watermark: Family<AccountLabel, Gauge>,
    missing: Family<AccountLabel, Counter>,
    failures: Family<FailureLabels, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            passes: Family::default(),
            last_success: Family::default(),
            watermark: Family::default(),
            missing: Family::default(),
            failures: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("zoom_relay_reconcile");
        registry.register(
            "passes",
            "Passes per account, by outcome (done, skipped, failed)",
            metrics.passes.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "End of the last complete reconciliation pass",
            metrics.last_success.clone(),
        );
        registry.register(
            "watermark_timestamp_seconds",
            "How far the account is known to be reconciled",
            metrics.watermark.clone(),
        );
        registry.register(
            "missing",
            "Meetings found with no trace in the relay: their webhooks were lost",
            metrics.missing.clone(),
        );
        registry.register(
            "failures",
            "Reconciliation passes that failed, by reason",
            metrics.failures.clone(),
        );
        metrics
    }

    fn label(account: &str) -> AccountLabel {
        AccountLabel {
            account: account.to_owned(),
        }
    }

    fn pass(&self, account: &str, outcome: &str) {
        self.passes
            .get_or_create(&PassLabels {
                account: account.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// The account's watermark, in staging.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Watermark {
    reconciled_until: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub struct Reconciler {
    shared: Shared,
    outbox: Arc<dyn Outbox>,
    settings: ReconcileSettings,
    metrics: Metrics,
    /// Accounts for which Zoom refused the account-wide listing: listed user by user.
    per_user: std::sync::Mutex<HashSet<String>>,
}

impl Reconciler {
    pub fn new(
        shared: &Shared,
        outbox: Arc<dyn Outbox>,
        settings: ReconcileSettings,
        metrics: Metrics,
    ) -> Self {
        Self {
            shared: shared.clone(),
            outbox,
            settings,
            metrics,
            per_user: Default::default(),
        }
    }

    pub fn account(&self, name: &str) -> Result<&Account, ReconcileError> {
        self.shared
            .accounts
            .by_name(name)
            .ok_or_else(|| ReconcileError::UnknownAccount(name.to_owned()))
    }

    /// Checks a range given by an operator.
    pub fn check_range(from: NaiveDate, to: NaiveDate) -> Result<(), ReconcileError> {
        if from > to {
            return Err(ReconcileError::BackwardsRange { from, to });
        }
        let earliest = NaiveDate::from_ymd_opt(2011, 1, 1).unwrap_or(NaiveDate::MIN);
        let latest = Utc::now().date_naive() + TimeDelta::days(1);
        for date in [from, to] {
            if date < earliest || date > latest {
                return Err(ReconcileError::OutOfRange(date));
            }
        }
        Ok(())
    }

    /// Runs passes over every account until `shutdown`, each `reconcile.interval`.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            for account in self.shared.accounts.iter().filter(|a| a.settings.enabled) {
                if shutdown.is_cancelled() {
                    return;
                }
                let name = account.name().to_owned();
                let span = tracing::info_span!(
                    "reconcile",
                    account = name,
                    account_id = account.settings.account_id
                );
                match self.continuous_pass(account, true).instrument(span).await {
                    Ok(Some(summary)) => println_summary("reconcile", &[summary]),
                    Ok(None) => {}
                    Err(error) => warn!(account = name, %error, "reconciliation pass failed"),
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.settings.interval) => {}
            }
        }
    }

    /// One pass over every account (`zoom-relay reconcile --once`).
    pub async fn once(&self) -> Vec<Summary> {
        let mut summaries = Vec::new();
        // A switched-off account is left alone: its watermark stays, so switched on again, its
        // first pass covers the whole time it was off.
        for account in self.shared.accounts.iter().filter(|a| a.settings.enabled) {
            let span = tracing::info_span!("reconcile", account = account.name());
            match self.continuous_pass(account, false).instrument(span).await {
                Ok(Some(summary)) => summaries.push(summary),
                Ok(None) => summaries.push(Summary {
                    account: account.name().to_owned(),
                    error: Some("another reconciler holds this account's lease".into()),
                    ..Summary::default()
                }),
                Err(error) => summaries.push(Summary {
                    account: account.name().to_owned(),
                    error: Some(error.to_string()),
                    failed: 1,
                    ..Summary::default()
                }),
            }
        }
        summaries
    }

    /// The account's window from its watermark, under its lease; `None` when another process
    /// holds the lease or — `only_when_due` — passed it within `reconcile.interval` (replicas
    /// take turns instead of listing twice).
    async fn continuous_pass(
        &self,
        account: &Account,
        only_when_due: bool,
    ) -> Result<Option<Summary>, ReconcileError> {
        let name = account.name();
        let lease_name = format!("reconcile:{name}");
        let Some(lease) =
            Lease::acquire(&self.shared.staging, &lease_name, self.settings.lease_ttl).await?
        else {
            info!("another reconciler holds this account; skipping");
            self.metrics.pass(name, "skipped");
            return Ok(None);
        };
        let started = Utc::now();
        let watermark_path = self
            .shared
            .staging
            .record(RecordKey::Watermark { account: name })?;
        let location = &self.shared.staging.location;
        let watermark: Option<Watermark> = location.get_json(&watermark_path).await?;
        let recent = watermark
            .as_ref()
            .is_some_and(|w| started - w.updated_at < to_delta(self.settings.interval));
        if only_when_due && recent {
            info!("reconciled within the interval by another replica; skipping");
            self.metrics.pass(name, "skipped");
            lease.release().await;
            return Ok(None);
        }
        let since = match &watermark {
            Some(watermark) => watermark.reconciled_until - to_delta(self.settings.overlap),
            None => started - to_delta(self.settings.initial_lookback),
        };
        let result = self
            .pass(
                account,
                since.date_naive(),
                started.date_naive(),
                Handover::Send(Origin::Reconcile),
                Some(&lease),
            )
            .await;
        let summary = match result {
            Ok(summary) => summary,
            Err(error) => {
                let watermark = watermark.map(|w| w.reconciled_until);
                self.report(account, started, watermark, Err(&error)).await;
                self.metrics.pass(name, "failed");
                self.metrics
                    .failures
                    .get_or_create(&FailureLabels {
                        account: name.to_owned(),
                        reason: failure_reason(&error).to_owned(),
                    })
                    .inc();
                lease.release().await;
                return Err(error);
            }
        };
        // The whole window was handed over: only now does the watermark move.
        location
            .put_json(
                &watermark_path,
                &Watermark {
                    reconciled_until: started,
                    updated_at: Utc::now(),
                },
            )
            .await?;
        let label = Metrics::label(name);
        self.metrics
            .watermark
            .get_or_create(&label)
            .set(started.timestamp());
        self.metrics
            .last_success
            .get_or_create(&label)
            .set(Utc::now().timestamp());
        self.metrics.pass(name, "done");
        lease.release().await;
        self.report(account, started, Some(started), Ok(&summary))
            .await;
        Ok(Some(summary))
    }

    /// Tells the status stream how the pass went: each account's last pass, its lag, its
    /// failure. A report that cannot be published is only logged: the pass itself stands.
    async fn report(
        &self,
        account: &Account,
        started: DateTime<Utc>,
        watermark: Option<DateTime<Utc>>,
        outcome: Result<&Summary, &ReconcileError>,
    ) {
        let (listed, missing, error) = match outcome {
            Ok(summary) => (summary.listed as u64, summary.missing as u64, None),
            Err(error) => (0, 0, Some(error.to_string())),
        };
        let report = StatusMessage::Reconcile(ReconcileReport {
            at: Utc::now(),
            account: account.name().to_owned(),
            account_id: account.settings.account_id.clone(),
            process: process_name(),
            started_at: started,
            error,
            watermark,
            listed,
            missing,
        });
        if let Err(error) = self.outbox.record(report).await {
            warn!(%error, "could not publish the reconcile report to the status stream");
        }
    }

    /// Lists `account`'s recordings from `from` to `to` (inclusive, UTC dates) and hands over
    /// what is neither archived nor in flight.
    pub async fn pass(
        &self,
        account: &Account,
        from: NaiveDate,
        to: NaiveDate,
        handover: Handover,
        lease: Option<&Lease>,
    ) -> Result<Summary, ReconcileError> {
        let mut summary = Summary {
            account: account.name().to_owned(),
            from: Some(from),
            to: Some(to),
            ..Summary::default()
        };
        let mut meetings = self.list(account, from, to).await?;
        summary.listed = meetings.len();
        // What Zoom deletes first is saved first; no date: last.
        meetings.sort_by(|a, b| {
            let key = |m: &MeetingRecordings| {
                (
                    m.auto_delete_date.is_none(),
                    m.auto_delete_date.clone().unwrap_or_default(),
                )
            };
            key(a).cmp(&key(b))
        });
        for meeting in meetings {
            if lease.is_some_and(|lease| lease.expires_at() <= Utc::now()) {
                // Past the lease another reconciler may run: stop here, the watermark stays.
                return Err(ReconcileError::Handover(StageError::new(
                    relay_core::Code::Waiting,
                    "the pass outlived its lease; the next pass resumes the window",
                )));
            }
            match self.classify(account, &meeting).await? {
                Found::Archived => summary.archived += 1,
                Found::InFlight => summary.in_flight += 1,
                Found::Skipped => summary.skipped += 1,
                found @ (Found::Stale | Found::Incomplete | Found::Missing) => {
                    if found == Found::Missing {
                        summary.missing += 1;
                        if let Handover::Send(Origin::Reconcile) = handover {
                            self.metrics
                                .missing
                                .get_or_create(&Metrics::label(account.name()))
                                .inc();
                        }
                    }
                    summary.files += meeting.all_files().count();
                    summary.bytes += meeting
                        .all_files()
                        .filter_map(|file| file.file_size)
                        .sum::<u64>();
                    let Handover::Send(origin) = handover else {
                        continue;
                    };
                    match self.hand_over(account, &meeting, origin).await {
                        Ok(()) => summary.handed_over += 1,
                        Err(error) => {
                            warn!(meeting_uuid = meeting.uuid, %error, "could not hand over");
                            summary.failed += 1;
                        }
                    }
                }
            }
        }
        info!(
            listed = summary.listed,
            archived = summary.archived,
            in_flight = summary.in_flight,
            missing = summary.missing,
            handed_over = summary.handed_over,
            "reconciled"
        );
        Ok(summary)
    }

    /// Every recording of the account in the range: account-wide where Zoom allows it, else
    /// user by user (active and inactive: a deactivated host's recordings still need moving).
    /// A 429 or 5xx that outlasted the client's retries backs off and lists the range again.
    async fn list(
        &self,
        account: &Account,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<MeetingRecordings>, ReconcileError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.list_once(account, from, to).await {
                Err(ZoomError::RateLimited { .. } | ZoomError::Server { .. })
                    if attempt < self.settings.listing_attempts =>
                {
                    let pause = self.settings.backoff * 2u32.saturating_pow(attempt - 1);
                    warn!(
                        attempt,
                        ?pause,
                        "Zoom is busy; listing the window again after a pause"
                    );
                    tokio::time::sleep(pause).await;
                }
                other => return Ok(other?),
            }
        }
    }

    async fn list_once(
        &self,
        account: &Account,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<MeetingRecordings>, ZoomError> {
        let name = account.name().to_owned();
        let per_user = lock(&self.per_user).contains(&name);
        if !per_user {
            match account.zoom.account_recordings(from, to).await {
                Ok(meetings) => return Ok(meetings),
                // A master account's app needs `account:read:admin` for this: list by user.
                Err(
                    ZoomError::Api {
                        status: 400 | 403, ..
                    }
                    | ZoomError::NotFound { .. },
                ) => {
                    info!("account-wide listing refused; listing user by user");
                    lock(&self.per_user).insert(name);
                }
                Err(error) => return Err(error),
            }
        }
        let mut seen = HashSet::new();
        let mut meetings = Vec::new();
        for user in account.zoom.all_users().await? {
            for meeting in account.zoom.user_recordings(&user.id, from, to).await? {
                if seen.insert(meeting.uuid.clone()) {
                    meetings.push(meeting);
                }
            }
        }
        Ok(meetings)
    }

    /// Where `meeting` stands in the pipeline, from staging.
    pub async fn classify(
        &self,
        account: &Account,
        meeting: &MeetingRecordings,
    ) -> Result<Found, ReconcileError> {
        if account.skip_reason(meeting).is_some() {
            return Ok(Found::Skipped);
        }
        let wanted: Vec<&str> = meeting
            .all_files()
            .filter(|file| !file.is_completed() || account.wants_file_type(file.file_type.as_str()))
            .filter_map(|file| {
                if file.is_completed() {
                    file.id.as_deref()
                } else {
                    Some("")
                }
            })
            .collect();
        if wanted.contains(&"") {
            // Zoom is still processing a file: its event is still to come.
            return Ok(Found::InFlight);
        }
        let staging = self.shared.staging.meeting(account.name(), &meeting.uuid);
        let location = staging.location();
        let manifest: Option<Manifest> = location
            .get_json(&staging.path(StagingKey::Manifest)?)
            .await?;
        if let Some(manifest) = &manifest {
            let verified: Option<VerifiedUpload> = location
                .get_json(&staging.path(StagingKey::Verified {
                    digest: &manifest.content_digest(),
                })?)
                .await?;
            let held: HashSet<&str> = manifest
                .files()
                .map(|file| file.file_id.as_str())
                .chain(manifest.missing.iter().map(|file| file.file_id.as_str()))
                .collect();
            if verified.is_some() {
                return Ok(if wanted.iter().all(|id| held.contains(id)) {
                    Found::Archived
                } else {
                    Found::Incomplete
                });
            }
        }
        // Touched recently: its work is under way.
        let dir = staging.dir()?;
        let mut records = location.store.list(Some(&dir));
        let mut newest: Option<DateTime<Utc>> = None;
        while let Some(record) = records.next().await {
            let modified = record
                .map_err(relay_storage::StorageError::from)?
                .last_modified;
            newest = Some(newest.map_or(modified, |newest| newest.max(modified)));
        }
        Ok(match newest {
            None => Found::Missing,
            Some(at) if Utc::now() - at < to_delta(self.settings.in_flight_grace) => {
                Found::InFlight
            }
            Some(_) => Found::Stale,
        })
    }

    /// Hands `meeting` to plan as a `recording.completed` bound to `account`, from `origin`.
    async fn hand_over(
        &self,
        account: &Account,
        meeting: &MeetingRecordings,
        origin: Origin,
    ) -> Result<(), StageError> {
        let binding = Binding::new(account.name(), &account.settings.account_id, origin);
        let event = ZoomEvent {
            event: EventName::RecordingCompleted.as_str().to_owned(),
            event_ts: Some(Utc::now().timestamp_millis()),
            payload: json!({
                "account_id": account.settings.account_id,
                "object": meeting,
            }),
            download_token: None,
        };
        Context::new(binding, None, 1, self.outbox.clone())
            .send(&event)
            .await
    }

    /// One meeting now: by uuid, or by numeric id (every past instance). `force`: hand over
    /// even what is archived.
    pub async fn import(
        &self,
        account: &Account,
        meeting: &str,
        force: bool,
    ) -> Result<Summary, ReconcileError> {
        let mut summary = Summary {
            account: account.name().to_owned(),
            ..Summary::default()
        };
        let uuids: Vec<String> = match meeting.parse::<u64>() {
            Ok(id) => account
                .zoom
                .past_instances(id)
                .await
                .map_err(|error| match error {
                    ZoomError::NotFound { .. } => ReconcileError::NotFound(meeting.to_owned()),
                    error => ReconcileError::Zoom(error),
                })?
                .into_iter()
                .map(|instance| instance.uuid)
                .collect(),
            Err(_) => vec![meeting.to_owned()],
        };
        for uuid in uuids {
            let listed = match account.zoom.meeting_recordings(&uuid, false).await {
                Ok(listed) => listed,
                Err(ZoomError::NotFound { .. }) => {
                    summary.failed += 1;
                    summary.error = Some(format!("no cloud recording for `{uuid}`"));
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            summary.listed += 1;
            match self.classify(account, &listed).await? {
                Found::Archived if !force => summary.archived += 1,
                Found::Skipped if !force => summary.skipped += 1,
                found => {
                    if found == Found::Missing {
                        summary.missing += 1;
                    }
                    self.hand_over(account, &listed, Origin::Import).await?;
                    summary.handed_over += 1;
                }
            }
        }
        if summary.listed == 0 && summary.error.is_some() {
            return Err(ReconcileError::NotFound(meeting.to_owned()));
        }
        Ok(summary)
    }
}

/// The JSON summary line each command ends with.
pub fn println_summary(command: &str, accounts: &[Summary]) {
    let total = |field: fn(&Summary) -> usize| accounts.iter().map(field).sum::<usize>();
    let line = json!({
        "command": command,
        "listed": total(|s| s.listed),
        "archived": total(|s| s.archived),
        "in_flight": total(|s| s.in_flight),
        "skipped": total(|s| s.skipped),
        "missing": total(|s| s.missing),
        "handed_over": total(|s| s.handed_over),
        "failed": total(|s| s.failed),
        "accounts": accounts,
    });
    println!("{line}");
}

fn failure_reason(error: &ReconcileError) -> &'static str {
    match error {
        ReconcileError::Zoom(ZoomError::Credentials { .. } | ZoomError::Unauthorized { .. }) => {
            "credentials"
        }
        ReconcileError::Zoom(ZoomError::Api { .. }) => "refused",
        ReconcileError::Zoom(_) => "zoom_unavailable",
        ReconcileError::Storage(_) => "storage",
        _ => "other",
    }
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
