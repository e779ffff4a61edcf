//! What a replay job does: where it reads, what it keeps, where it sends, and how. Stored with
//! the job's state (secrets excepted) so `--resume` repeats exactly the same job.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use relay_core::broker::StageName;
use serde::{Deserialize, Serialize};
use zoom_api::EventName;

use crate::ReplayError;
use crate::item::Item;

/// Where events are read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The archive stream, events received in `[since, until]`.
    Archive {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    /// A stage's dead-letter queue.
    DeadLetters { stage: String },
    /// JSON lines written by `--to-file`.
    File { path: PathBuf },
}

impl Source {
    /// The stage of a dead-letter source.
    pub fn stage(&self) -> Option<StageName> {
        match self {
            Self::DeadLetters { stage } => StageName::parse(stage),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Archive { since, until } => {
                format!("archive {} .. {}", since.to_rfc3339(), until.to_rfc3339())
            }
            Self::DeadLetters { stage } => format!("dead letters of {stage}"),
            Self::File { path } => format!("file {}", path.display()),
        }
    }
}

/// Where events are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A (staging) ingress: each body re-signed with the token in the environment variable.
    Url {
        url: String,
        secret_token_env: String,
    },
    /// A (staging) broker: events to its `zoom.events`, stage work to its stage queue. The URL
    /// is stored without its password; `--resume` needs it again.
    Amqp {
        url: String,
        namespace: String,
        /// Our name for the account at the target, when staging names it differently.
        account: Option<String>,
    },
    /// JSON lines.
    File { path: PathBuf },
    /// Dead letters back into their own stage's queue, on the same broker.
    OwnStage,
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Self::Url { url, .. } => format!("ingress {url}"),
            Self::Amqp { url, namespace, .. } => {
                format!("broker {} namespace `{namespace}`", redact_url(url))
            }
            Self::File { path } => format!("file {}", path.display()),
            Self::OwnStage => "their own stage".into(),
        }
    }

    /// Whether the target takes only events (a stage's own work cannot travel as a webhook).
    fn takes_events_only(&self) -> bool {
        matches!(self, Self::Url { .. } | Self::File { .. })
    }
}

/// What is kept; all optional, combined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub account: Option<String>,
    #[serde(default)]
    pub events: Vec<String>,
    pub meeting: Option<String>,
    /// Dead letters only: their failure code.
    pub error_code: Option<String>,
    /// Stop after this many matched.
    pub max: Option<u64>,
}

impl Filter {
    pub fn matches(&self, item: &Item) -> bool {
        let equals = |wanted: &Option<String>, actual: Option<&str>| {
            wanted
                .as_deref()
                .is_none_or(|wanted| actual == Some(wanted))
        };
        equals(&self.account, item.account.as_deref())
            && (self.events.is_empty()
                || item
                    .event
                    .as_deref()
                    .is_some_and(|event| self.events.iter().any(|wanted| wanted == event)))
            && equals(&self.meeting, item.meeting_uuid.as_deref())
            && equals(&self.error_code, item.error_code.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Send nothing; print the plan.
    pub dry_run: bool,
    /// Replayed events may delete cloud recordings (never otherwise).
    pub allow_delete: bool,
    /// The target reprocesses meetings it already holds.
    pub force: bool,
    /// Plan's dead letters without a binding (queued by a version before bindings) are bound
    /// to the configured account whose Zoom account id the event names.
    #[serde(default)]
    pub rebind: bool,
    /// Events per second, at most.
    pub rate: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dry_run: false,
            allow_delete: false,
            force: false,
            rebind: false,
            rate: DEFAULT_RATE,
        }
    }
}

/// Modest: a staging ingress and its broker keep up, and Zoom's API behind staging is not
/// flooded with downloads.
pub const DEFAULT_RATE: f64 = 10.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub job: String,
    pub source: Source,
    pub filter: Filter,
    pub target: Target,
    pub options: Options,
}

impl Request {
    /// Refuses what cannot work before anything is read or sent. `accounts`: the configured
    /// accounts (names), checked when the source is this relay's broker.
    pub fn validate(&self, accounts: &[String]) -> Result<(), ReplayError> {
        if !relay_core::binding::is_job_id(&self.job) {
            return Err(ReplayError::InvalidJob(self.job.clone()));
        }
        for event in &self.filter.events {
            if EventName::parse(event).is_none() {
                return Err(ReplayError::UnknownEvent {
                    event: event.clone(),
                    known: EventName::ALL.iter().map(|e| e.as_str()).collect(),
                });
            }
        }
        let from_broker = !matches!(self.source, Source::File { .. });
        if let Some(account) = &self.filter.account
            && from_broker
            && !accounts.contains(account)
        {
            return Err(ReplayError::UnknownAccount {
                account: account.clone(),
                known: accounts.to_vec(),
            });
        }
        match &self.source {
            Source::Archive { since, until } => {
                if until <= since {
                    return Err(ReplayError::EmptyRange {
                        since: *since,
                        until: *until,
                    });
                }
                if self.target == Target::OwnStage {
                    return Err(ReplayError::NoTarget);
                }
            }
            Source::DeadLetters { stage } => {
                let stage = StageName::parse(stage).ok_or_else(|| ReplayError::UnknownStage {
                    stage: stage.clone(),
                    known: StageName::ALL.iter().map(|s| s.as_str()).collect(),
                })?;
                if stage != StageName::Plan && self.target.takes_events_only() {
                    return Err(ReplayError::TasksNeedAStage(stage.as_str()));
                }
            }
            Source::File { .. } => {
                if self.target == Target::OwnStage {
                    return Err(ReplayError::NoTarget);
                }
            }
        }
        if self.filter.error_code.is_some() && !matches!(self.source, Source::DeadLetters { .. }) {
            return Err(ReplayError::ErrorCodeNeedsDeadLetters);
        }
        if matches!(self.target, Target::Url { .. }) && self.filter.account.is_none() {
            return Err(ReplayError::UrlNeedsAccount);
        }
        if self.options.rebind && self.source.stage() != Some(StageName::Plan) {
            return Err(ReplayError::RebindNeedsPlan);
        }
        if !(self.options.rate.is_finite() && self.options.rate > 0.0) {
            return Err(ReplayError::InvalidRate);
        }
        Ok(())
    }
}

/// `--since`/`--until`: an RFC 3339 time, or a duration before `now` (`90m`, `2h`, `3days`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ReplayError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let ago: Duration =
        humantime::parse_duration(text).map_err(|_| ReplayError::InvalidTime(text.to_owned()))?;
    let ago = TimeDelta::from_std(ago).map_err(|_| ReplayError::InvalidTime(text.to_owned()))?;
    now.checked_sub_signed(ago)
        .ok_or_else(|| ReplayError::InvalidTime(text.to_owned()))
}

/// A job id for a new job: sortable by start, unique enough for one operator's jobs.
pub fn new_job_id(now: DateTime<Utc>) -> String {
    format!(
        "replay-{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

/// The URL without its password: what may be printed or stored.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<invalid URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(source: Source, target: Target) -> Request {
        Request {
            job: "job-1".into(),
            source,
            filter: Filter::default(),
            target,
            options: Options::default(),
        }
    }

    fn archive() -> Source {
        let now = Utc::now();
        Source::Archive {
            since: now - TimeDelta::hours(1),
            until: now,
        }
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            parse_time("2h", now).expect("2h"),
            now - TimeDelta::hours(2)
        );
        assert_eq!(
            parse_time("2026-11-30T10:00:00+01:00", now)
                .expect("rfc3339")
                .to_rfc3339(),
            "2026-11-30T09:00:00+00:00"
        );
        assert!(matches!(
            parse_time("yesterday-ish", now),
            Err(ReplayError::InvalidTime(_))
        ));
    }

    #[test]
    fn bad_requests_are_refused_before_anything_is_read() {
        let accounts = ["acme".to_owned()];
        let now = Utc::now();
        let backwards = request(
            Source::Archive {
                since: now,
                until: now - TimeDelta::hours(1),
            },
            Target::File { path: "x".into() },
        );
        assert!(matches!(
            backwards.validate(&accounts),
            Err(ReplayError::EmptyRange { .. })
        ));
        let unknown_stage = request(
            Source::DeadLetters {
                stage: "transcode".into(),
            },
            Target::OwnStage,
        );
        assert!(matches!(
            unknown_stage.validate(&accounts),
            Err(ReplayError::UnknownStage { .. })
        ));
        let mut unknown_account = request(archive(), Target::File { path: "x".into() });
        unknown_account.filter.account = Some("initech".into());
        assert!(matches!(
            unknown_account.validate(&accounts),
            Err(ReplayError::UnknownAccount { .. })
        ));
        let mut unknown_event = request(archive(), Target::File { path: "x".into() });
        unknown_event.filter.events = vec!["recording.exploded".into()];
        assert!(matches!(
            unknown_event.validate(&accounts),
            Err(ReplayError::UnknownEvent { .. })
        ));
        let downloads_as_webhooks = request(
            Source::DeadLetters {
                stage: "download".into(),
            },
            Target::File { path: "x".into() },
        );
        assert!(matches!(
            downloads_as_webhooks.validate(&accounts),
            Err(ReplayError::TasksNeedAStage("download"))
        ));
        let url_without_account = request(
            archive(),
            Target::Url {
                url: "http://staging".into(),
                secret_token_env: "T".into(),
            },
        );
        assert!(matches!(
            url_without_account.validate(&accounts),
            Err(ReplayError::UrlNeedsAccount)
        ));
        let mut fine = request(archive(), Target::File { path: "x".into() });
        fine.filter.account = Some("acme".into());
        fine.filter.events = vec!["recording.completed".into()];
        assert!(fine.validate(&accounts).is_ok());
    }

    #[test]
    fn filters_combine() {
        let item = Item {
            account: Some("acme".into()),
            event: Some("recording.completed".into()),
            meeting_uuid: Some("u1".into()),
            ..Item::default()
        };
        let mut filter = Filter {
            account: Some("acme".into()),
            events: vec!["recording.completed".into(), "recording.renamed".into()],
            ..Filter::default()
        };
        assert!(filter.matches(&item));
        filter.meeting = Some("u2".into());
        assert!(!filter.matches(&item));
        filter.meeting = None;
        filter.events = vec!["recording.deleted".into()];
        assert!(!filter.matches(&item));
        let dead = Filter {
            error_code: Some("download_not_found".into()),
            ..Filter::default()
        };
        assert!(
            !dead.matches(&item),
            "no code: not a match for a code filter"
        );
    }

    #[test]
    fn stored_urls_carry_no_password() {
        assert_eq!(
            redact_url("amqp://user:secret@staging:5672/%2f"),
            "amqp://user:***@staging:5672/%2f"
        );
    }
}
