//! The view: both streams folded into every meeting's state machine ([`crate::machine`]) and
//! every account's health, plus the queries the API, the page, the CLI and the metrics answer.
//!
//! Pure and synchronous: the reader feeds it messages with their offsets; tests feed it
//! transitions. Everything it shows is a function of the stream's content (and of "now" for ages
//! and lags), so two readers of the same streams show the same thing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use relay_core::broker::StageName;
use relay_core::failure::Code;
use relay_core::status::{
    AccountReport, ReconcileReport, SocketReport, State, StatusMessage, Transition,
};
use serde_json::Value;

use crate::api::{
    AccountView, ArchivedView, AtRiskView, AuthorizationView, DeletionView, FailureView,
    FileCounts, FileView, HistoryEntry, LandedView, MeetingDetail, MeetingSummary, PendingView,
    RateLimitView, ReconcileView, SocketView, StreamView,
};
use crate::machine::{Failure, FileState, Meeting, Names};
use crate::words;

/// A report older than this comes from a process that is gone (they repeat every 15 minutes).
pub const REPORT_LIVE: TimeDelta = TimeDelta::minutes(45);
/// A socket report older than this no longer says what the socket is (its process reports
/// every minute while it runs).
pub const SOCKET_LIVE: TimeDelta = TimeDelta::minutes(3);

/// What the fold needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct FoldSettings {
    pub max_meetings: usize,
    pub auto_delete_window: Duration,
    pub accounts: Vec<AccountConfig>,
}

impl Default for FoldSettings {
    fn default() -> Self {
        Self {
            max_meetings: 100_000,
            auto_delete_window: Duration::from_secs(3 * 86_400),
            accounts: Vec::new(),
        }
    }
}

/// A configured account, as status sees it.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    pub name: String,
    pub account_id: String,
    /// `delete_after_days` when the account deletes after upload: meetings then wait at
    /// cleanup once it is over.
    pub cleanup_grace: Option<Duration>,
}

/// An event the ingress (or reconcile, or replay) put on `zoom.events`, as the archive stream
/// holds it: the flat headers and what the body says of the meeting.
#[derive(Debug, Clone, Default)]
pub struct ArchivedEvent {
    pub account: String,
    pub account_id: String,
    pub origin: Option<String>,
    pub event: String,
    pub received_at: DateTime<Utc>,
    pub meeting_uuid: String,
    /// `topic`, `host_email`, `start_time`, `kind`, `auto_delete_date` from the body.
    pub description: Value,
}

#[derive(Debug, Default)]
struct AccountState {
    account_id: Option<String>,
    /// The latest report of each process.
    reports: BTreeMap<String, AccountReport>,
    reconcile: Option<ReconcileReport>,
    last_reconcile_success: Option<DateTime<Utc>>,
    /// The latest socket report of each process serving a WebSocket subscription.
    sockets: BTreeMap<String, SocketReport>,
    last_webhook_at: Option<DateTime<Utc>>,
    last_event_at: Option<DateTime<Utc>>,
    last_archived: Option<(DateTime<Utc>, String)>,
}

/// Names shared by many lines (stages, processes, origins, events, file types): one allocation
/// each.
#[derive(Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(known) = self.0.get(text) {
            return known.clone();
        }
        let name: Arc<str> = Arc::from(text);
        self.0.insert(name.clone());
        name
    }
}

/// Meetings by account, then uuid (looked up by `&str`, without allocating).
type Meetings = HashMap<Arc<str>, HashMap<Arc<str>, Meeting>>;

/// The meeting `uuid` of `account`, created when first seen.
fn slot<'m>(
    meetings: &'m mut Meetings,
    count: &mut usize,
    account: Arc<str>,
    account_id: &str,
    uuid: &str,
    at: DateTime<Utc>,
) -> Option<&'m mut Meeting> {
    let by_uuid = meetings.entry(account.clone()).or_default();
    if !by_uuid.contains_key(uuid) {
        let uuid: Arc<str> = Arc::from(uuid);
        by_uuid.insert(uuid.clone(), Meeting::new(account, account_id, uuid, at));
        *count += 1;
    }
    by_uuid.get_mut(uuid)
}

/// One account's meetings counted: by state, pending, failed, and those at risk.
type Tally = (BTreeMap<String, usize>, usize, usize, Vec<AtRiskView>);

/// Which meetings `list` returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub account: Option<String>,
    pub state: Option<State>,
    /// Case-insensitive; matches the uuid, the topic and the host's email.
    pub query: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
}

#[derive(Default)]
pub struct View {
    settings: FoldSettings,
    meetings: Meetings,
    /// Meetings held (over every account).
    count: usize,
    accounts: BTreeMap<String, AccountState>,
    names: Interner,
    status_messages: u64,
    /// Transitions folded: their order is the status stream's.
    transitions: u64,
    archive_messages: u64,
    status_offset: Option<i64>,
    archive_offset: Option<i64>,
    forgotten: u64,
    skipped_messages: u64,
}

impl View {
    pub fn new(settings: FoldSettings) -> Self {
        let mut view = Self {
            settings,
            ..Self::default()
        };
        for account in view.settings.accounts.clone() {
            view.accounts
                .entry(account.name.clone())
                .or_default()
                .account_id = Some(account.account_id.clone());
        }
        view
    }

    fn intern(&mut self, text: &str) -> Arc<str> {
        self.names.get(text)
    }

    /// The last offset folded from the status stream: a reader resumes after it.
    pub fn status_offset(&self) -> Option<i64> {
        self.status_offset
    }

    pub fn archive_offset(&self) -> Option<i64> {
        self.archive_offset
    }

    /// Folds one message of the status stream. A message at or before the last offset folded
    /// is one a resubscription delivered again (streams resume at a chunk's start): ignored.
    pub fn apply_status(&mut self, offset: Option<i64>, body: &[u8]) {
        if let (Some(offset), Some(last)) = (offset, self.status_offset)
            && offset <= last
        {
            return;
        }
        if offset.is_some() {
            self.status_offset = offset;
        }
        self.status_messages += 1;
        match StatusMessage::from_json(body) {
            Ok(message) => self.apply(message),
            // A newer writer's kind, or garbage someone published: the rest still folds.
            Err(_) => self.skipped_messages += 1,
        }
    }

    pub fn apply(&mut self, message: StatusMessage) {
        match message {
            StatusMessage::Transition(transition) => self.apply_transition(&transition),
            StatusMessage::Account(report) => {
                let account = self.accounts.entry(report.account.clone()).or_default();
                account
                    .account_id
                    .get_or_insert_with(|| report.account_id.clone());
                let newer = account
                    .reports
                    .get(&report.process)
                    .is_none_or(|known| known.at <= report.at);
                if newer {
                    account.reports.insert(report.process.clone(), report);
                }
            }
            StatusMessage::Socket(report) => {
                let account = self.accounts.entry(report.account.clone()).or_default();
                let newer = account
                    .sockets
                    .get(&report.process)
                    .is_none_or(|known| known.at <= report.at);
                if newer {
                    account.sockets.insert(report.process.clone(), report);
                }
            }
            StatusMessage::Reconcile(report) => {
                let account = self.accounts.entry(report.account.clone()).or_default();
                if report.error.is_none() {
                    account.last_reconcile_success =
                        account.last_reconcile_success.max(Some(report.at));
                }
                if account
                    .reconcile
                    .as_ref()
                    .is_none_or(|known| known.at <= report.at)
                {
                    account.reconcile = Some(report);
                }
            }
        }
    }

    /// Folds one transition (the status stream's order is the order of `apply_transition`).
    pub fn apply_transition(&mut self, transition: &Transition) {
        if transition.meeting_uuid.is_empty() {
            return;
        }
        self.transitions += 1;
        let seq = self.transitions;
        let stage = self.intern(&transition.stage);
        let process = Some(self.intern(&transition.process));
        let origin = transition
            .origin
            .as_deref()
            .map(|origin| self.intern(origin));
        let account = self.intern(&transition.account);
        if transition.state == State::Uploaded && transition.stage == StageName::Upload.as_str() {
            let state = self.accounts.entry(transition.account.clone()).or_default();
            if state
                .last_archived
                .as_ref()
                .is_none_or(|(at, _)| *at <= transition.at)
            {
                state.last_archived = Some((transition.at, transition.meeting_uuid.clone()));
            }
        }
        let Self {
            meetings,
            count,
            names,
            ..
        } = self;
        let Some(meeting) = slot(
            meetings,
            count,
            account,
            &transition.account_id,
            &transition.meeting_uuid,
            transition.at,
        ) else {
            return;
        };
        let mut intern = |text: &str| names.get(text);
        let names = Names {
            stage,
            process,
            origin,
            intern: &mut intern,
        };
        meeting.apply(transition, seq, names);
        self.forget_if_full();
    }

    /// Folds one event of the archive stream.
    pub fn apply_archive(&mut self, offset: Option<i64>, event: ArchivedEvent) {
        if let (Some(offset), Some(last)) = (offset, self.archive_offset)
            && offset <= last
        {
            return;
        }
        if offset.is_some() {
            self.archive_offset = offset;
        }
        self.archive_messages += 1;
        if event.account.is_empty() {
            return;
        }
        {
            let account = self.accounts.entry(event.account.clone()).or_default();
            account
                .account_id
                .get_or_insert_with(|| event.account_id.clone());
            account.last_event_at = account.last_event_at.max(Some(event.received_at));
            if event.origin.as_deref() == Some("webhook") {
                account.last_webhook_at = account.last_webhook_at.max(Some(event.received_at));
            }
        }
        if event.meeting_uuid.is_empty() || !event.event.starts_with("recording.") {
            return;
        }
        let account = self.intern(&event.account);
        let stage = self.intern("ingress");
        let origin = event.origin.as_deref().map(|origin| self.intern(origin));
        let name = self.intern(&event.event);
        let Some(meeting) = slot(
            &mut self.meetings,
            &mut self.count,
            account,
            &event.account_id,
            &event.meeting_uuid,
            event.received_at,
        ) else {
            return;
        };
        meeting.receive(event.received_at, name, origin, stage, &event.description);
        self.forget_if_full();
    }

    /// Past `max_meetings`, forgets the tenth updated longest ago (in one go: a sort per
    /// message would cost more than the fold).
    fn forget_if_full(&mut self) {
        let max = self.settings.max_meetings.max(1);
        if self.count <= max {
            return;
        }
        let mut ages: Vec<(DateTime<Utc>, Arc<str>, Arc<str>)> = self
            .meetings()
            .map(|meeting| {
                (
                    meeting.updated_at,
                    meeting.account.clone(),
                    meeting.uuid.clone(),
                )
            })
            .collect();
        let forget = (self.count - max + max / 10).min(ages.len());
        ages.select_nth_unstable_by(forget.saturating_sub(1), |a, b| a.0.cmp(&b.0));
        for (_, account, uuid) in ages.into_iter().take(forget) {
            if let Some(by_uuid) = self.meetings.get_mut(&account) {
                by_uuid.remove(&uuid);
            }
        }
        self.meetings.retain(|_, by_uuid| !by_uuid.is_empty());
        self.count -= forget;
        self.forgotten += forget as u64;
    }

    pub fn meeting_count(&self) -> usize {
        self.count
    }

    pub fn stream(&self, caught_up: bool) -> StreamView {
        StreamView {
            caught_up,
            status_messages: self.status_messages,
            archive_messages: self.archive_messages,
            status_offset: self.status_offset,
            archive_offset: self.archive_offset,
            meetings: self.count,
            meetings_forgotten: self.forgotten,
        }
    }

    fn grace(&self, account: &str) -> Option<Duration> {
        self.settings
            .accounts
            .iter()
            .find(|configured| configured.name == account)
            .and_then(|configured| configured.cleanup_grace)
    }

    pub fn meetings(&self) -> impl Iterator<Item = &Meeting> {
        self.meetings.values().flat_map(HashMap::values)
    }

    /// Meetings matching `filter`, the most recently updated first (ties: account, uuid), and
    /// how many matched before the limit.
    pub fn list(&self, filter: &Filter) -> (usize, Vec<MeetingSummary>) {
        let query = filter.query.as_ref().map(|query| query.to_lowercase());
        let mut matching: Vec<&Meeting> = self
            .meetings()
            .filter(|meeting| {
                filter
                    .account
                    .as_ref()
                    .is_none_or(|account| &*meeting.account == account)
            })
            .filter(|meeting| filter.state.is_none_or(|state| meeting.state() == state))
            .filter(|meeting| filter.since.is_none_or(|since| meeting.updated_at >= since))
            .filter(|meeting| {
                query.as_ref().is_none_or(|query| {
                    meeting.uuid.to_lowercase().contains(query)
                        || [&meeting.topic, &meeting.host_email].iter().any(|field| {
                            field
                                .as_ref()
                                .is_some_and(|text| text.to_lowercase().contains(query))
                        })
                })
            })
            .collect();
        let total = matching.len();
        matching.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| a.account.cmp(&b.account))
                .then_with(|| a.uuid.cmp(&b.uuid))
        });
        let summaries = matching
            .into_iter()
            .take(filter.limit)
            .map(|meeting| self.summary(meeting))
            .collect();
        (total, summaries)
    }

    /// The meetings with this uuid (one per account that has it).
    pub fn find(&self, uuid: &str, account: Option<&str>) -> Vec<&Meeting> {
        let mut found: Vec<&Meeting> = self
            .meetings()
            .filter(|meeting| &*meeting.uuid == uuid)
            .filter(|meeting| account.is_none_or(|account| &*meeting.account == account))
            .collect();
        found.sort_by(|a, b| a.account.cmp(&b.account));
        found
    }

    pub fn summary(&self, meeting: &Meeting) -> MeetingSummary {
        let pending = meeting.pending(self.grace(&meeting.account));
        let failures = meeting.open_failures();
        let counts = FileCounts {
            wanted: meeting.files.len(),
            staged: meeting.count_files(FileState::Staged),
            failed: meeting.count_files(FileState::Failed),
            pending: meeting.count_files(FileState::Pending),
        };
        MeetingSummary {
            account: meeting.account.to_string(),
            meeting_uuid: meeting.uuid.to_string(),
            topic: meeting.topic.clone(),
            host_email: meeting.host_email.clone(),
            kind: meeting.kind.clone(),
            start_time: meeting.start_time.clone(),
            state: meeting.state().as_str().to_owned(),
            reached: meeting.reached.map(|state| state.as_str().to_owned()),
            skipped_reason: meeting.skipped.clone(),
            first_seen_at: meeting.first_seen,
            updated_at: meeting.updated_at,
            file_counts: counts,
            pending_at: pending.map(|pending| pending.stage.as_str().to_owned()),
            auto_delete_date: meeting.auto_delete_date.clone(),
            failure_count: failures.len(),
            failure: failures
                .first()
                .map(|failure| self.failure_view(meeting, failure)),
            summary: words::meeting_sentence(meeting, pending, counts),
        }
    }

    fn failure_view(&self, meeting: &Meeting, failure: &Failure) -> FailureView {
        let code = Code::parse(&failure.code);
        let file_type = failure
            .file_id
            .as_ref()
            .and_then(|id| meeting.files.get(id))
            .and_then(|file| file.file_type.clone());
        FailureView {
            stage: failure.stage.to_string(),
            code: failure.code.clone(),
            meaning: code
                .map(|code| code.describe().to_owned())
                .unwrap_or_else(|| "A failure code this version does not know.".into()),
            reason: failure.reason.clone(),
            attempt: failure.attempt,
            retryable: code.is_some_and(Code::is_retryable),
            at: failure.at,
            file_id: failure.file_id.as_deref().map(str::to_owned),
            file_type: file_type.as_deref().map(str::to_owned),
            process: failure.process.as_deref().map(str::to_owned),
            advice: words::advice(code, failure.attempt),
            replay: words::replay_command(&failure.stage, &meeting.uuid, &meeting.account),
        }
    }

    pub fn detail(&self, meeting: &Meeting) -> MeetingDetail {
        MeetingDetail {
            meeting: self.summary(meeting),
            account_id: meeting.account_id.clone(),
            failures: meeting
                .open_failures()
                .into_iter()
                .map(|failure| self.failure_view(meeting, failure))
                .collect(),
            files: meeting
                .files
                .iter()
                .map(|(id, file)| FileView {
                    file_id: id.to_string(),
                    file_type: file.file_type.as_deref().map(str::to_owned),
                    state: file.state.as_str().to_owned(),
                    size: file.size,
                    at: file.at,
                    failure: file
                        .failure
                        .as_ref()
                        .filter(|_| file.state == FileState::Failed)
                        .map(|failure| self.failure_view(meeting, failure)),
                })
                .collect(),
            updates: meeting.updates.clone(),
            landed: meeting.landed.as_ref().map(|landed| LandedView {
                destination: landed.destination.clone(),
                manifest: landed.manifest.clone(),
                files: landed.files,
                missing: landed.missing,
                bytes: landed.bytes,
            }),
            deletion: meeting.deletion.as_ref().map(|deletion| DeletionView {
                action: deletion.action.clone(),
                deleted: deletion.deleted.clone(),
                kept: deletion.kept.clone(),
                gone: deletion.gone,
            }),
            history: meeting
                .history
                .iter()
                .map(|entry| {
                    let extra = entry.extra.as_deref();
                    HistoryEntry {
                        at: entry.at,
                        state: entry.state.as_str().to_owned(),
                        stage: entry.stage.to_string(),
                        process: entry
                            .process
                            .as_deref()
                            .filter(|process| !process.is_empty())
                            .map(str::to_owned),
                        file_id: entry.file_id.as_deref().map(str::to_owned),
                        origin: entry.origin.as_deref().map(str::to_owned),
                        replay_job: extra.and_then(|extra| extra.replay_job.clone()),
                        code: extra.and_then(|extra| extra.code.clone()),
                        reason: extra.and_then(|extra| extra.reason.clone()),
                        attempt: extra.and_then(|extra| extra.attempt),
                        note: entry.note.as_deref().map(str::to_owned),
                    }
                })
                .collect(),
            history_omitted: meeting.history_dropped,
        }
    }

    /// Meetings waiting at each stage, with the oldest (by its last transition).
    pub fn pending_by_stage(&self) -> BTreeMap<StageName, (usize, Option<PendingView>)> {
        let mut by_stage: BTreeMap<StageName, (usize, Option<PendingView>)> = BTreeMap::new();
        for meeting in self.meetings() {
            let Some(pending) = meeting.pending(self.grace(&meeting.account)) else {
                continue;
            };
            let (count, oldest) = by_stage.entry(pending.stage).or_default();
            *count += 1;
            let older = oldest.as_ref().is_none_or(|known| {
                (pending.since, &*meeting.account, &*meeting.uuid)
                    < (
                        known.since,
                        known.account.as_str(),
                        known.meeting_uuid.as_str(),
                    )
            });
            if older {
                *oldest = Some(PendingView {
                    account: meeting.account.to_string(),
                    meeting_uuid: meeting.uuid.to_string(),
                    since: pending.since,
                });
            }
        }
        by_stage
    }

    /// Whether Zoom deletes `meeting` within the window and it is not archived.
    fn at_risk(&self, meeting: &Meeting, now: DateTime<Utc>) -> bool {
        let Some(date) = meeting.auto_delete_date.as_deref().and_then(parse_date) else {
            return false;
        };
        if meeting.is_archived() || matches!(meeting.state(), State::Skipped | State::Updated) {
            return false;
        }
        let window = TimeDelta::from_std(self.settings.auto_delete_window).unwrap_or_default();
        // A date is a whole day: Zoom may delete at any time during it.
        let today = now.date_naive();
        date >= today - TimeDelta::days(1) && date <= (now + window).date_naive()
    }

    /// Every account: the configured ones and any the streams named.
    pub fn accounts(&self, now: DateTime<Utc>) -> Vec<AccountView> {
        let mut per_account: BTreeMap<&str, Tally> = BTreeMap::new();
        for meeting in self.meetings() {
            let entry = per_account.entry(&meeting.account).or_default();
            let state = meeting.state();
            *entry.0.entry(state.as_str().to_owned()).or_default() += 1;
            if meeting.pending(self.grace(&meeting.account)).is_some() {
                entry.1 += 1;
            }
            if state == State::Failed {
                entry.2 += 1;
            }
            if self.at_risk(meeting, now) {
                entry.3.push(AtRiskView {
                    meeting_uuid: meeting.uuid.to_string(),
                    topic: meeting.topic.clone(),
                    auto_delete_date: meeting.auto_delete_date.clone().unwrap_or_default(),
                    state: state.as_str().to_owned(),
                });
            }
        }
        let mut names: Vec<&str> = self.accounts.keys().map(String::as_str).collect();
        for name in per_account.keys() {
            if !names.contains(name) {
                names.push(name);
            }
        }
        names.sort_unstable();
        names
            .into_iter()
            .map(|name| {
                let state = self.accounts.get(name);
                let (meetings, pending, failed, mut at_risk) =
                    per_account.remove(name).unwrap_or_default();
                at_risk.sort_by(|a, b| {
                    a.auto_delete_date
                        .cmp(&b.auto_delete_date)
                        .then_with(|| a.meeting_uuid.cmp(&b.meeting_uuid))
                });
                let last_archived =
                    state
                        .and_then(|state| state.last_archived.as_ref())
                        .map(|(at, uuid)| ArchivedView {
                            at: *at,
                            meeting_uuid: uuid.clone(),
                            topic: self
                                .find(uuid, Some(name))
                                .first()
                                .and_then(|meeting| meeting.topic.clone()),
                        });
                AccountView {
                    account: name.to_owned(),
                    account_id: state.and_then(|state| state.account_id.clone()),
                    configured: self
                        .settings
                        .accounts
                        .iter()
                        .any(|configured| configured.name == name),
                    authorization: authorization(state, now),
                    last_webhook_at: state.and_then(|state| state.last_webhook_at),
                    last_event_at: state.and_then(|state| state.last_event_at),
                    last_archived,
                    reconcile: state.and_then(|state| {
                        let report = state.reconcile.as_ref()?;
                        Some(ReconcileView {
                            at: report.at,
                            ok: report.error.is_none(),
                            error: report.error.clone(),
                            watermark: report.watermark,
                            lag_seconds: report
                                .watermark
                                .map(|watermark| (now - watermark).num_seconds().max(0)),
                            listed: report.listed,
                            missing: report.missing,
                            last_success_at: state.last_reconcile_success,
                        })
                    }),
                    websocket: state.and_then(|state| socket_view(&state.sockets, now)),
                    rate_limits: rate_limits(state, now),
                    meetings,
                    pending,
                    failed,
                    auto_delete_at_risk: at_risk,
                }
            })
            .collect()
    }
}

/// The account's WebSocket subscription as its processes report it: the one holding the socket
/// if any reports it recently, else the newest report.
fn socket_view(sockets: &BTreeMap<String, SocketReport>, now: DateTime<Utc>) -> Option<SocketView> {
    let recent = |report: &&SocketReport| now - report.at <= SOCKET_LIVE;
    let chosen = sockets
        .values()
        .filter(recent)
        .find(|report| report.state == "connected")
        .or_else(|| sockets.values().max_by_key(|report| report.at))?;
    Some(SocketView {
        state: if recent(&chosen) {
            chosen.state.clone()
        } else {
            "unknown".into()
        },
        subscription_id: chosen.subscription_id.clone(),
        process: chosen.process.clone(),
        reported_at: chosen.at,
        last_frame_at: chosen.last_frame_at,
        reconnects: chosen.reconnects,
        events: chosen.events,
        last_failure: chosen.last_failure.clone(),
    })
}

fn live(reports: &BTreeMap<String, AccountReport>, now: DateTime<Utc>) -> Vec<&AccountReport> {
    reports
        .values()
        .filter(|report| now - report.at <= REPORT_LIVE)
        .collect()
}

/// Whether this process's latest token request failed.
fn refused(report: &AccountReport) -> bool {
    let authorization = &report.authorization;
    match (authorization.last_error_at, authorization.last_token_at) {
        (Some(error_at), Some(token_at)) => error_at > token_at,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Failing when a process running now cannot get a token (one misconfigured replica is enough
/// to stall its share of the work); the newest report decides when none is recent.
fn authorization(state: Option<&AccountState>, now: DateTime<Utc>) -> AuthorizationView {
    let reports: Vec<&AccountReport> = state
        .map(|state| state.reports.values().collect())
        .unwrap_or_default();
    let live_reports = state
        .map(|state| live(&state.reports, now))
        .unwrap_or_default();
    let deciding: Vec<&AccountReport> = if live_reports.is_empty() {
        reports
            .iter()
            .copied()
            .max_by_key(|report| report.at)
            .into_iter()
            .collect()
    } else {
        live_reports.clone()
    };
    let last_token_at = reports
        .iter()
        .filter_map(|report| report.authorization.last_token_at)
        .max();
    let failing = deciding
        .iter()
        .filter(|report| refused(report))
        .max_by_key(|report| report.authorization.last_error_at);
    let last_error = reports
        .iter()
        .filter(|report| report.authorization.last_error.is_some())
        .max_by_key(|report| report.authorization.last_error_at);
    let shown = failing.or(last_error);
    let mut missing_scopes: Vec<String> = deciding
        .iter()
        .flat_map(|report| report.authorization.missing_scopes.iter().cloned())
        .collect();
    missing_scopes.sort();
    missing_scopes.dedup();
    AuthorizationView {
        state: if failing.is_some() {
            "failing"
        } else if last_token_at.is_some() {
            "ok"
        } else {
            "unknown"
        }
        .into(),
        last_token_at,
        error: shown.and_then(|report| report.authorization.last_error.clone()),
        error_at: shown.and_then(|report| report.authorization.last_error_at),
        missing_scopes,
        reported_at: reports.iter().map(|report| report.at).max(),
        processes: live_reports.len(),
    }
}

fn rate_limits(state: Option<&AccountState>, now: DateTime<Utc>) -> RateLimitView {
    let Some(state) = state else {
        return RateLimitView::default();
    };
    let reports = live(&state.reports, now);
    let today = now.date_naive();
    RateLimitView {
        rate_limited: reports
            .iter()
            .map(|report| report.rate_limits.rate_limited)
            .sum(),
        last_rate_limited_at: state
            .reports
            .values()
            .filter_map(|report| report.rate_limits.last_rate_limited_at)
            .max(),
        daily_used: reports
            .iter()
            .filter(|report| report.at.date_naive() == today)
            .map(|report| report.rate_limits.daily_used)
            .sum(),
        daily_cap: reports
            .iter()
            .map(|report| report.rate_limits.daily_cap)
            .sum(),
    }
}

/// Zoom writes `auto_delete_date` as a date; accept a timestamp too.
fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|at| at.date_naive())
        })
}
