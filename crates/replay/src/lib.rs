//! `zoom-relay replay`: archived and dead-lettered events sent again — to a staging ingress
//! (re-signed with staging's secret token), a staging broker, a file, or (dead letters) back
//! into their own stage.
//!
//! A job reads one [source](source::Reader), keeps what its [filter](request::Filter) matches,
//! and sends each kept message to one [target](target::Sender), at most `rate` per second,
//! recording after each where it got ([state::StateFile]) so `--resume` continues an
//! interrupted job without sending anything twice. Every replayed message is bound as a replay
//! of its job ([`relay_core::binding::ReplayClaim`]): stages never delete a cloud recording
//! because of it unless the job was started with `--allow-delete`. A job always ends with one
//! [`Summary`], also when it stopped early, saying so.

pub mod item;
pub mod request;
pub mod source;
pub mod state;
pub mod target;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use relay_core::binding::ReplayClaim;
use relay_core::broker::{Topology, connect_reader};
use relay_core::settings::AmqpSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::item::Item;
use crate::request::{Request, Source, Target, redact_url};
use crate::source::{ArchiveReader, DeadLetterReader, FileReader, Reader};
use crate::state::{Counts, StateFile};
use crate::target::{BrokerSender, FileSender, SendError, Sender, UrlSender};

pub use request::{Filter, Options};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("unknown stage `{stage}`; stages: {}", known.join(", "))]
    UnknownStage {
        stage: String,
        known: Vec<&'static str>,
    },
    #[error("unknown account `{account}`; configured: {}", known.join(", "))]
    UnknownAccount { account: String, known: Vec<String> },
    #[error("unknown event `{event}`; events: {}", known.join(", "))]
    UnknownEvent {
        event: String,
        known: Vec<&'static str>,
    },
    #[error("`{0}` is neither an RFC 3339 time nor a duration such as `2h`")]
    InvalidTime(String),
    #[error("--until ({until}) is not after --since ({since})")]
    EmptyRange {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    #[error(
        "the archive holds events from {oldest} on (amqp.archive_max_age); the range ends before, at {until}"
    )]
    BeyondRetention {
        oldest: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    #[error("the archive holds no events")]
    EmptyArchive,
    #[error("this source needs a target: --to-url, --to-amqp or --to-file")]
    NoTarget,
    #[error(
        "the dead letters of `{0}` are a stage's own work, not events: they replay into a stage (the default, or --to-amqp)"
    )]
    TasksNeedAStage(&'static str),
    #[error("--error-code applies to dead letters (--from-dlq)")]
    ErrorCodeNeedsDeadLetters,
    #[error("--to-url signs with one account's secret token: choose the account with --account")]
    UrlNeedsAccount,
    #[error(
        "--rebind applies to plan's dead letters (--from-dlq plan): only events name their account"
    )]
    RebindNeedsPlan,
    #[error("--rate must be a positive number of events per second")]
    InvalidRate,
    #[error("`{0}` is not an http(s) URL")]
    InvalidUrl(String),
    #[error("the environment variable `{0}` holding the target's secret token is not set")]
    MissingSecret(String),
    #[error("job `{0}` resumes only with its target's broker URL: pass --to-amqp again")]
    MissingTargetUrl(String),
    #[error("--to-amqp names another broker than job `{0}` was sending to")]
    TargetChanged(String),
    #[error("the target refused the event with {status} `{code}` (a wrong secret token?)")]
    TargetRefused { status: u16, code: String },
    #[error("the target cannot be reached: {0}")]
    TargetUnreachable(String),
    #[error("the broker: {0}")]
    Broker(String),
    #[error("`{path}`: {reason}")]
    File { path: String, reason: String },
    #[error("`{0}` is not a job id (1-64 of A-Z a-z 0-9 . _ -)")]
    InvalidJob(String),
    #[error("job `{0}` exists; resume it with --resume")]
    JobExists(String),
    #[error("no job `{job}` in {dir}")]
    UnknownJob { job: String, dir: String },
    #[error("job `{0}` is complete; nothing to resume")]
    AlreadyComplete(String),
}

/// Looks up a secret by the name the request gives (an environment variable).
pub type SecretLookup = Arc<dyn Fn(&str) -> Option<SecretString> + Send + Sync>;

/// What a job needs from the process that runs it.
#[derive(Clone)]
pub struct Environment {
    /// This relay's broker: the archive and dead letters are read there, and dead letters go
    /// back into their stage there.
    pub amqp: AmqpSettings,
    pub topology: Topology,
    /// Configured accounts: our name and Zoom's account id (an `--account` filter on this
    /// relay's broker must name one; `--rebind` binds by the id).
    pub accounts: Vec<(String, String)>,
    pub state_dir: PathBuf,
    /// The `--to-amqp` URL, password included (the request stores it without).
    pub target_amqp_url: Option<SecretString>,
    pub secrets: SecretLookup,
    /// Draw progress on stderr (a terminal).
    pub progress: bool,
}

impl Environment {
    fn account_names(&self) -> Vec<String> {
        self.accounts.iter().map(|(name, _)| name.clone()).collect()
    }

    /// The configured account an unbound event names (`--rebind`): by `payload.account_id`.
    fn rebind(&self, item: &mut Item) {
        if item.account.is_some() {
            return;
        }
        let body: serde_json::Value = serde_json::from_slice(&item.body).unwrap_or_default();
        let Some(named) = body["payload"]["account_id"].as_str() else {
            return;
        };
        if let Some((name, account_id)) = self.accounts.iter().find(|(_, id)| id == named) {
            item.account = Some(name.clone());
            item.account_id = Some(account_id.clone());
        }
    }

    /// Secrets from the process environment.
    pub fn env_secrets() -> SecretLookup {
        Arc::new(|name: &str| std::env::var(name).ok().map(SecretString::from))
    }
}

/// A new job, or one to resume.
pub enum Job {
    New(Box<Request>),
    Resume(String),
}

/// The one JSON line every run ends with.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub job: String,
    pub source: String,
    pub target: String,
    pub dry_run: bool,
    #[serde(flatten)]
    pub counts: Counts,
    /// Every matched event was handled (sent, refused one by one, or skipped).
    pub complete: bool,
    /// Why the job stopped early (resume it with `--resume`).
    pub error: Option<String>,
    /// The oldest event the archive holds (archive sources).
    pub archive_oldest: Option<DateTime<Utc>>,
    /// The range started before it: older events are gone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partly_beyond_retention: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

impl Summary {
    pub fn succeeded(&self) -> bool {
        self.complete && self.error.is_none() && self.counts.failed == 0
    }
}

/// What a dry run found: what a real run would send.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub by_event: BTreeMap<String, u64>,
    pub by_account: BTreeMap<String, u64>,
    pub first_received_at: Option<DateTime<Utc>>,
    pub last_received_at: Option<DateTime<Utc>>,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub sample_meetings: Vec<String>,
}

const SAMPLE_MEETINGS: usize = 5;

impl Plan {
    fn add(&mut self, item: &Item, positions_are_offsets: bool) {
        let name = |value: &Option<String>| value.clone().unwrap_or_else(|| "(none)".into());
        *self.by_event.entry(name(&item.event)).or_default() += 1;
        *self.by_account.entry(name(&item.account)).or_default() += 1;
        if let Some(at) = item.received_at {
            self.first_received_at = Some(self.first_received_at.map_or(at, |first| first.min(at)));
            self.last_received_at = Some(self.last_received_at.map_or(at, |last| last.max(at)));
        }
        if positions_are_offsets && let Some(offset) = item.position {
            self.first_offset.get_or_insert(offset);
            self.last_offset = Some(offset);
        }
        if let Some(uuid) = &item.meeting_uuid
            && self.sample_meetings.len() < SAMPLE_MEETINGS
            && !self.sample_meetings.contains(uuid)
        {
            self.sample_meetings.push(uuid.clone());
        }
    }

    /// For a person at a terminal; the summary line carries the same as JSON.
    pub fn print(&self) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "would send:");
        for (event, count) in &self.by_event {
            let _ = writeln!(out, "  {count:>7}  {event}");
        }
        let _ = writeln!(out, "by account:");
        for (account, count) in &self.by_account {
            let _ = writeln!(out, "  {count:>7}  {account}");
        }
        if let (Some(first), Some(last)) = (self.first_received_at, self.last_received_at) {
            let _ = writeln!(
                out,
                "received {} .. {}",
                first.to_rfc3339(),
                last.to_rfc3339()
            );
        }
        if let (Some(first), Some(last)) = (self.first_offset, self.last_offset) {
            let _ = writeln!(out, "archive offsets {first} .. {last}");
        }
        if !self.sample_meetings.is_empty() {
            let _ = writeln!(out, "meetings, e.g. {}", self.sample_meetings.join(" "));
        }
    }
}

/// Runs a job to its end, or until `shutdown` (then it can be resumed). `Err` only for what
/// stops a job before it sends anything; once started, the [`Summary`] reports how it ended.
pub async fn run(
    job: Job,
    environment: &Environment,
    shutdown: CancellationToken,
) -> Result<Summary, ReplayError> {
    let new = matches!(job, Job::New(_));
    let mut state = match job {
        Job::New(request) => {
            request.validate(&environment.account_names())?;
            StateFile::ephemeral(*request)
        }
        Job::Resume(job) => {
            let state = StateFile::load(&environment.state_dir, &job)?;
            if state.state.complete {
                return Err(ReplayError::AlreadyComplete(job));
            }
            state.state.request.validate(&environment.account_names())?;
            state
        }
    };
    let request = state.state.request.clone();
    let resuming = state.state.position.is_some() || state.state.counts != Counts::default();
    let mut sender = if request.options.dry_run {
        None
    } else {
        Some(open_sender(&request, environment, resuming).await?)
    };
    // Only a job that can send is kept for `--resume` (a dry run sends nothing).
    if new && !request.options.dry_run {
        state.keep_in(&environment.state_dir)?;
    }
    let connection = match &request.source {
        Source::File { .. } => None,
        _ => Some(
            connect_reader(&environment.amqp, "zoom-relay-replay")
                .await
                .map_err(|error| ReplayError::Broker(error.to_string()))?,
        ),
    };
    let (mut reader, held) =
        open_reader(&request, environment, connection.as_ref(), &state).await?;
    let mut summary = Summary {
        job: request.job.clone(),
        source: request.source.describe(),
        target: request.target.describe(),
        dry_run: request.options.dry_run,
        counts: state.state.counts.clone(),
        complete: false,
        error: None,
        archive_oldest: held.map(|held| held.oldest),
        partly_beyond_retention: match (&request.source, held) {
            (Source::Archive { since, .. }, Some(held)) => *since < held.oldest,
            _ => false,
        },
        plan: request.options.dry_run.then(Plan::default),
    };
    info!(
        job = request.job,
        source = summary.source,
        target = summary.target,
        "replay started"
    );

    let claim = ReplayClaim::new(
        &request.job,
        request.options.allow_delete,
        request.options.force,
    );
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / request.options.rate));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress = Progress::new(environment.progress && std::io::stderr().is_terminal());
    let positions_are_offsets = matches!(request.source, Source::Archive { .. });
    let keeps_position = !matches!(request.source, Source::DeadLetters { .. });

    let outcome: Result<bool, ReplayError> = async {
        loop {
            if request
                .filter
                .max
                .is_some_and(|max| summary.counts.matched >= max)
            {
                return Ok(true);
            }
            let item = tokio::select! {
                () = shutdown.cancelled() => return Ok(false),
                item = reader.next() => item?,
            };
            let Some(mut item) = item else {
                return Ok(true);
            };
            if request.options.rebind {
                environment.rebind(&mut item);
            }
            if request.filter.matches(&item) {
                summary.counts.matched += 1;
                if let Some(plan) = summary.plan.as_mut() {
                    plan.add(&item, positions_are_offsets);
                    reader.settle(&item, false).await?;
                    continue;
                }
                if let Some(sender) = sender.as_mut() {
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(false),
                        _ = pace.tick() => {}
                    }
                    let sent = match sender.send(&item, &claim).await {
                        Ok(()) => {
                            summary.counts.sent += 1;
                            true
                        }
                        Err(SendError::Refused(reason)) => {
                            // A dead letter without a binding is skipped, anything else failed.
                            if item.account.is_none() {
                                summary.counts.skipped += 1;
                            } else {
                                summary.counts.failed += 1;
                            }
                            warn!(
                                job = request.job,
                                meeting_uuid = item.meeting_uuid.as_deref().unwrap_or_default(),
                                event = item.event.as_deref().unwrap_or_default(),
                                reason,
                                "the target refused an event"
                            );
                            false
                        }
                        Err(SendError::Fatal(error)) => return Err(error),
                    };
                    reader.settle(&item, sent).await?;
                }
            } else {
                reader.settle(&item, false).await?;
            }
            if keeps_position {
                state.state.position = item.position.or(state.state.position);
            }
            state.state.counts = summary.counts.clone();
            state.save()?;
            progress.draw(&summary.counts, reader.fraction());
        }
    }
    .await;
    progress.clear();
    match outcome {
        Ok(complete) => summary.complete = complete,
        Err(error) => {
            warn!(job = request.job, %error, "replay stopped");
            summary.error = Some(error.to_string());
        }
    }
    reader.close().await;
    if let Some(sender) = sender
        && let Err(error) = sender.close().await
    {
        summary.complete = false;
        summary.error.get_or_insert(error.to_string());
    }
    if let Some(connection) = connection {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            connection.close(200, "replay done".into()),
        )
        .await;
    }
    state.state.complete = summary.complete && summary.error.is_none();
    state.state.counts = summary.counts.clone();
    if let Err(error) = state.save() {
        summary.error.get_or_insert(error.to_string());
    }
    info!(
        job = request.job,
        sent = summary.counts.sent,
        complete = summary.complete,
        "replay ended"
    );
    Ok(summary)
}

async fn open_sender(
    request: &Request,
    environment: &Environment,
    resuming: bool,
) -> Result<Sender, ReplayError> {
    Ok(match &request.target {
        Target::Url {
            url,
            secret_token_env,
        } => {
            let secret = (environment.secrets)(secret_token_env)
                .filter(|secret| !secret.expose_secret().is_empty())
                .ok_or_else(|| ReplayError::MissingSecret(secret_token_env.clone()))?;
            Sender::Url(UrlSender::new(url, secret)?)
        }
        Target::Amqp {
            url,
            namespace,
            account,
        } => {
            let live = environment
                .target_amqp_url
                .as_ref()
                .ok_or_else(|| ReplayError::MissingTargetUrl(request.job.clone()))?;
            if redact_url(live.expose_secret()) != *url {
                return Err(ReplayError::TargetChanged(request.job.clone()));
            }
            let amqp = AmqpSettings {
                url: live.clone(),
                namespace: namespace.clone(),
                management_url: None,
                ..environment.amqp.clone()
            };
            let topology = Topology::new(&amqp, environment.topology.retry_delays());
            Sender::Broker(BrokerSender::connect(&amqp, topology, false, account.clone()).await?)
        }
        Target::File { path } => Sender::File(FileSender::create(path, resuming).await?),
        Target::OwnStage => Sender::Broker(
            BrokerSender::connect(&environment.amqp, environment.topology.clone(), true, None)
                .await?,
        ),
    })
}

async fn open_reader(
    request: &Request,
    environment: &Environment,
    connection: Option<&lapin::Connection>,
    state: &StateFile,
) -> Result<(Reader, Option<source::Held>), ReplayError> {
    let connection =
        || connection.ok_or_else(|| ReplayError::Broker("no connection to the broker".into()));
    Ok(match &request.source {
        Source::Archive { since, until } => {
            let (reader, held) = ArchiveReader::open(
                connection()?,
                &environment.topology.archive_stream(),
                *since,
                *until,
                state.state.position,
                request.filter.account.as_deref(),
            )
            .await?;
            (Reader::Archive(reader), Some(held))
        }
        Source::DeadLetters { .. } => {
            let stage = request
                .source
                .stage()
                .ok_or_else(|| ReplayError::UnknownStage {
                    stage: format!("{:?}", request.source),
                    known: Vec::new(),
                })?;
            let queue = environment.topology.dead_letter_queue(stage);
            (
                Reader::DeadLetters(DeadLetterReader::open(connection()?, &queue, stage).await?),
                None,
            )
        }
        Source::File { path } => (
            Reader::File(FileReader::open(path, state.state.position).await?),
            None,
        ),
    })
}

/// Progress on a terminal: count, rate, and — where the source's size is known — an ETA.
struct Progress {
    enabled: bool,
    started: Instant,
    drawn: Option<Instant>,
}

const REDRAW: Duration = Duration::from_millis(250);

impl Progress {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            started: Instant::now(),
            drawn: None,
        }
    }

    fn draw(&mut self, counts: &Counts, fraction: Option<f64>) {
        if !self.enabled || self.drawn.is_some_and(|drawn| drawn.elapsed() < REDRAW) {
            return;
        }
        self.drawn = Some(Instant::now());
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = counts.sent as f64 / elapsed;
        let eta = fraction
            .filter(|fraction| *fraction > 0.0)
            .map(|fraction| {
                let left = elapsed * (1.0 - fraction) / fraction;
                format!(
                    ", {:.0}% read, ETA {}",
                    fraction * 100.0,
                    humantime::format_duration(Duration::from_secs(left as u64))
                )
            })
            .unwrap_or_default();
        eprint!(
            "\r\x1b[Ksent {} of {} matched ({:.1}/s){eta}, failed {}",
            counts.sent, counts.matched, rate, counts.failed
        );
    }

    fn clear(&self) {
        if self.enabled && self.drawn.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}
