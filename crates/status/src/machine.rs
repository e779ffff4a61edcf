//! One meeting's state machine, and its guards.
//!
//! ```text
//!  received ──▶ planned ──▶ staged (per file) ──▶ assembled ──▶ uploaded ──▶ deleted
//!      │            │             │                   │             │            │
//!      └─ skipped   └─────────────┴─── failed (stage, code, reason, attempt) ────┘
//!                         updated (renamed, trashed…): recorded, never a step
//! ```
//!
//! Guards (a late, repeated or concurrent message never moves a meeting backwards):
//! - **Progress only rises.** `reached` is the furthest of received … deleted ever recorded: a
//!   repeated `recording.completed` after `deleted` adds history, not a step back.
//! - **Per file.** A file is `pending` (wanted by plan), `staged` or `failed`; a staged file
//!   stays staged (a later failure of a duplicate task is history only); a failed file becomes
//!   staged when a replay fetches it.
//! - **Failures are resolved only by success at the same place.** A file's failure by that file
//!   being staged; a stage's failure by a later success of that stage (plan: `planned` or
//!   `skipped`; cleanup: `deleted` or its "kept" outcome). Until then the meeting's state is
//!   `failed`, whatever it reached: a meeting archived without a file Zoom served as HTML is
//!   `failed` and `reached` says `uploaded`.
//! - **`skipped`** holds only while nothing went further (a later replay that archives it wins).
//! - **`updated`** (renamed, trashed, recovered, deleted at Zoom) is history and the meeting's
//!   list of updates; the state is `updated` only for a meeting known through nothing else.
//!
//! "Later" is the status stream's order (one stream: one total order, the same for every
//! reader). `received` comes from the archive stream, read beside it: it only rises `reached`
//! and never resolves anything, so how the two streams interleave cannot change the outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use relay_core::broker::StageName;
use relay_core::status::{State, Transition};
use serde_json::Value;

/// Longest reason kept (a reason is the whole chain of causes; a runaway one is cut).
const MAX_REASON: usize = 1_000;
/// Entries kept per meeting: the first ones and the latest ones (a 300-file meeting has ~310).
const HISTORY_HEAD: usize = 50;
const HISTORY_CAP: usize = 1_000;

/// The pipeline's steps in order; the others are not steps.
pub fn rank(state: State) -> Option<u8> {
    match state {
        State::Received => Some(0),
        State::Planned => Some(1),
        State::Staged => Some(2),
        State::Assembled => Some(3),
        State::Uploaded => Some(4),
        State::Deleted => Some(5),
        State::Skipped | State::Failed | State::Updated => None,
    }
}

/// One file of a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Pending,
    Staged,
    Failed,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Staged => "staged",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub stage: Arc<str>,
    pub code: String,
    pub reason: String,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub file_id: Option<Arc<str>>,
    pub process: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct FileEntry {
    pub file_type: Option<Arc<str>>,
    pub state: FileState,
    pub size: Option<u64>,
    pub at: DateTime<Utc>,
    /// Boxed: most files never fail, and a meeting may have hundreds.
    pub failure: Option<Box<Failure>>,
}

impl FileEntry {
    fn pending(at: DateTime<Utc>) -> Self {
        Self {
            file_type: None,
            state: FileState::Pending,
            size: None,
            at,
            failure: None,
        }
    }
}

/// One line of a meeting's history.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub state: State,
    pub stage: Arc<str>,
    pub process: Option<Arc<str>>,
    pub file_id: Option<Arc<str>>,
    pub origin: Option<Arc<str>>,
    /// What the line means beyond its state: the event, the skip reason, what was deleted.
    pub note: Option<Arc<str>>,
    /// Rarely present: boxed, so a history of thousands of lines stays small.
    pub extra: Option<Box<EntryExtra>>,
}

#[derive(Debug, Clone, Default)]
pub struct EntryExtra {
    pub replay_job: Option<String>,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub attempt: Option<u32>,
}

/// Where a meeting landed, as upload recorded it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Landed {
    pub destination: Option<String>,
    pub manifest: Option<String>,
    pub files: u64,
    pub missing: u64,
    pub bytes: u64,
}

/// What cleanup did at Zoom.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deletion {
    pub action: Option<String>,
    pub deleted: Vec<String>,
    pub kept: Vec<String>,
    /// Zoom no longer listed the meeting: nothing left to delete.
    pub gone: bool,
}

/// Who a transition came from, interned by the view (thousands of lines share a few names).
pub struct Names<'a> {
    pub stage: Arc<str>,
    pub process: Option<Arc<str>>,
    pub origin: Option<Arc<str>>,
    /// Interns event names and file types (a handful of values over every meeting).
    pub intern: &'a mut dyn FnMut(&str) -> Arc<str>,
}

#[derive(Debug, Clone)]
pub struct Meeting {
    pub account: Arc<str>,
    pub account_id: String,
    pub uuid: Arc<str>,
    pub topic: Option<String>,
    pub host_email: Option<String>,
    pub start_time: Option<String>,
    /// `meeting` or `webinar`.
    pub kind: Option<String>,
    /// Zoom's `auto_delete_date` (a date, `YYYY-MM-DD`).
    pub auto_delete_date: Option<String>,
    /// When the newest description (topic, host…) was given: an older one never replaces it.
    described_at: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The furthest step recorded; `None` for a meeting known only through updates.
    pub reached: Option<State>,
    pub skipped: Option<String>,
    pub files: BTreeMap<Arc<str>, FileEntry>,
    /// Unresolved failures of a stage (not of one file), the latest per stage.
    pub failures: Vec<Failure>,
    /// Files still processing at Zoom when plan last looked.
    pub processing: u64,
    planned_seq: u64,
    staged_seq: u64,
    assembled_seq: u64,
    uploaded_seq: u64,
    cleaned_seq: u64,
    pub uploaded_at: Option<DateTime<Utc>>,
    pub landed: Option<Landed>,
    pub deletion: Option<Deletion>,
    /// Zoom's updates (event names), in the order recorded.
    pub updates: Vec<String>,
    pub history: Vec<Entry>,
    /// Lines left out of a very long history (between the first and the latest ones).
    pub history_dropped: usize,
}

/// What a meeting waits for, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub stage: StageName,
    pub since: DateTime<Utc>,
}

impl Meeting {
    pub fn new(account: Arc<str>, account_id: &str, uuid: Arc<str>, at: DateTime<Utc>) -> Self {
        Self {
            account,
            account_id: account_id.to_owned(),
            uuid,
            topic: None,
            host_email: None,
            start_time: None,
            kind: None,
            auto_delete_date: None,
            described_at: None,
            first_seen: at,
            updated_at: at,
            reached: None,
            skipped: None,
            files: BTreeMap::new(),
            failures: Vec::new(),
            processing: 0,
            planned_seq: 0,
            staged_seq: 0,
            assembled_seq: 0,
            uploaded_seq: 0,
            cleaned_seq: 0,
            uploaded_at: None,
            landed: None,
            deletion: None,
            updates: Vec::new(),
            history: Vec::new(),
            history_dropped: 0,
        }
    }

    /// The state to show: `failed` while any failure is unresolved, else the furthest step (or
    /// `skipped`, `updated`).
    pub fn state(&self) -> State {
        if self.is_failing() {
            return State::Failed;
        }
        match self.reached {
            None if self.skipped.is_some() => State::Skipped,
            None => State::Updated,
            Some(State::Received) if self.skipped.is_some() => State::Skipped,
            Some(reached) => reached,
        }
    }

    pub fn is_failing(&self) -> bool {
        !self.failures.is_empty() || self.failed_files().next().is_some()
    }

    pub fn failed_files(&self) -> impl Iterator<Item = (&Arc<str>, &FileEntry)> {
        self.files
            .iter()
            .filter(|(_, file)| file.state == FileState::Failed)
    }

    /// Every unresolved failure: the stages' first, then the files'.
    pub fn open_failures(&self) -> Vec<&Failure> {
        self.failures
            .iter()
            .chain(
                self.failed_files()
                    .filter_map(|(_, file)| file.failure.as_deref()),
            )
            .collect()
    }

    pub fn count_files(&self, state: FileState) -> usize {
        self.files
            .values()
            .filter(|file| file.state == state)
            .count()
    }

    /// Where the meeting waits, if it waits: `None` once it is done, skipped, failed (a failure
    /// waits for a person, not a stage) or known only through updates. `cleanup_grace` is the
    /// account's `delete_after_days` when it deletes: a meeting waits at cleanup only once its
    /// grace period is over.
    pub fn pending(&self, cleanup_grace: Option<Duration>) -> Option<Pending> {
        if self.is_failing() || matches!(self.state(), State::Skipped | State::Updated) {
            return None;
        }
        let reached = self.reached?;
        let at = |stage| {
            Some(Pending {
                stage,
                since: self.updated_at,
            })
        };
        if reached == State::Deleted {
            return None;
        }
        if reached == State::Received || self.processing > 0 {
            return at(StageName::Plan);
        }
        if self.count_files(FileState::Pending) > 0 {
            return at(StageName::Download);
        }
        // Each stage records its transition before it hands the meeting on, so these orders
        // hold once a meeting moved on; a failed file settles through download's `failed`.
        if self.staged_seq > self.assembled_seq {
            return at(StageName::Assemble);
        }
        if self.assembled_seq > self.uploaded_seq {
            return at(StageName::Upload);
        }
        if let Some(grace) = cleanup_grace
            && self.uploaded_seq > 0
            && self.uploaded_seq > self.cleaned_seq
        {
            let due = self.uploaded_at.unwrap_or(self.updated_at)
                + TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
            if Utc::now() >= due {
                return Some(Pending {
                    stage: StageName::Cleanup,
                    since: due.max(self.updated_at),
                });
            }
        }
        None
    }

    /// Whether it is archived: uploaded (or further) with nothing failed.
    pub fn is_archived(&self) -> bool {
        !self.is_failing() && self.reached.and_then(rank) >= rank(State::Uploaded)
    }

    /// A newer description (topic, host, start, kind, auto-delete date) replaces an older one;
    /// fields it lacks are kept.
    pub fn describe(&mut self, at: DateTime<Utc>, detail: &Value) {
        if self.described_at.is_some_and(|known| known > at) {
            // Older than what is known: fill only what is still unknown.
            fill(&mut self.topic, detail, "topic");
            fill(&mut self.host_email, detail, "host_email");
            fill(&mut self.start_time, detail, "start_time");
            fill(&mut self.kind, detail, "kind");
            fill(&mut self.auto_delete_date, detail, "auto_delete_date");
            return;
        }
        let mut described = false;
        for (field, key) in [
            (&mut self.topic, "topic"),
            (&mut self.host_email, "host_email"),
            (&mut self.start_time, "start_time"),
            (&mut self.kind, "kind"),
            (&mut self.auto_delete_date, "auto_delete_date"),
        ] {
            if let Some(text) = text(detail, key) {
                *field = Some(text);
                described = true;
            }
        }
        if described {
            self.described_at = Some(at);
        }
    }

    fn touch(&mut self, at: DateTime<Utc>) {
        self.updated_at = self.updated_at.max(at);
        self.first_seen = self.first_seen.min(at);
    }

    fn raise(&mut self, state: State) {
        if rank(state) > self.reached.and_then(rank) {
            self.reached = Some(state);
        }
    }

    /// Inserts a history line in time order (lines of equal time keep their arrival order).
    pub fn remember(&mut self, entry: Entry) {
        let index = self.history.partition_point(|line| line.at <= entry.at);
        self.history.insert(index, entry);
        if self.history.len() > HISTORY_CAP {
            self.history.remove(HISTORY_HEAD);
            self.history_dropped += 1;
        }
    }

    /// An event the ingress accepted (from the archive stream). Only `recording.completed` and
    /// `recording.transcript_completed` make a meeting `received`: the others are updates, which
    /// plan records.
    pub fn receive(
        &mut self,
        at: DateTime<Utc>,
        event: Arc<str>,
        origin: Option<Arc<str>>,
        stage: Arc<str>,
        description: &Value,
    ) {
        self.touch(at);
        self.describe(at, description);
        let fetches = matches!(
            &*event,
            "recording.completed" | "recording.transcript_completed"
        );
        if fetches {
            self.raise(State::Received);
        }
        self.remember(Entry {
            at,
            state: State::Received,
            stage,
            process: None,
            file_id: None,
            origin,
            note: Some(event),
            extra: None,
        });
    }

    /// Applies one transition of the status stream; `seq` is its place in the stream.
    pub fn apply(&mut self, transition: &Transition, seq: u64, names: Names<'_>) {
        let at = transition.at;
        self.touch(at);
        let detail = &transition.detail;
        let stage = names.stage.clone();
        let intern = names.intern;
        // One allocation per file id, shared by the file and its history lines.
        let file_id: Option<Arc<str>> = transition.file_id.as_deref().map(|id| {
            self.files
                .get_key_value(id)
                .map(|(known, _)| known.clone())
                .unwrap_or_else(|| Arc::from(id))
        });
        let mut note: Option<Arc<str>> = None;
        match transition.state {
            State::Received => self.raise(State::Received),
            State::Planned => {
                self.describe(at, detail);
                self.raise(State::Planned);
                self.planned_seq = self.planned_seq.max(seq);
                self.processing = number(detail, "processing");
                if let Some(wanted) = detail["wanted"].as_array() {
                    for file in wanted {
                        let Some(id) = file["file_id"].as_str().filter(|id| !id.is_empty()) else {
                            continue;
                        };
                        let kind = file["file_type"].as_str().map(&mut *intern);
                        match self.files.get_mut(id) {
                            Some(entry) => entry.file_type = entry.file_type.take().or(kind),
                            None => {
                                let mut entry = FileEntry::pending(at);
                                entry.file_type = kind;
                                self.files.insert(Arc::from(id), entry);
                            }
                        }
                    }
                }
                self.resolve(StageName::Plan);
                note = detail["event"].as_str().map(&mut *intern);
            }
            State::Skipped => {
                self.describe(at, detail);
                self.raise(State::Received);
                let reason = text(detail, "reason").unwrap_or_else(|| "skipped".into());
                note = Some(intern(&reason));
                self.skipped = Some(reason);
                self.resolve(StageName::Plan);
            }
            State::Staged => {
                self.raise(State::Staged);
                if let Some(id) = &file_id {
                    let kind = detail["file_type"].as_str().map(&mut *intern);
                    let entry = self
                        .files
                        .entry(id.clone())
                        .or_insert_with(|| FileEntry::pending(at));
                    entry.state = FileState::Staged;
                    entry.failure = None;
                    entry.at = at;
                    entry.size = detail["size"].as_u64().or(entry.size);
                    entry.file_type = entry.file_type.take().or(kind);
                    self.staged_seq = self.staged_seq.max(seq);
                }
            }
            State::Assembled => {
                self.raise(State::Assembled);
                self.assembled_seq = self.assembled_seq.max(seq);
                self.resolve(StageName::Assemble);
            }
            State::Uploaded if &*stage == StageName::Cleanup.as_str() => {
                // Cleanup finished without deleting anything (a replay without --allow-delete,
                // or no file it may delete): the meeting stays at Zoom, cleanup is done.
                self.cleaned_seq = self.cleaned_seq.max(seq);
                self.deletion = Some(deletion(detail));
                self.resolve(StageName::Cleanup);
                note = Some(Arc::from(deletion_note(detail)));
            }
            State::Uploaded => {
                self.describe(at, detail);
                self.raise(State::Uploaded);
                self.uploaded_seq = self.uploaded_seq.max(seq);
                self.uploaded_at = Some(self.uploaded_at.map_or(at, |known| known.max(at)));
                self.landed = Some(Landed {
                    destination: text(detail, "destination"),
                    manifest: text(detail, "manifest"),
                    files: number(detail, "files"),
                    missing: number(detail, "missing"),
                    bytes: number(detail, "bytes"),
                });
                self.resolve(StageName::Upload);
            }
            State::Deleted => {
                self.raise(State::Deleted);
                self.cleaned_seq = self.cleaned_seq.max(seq);
                self.deletion = Some(deletion(detail));
                self.resolve(StageName::Cleanup);
                note = Some(Arc::from(deletion_note(detail)));
            }
            State::Failed => {
                let failure = Failure {
                    stage: stage.clone(),
                    code: transition.code.clone().unwrap_or_else(|| "unknown".into()),
                    reason: cut(transition.reason.as_deref().unwrap_or_default()),
                    attempt: transition.attempt.unwrap_or(1),
                    at,
                    file_id: file_id.clone(),
                    process: names.process.clone(),
                };
                match &file_id {
                    Some(id) => {
                        let entry = self
                            .files
                            .entry(id.clone())
                            .or_insert_with(|| FileEntry::pending(at));
                        if entry.state == FileState::Staged {
                            note = Some(intern("the file was already staged: nothing lost"));
                        } else {
                            entry.state = FileState::Failed;
                            entry.at = at;
                            entry.failure = Some(Box::new(failure));
                        }
                    }
                    None => {
                        self.failures.retain(|known| known.stage != failure.stage);
                        self.failures.push(failure);
                    }
                }
            }
            State::Updated => {
                let event = text(detail, "event").unwrap_or_else(|| "updated".into());
                self.describe(at, detail);
                note = Some(intern(&event));
                self.updates.push(event);
            }
        }
        let extra = EntryExtra {
            replay_job: transition.replay_job.clone(),
            code: transition.code.clone(),
            reason: transition.reason.as_deref().map(cut),
            attempt: transition.attempt,
        };
        let has_extra = extra.replay_job.is_some()
            || extra.code.is_some()
            || extra.reason.is_some()
            || extra.attempt.is_some();
        self.remember(Entry {
            at,
            state: transition.state,
            stage,
            process: names.process,
            file_id,
            origin: names.origin,
            note,
            extra: has_extra.then(|| Box::new(extra)),
        });
    }

    /// A success of `stage` resolves that stage's open failure.
    fn resolve(&mut self, stage: StageName) {
        self.failures
            .retain(|failure| &*failure.stage != stage.as_str());
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    match &value[key] {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        _ => None,
    }
}

fn fill(field: &mut Option<String>, detail: &Value, key: &str) {
    if field.is_none() {
        *field = text(detail, key);
    }
}

fn number(value: &Value, key: &str) -> u64 {
    value[key].as_u64().unwrap_or(0)
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_REASON {
        return text.to_owned();
    }
    let mut end = MAX_REASON;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn deletion(detail: &Value) -> Deletion {
    Deletion {
        action: text(detail, "action"),
        deleted: strings(&detail["deleted"]),
        kept: strings(&detail["kept"]),
        gone: detail["listed"] == Value::Bool(false),
    }
}

fn deletion_note(detail: &Value) -> String {
    let deletion = deletion(detail);
    if deletion.gone {
        return "Zoom no longer listed the recording: nothing to delete".into();
    }
    let mut note = format!(
        "{} {} file(s) at Zoom, kept {}",
        match deletion.action.as_deref() {
            Some("delete") => "deleted",
            Some("trash") => "trashed",
            _ => "removed",
        },
        deletion.deleted.len(),
        deletion.kept.len()
    );
    if let Some(reason) = text(detail, "reason") {
        note = format!("{note}: {reason}");
    }
    note
}
