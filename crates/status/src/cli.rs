//! `zoom-relay status --summary`, `--meeting UUID`, and `--json` for scripts.
//!
//! The command asks a running status server (`--server URL`, by default `[status] listen` on this
//! machine, with the configured credential): the same facts as the page, at once. When no server
//! answers there, it reads the streams itself (`--direct` forces it) — slower, since it folds the
//! whole status stream, but it needs nothing but the broker.
//!
//! Exit status: 0 when nothing needs attention (`--summary`) or the meeting was found
//! (`--meeting`); 2 when something needs attention; 1 when the status could not be read.

use std::fmt::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use relay_core::broker::{Management, Topology};
use relay_core::settings::AmqpSettings;
use relay_pipeline::settings::AccountSettings;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::api::{ErrorBody, FailureView, MeetingDetail, Summary};
use crate::reader::StreamReader;
use crate::settings::StatusSettings;
use crate::state::{StatusState, fold_settings};
use crate::words::{age, ago};

/// How long a direct read may take to catch up with the streams.
const DIRECT_DEADLINE: Duration = Duration::from_secs(300);
/// Reader sessions failing in a row after which a direct read gives up (no broker, no stream).
const DIRECT_FAILURES: u32 = 3;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct StatusArgs {
    /// Print what needs attention, the accounts and the pipeline, then exit (instead of serving
    /// the page).
    #[arg(long, conflicts_with = "meeting")]
    pub summary: bool,
    /// Print one meeting: its state, failures (with the command that retries each), files and
    /// history.
    #[arg(long, value_name = "UUID")]
    pub meeting: Option<String>,
    /// The meeting's account, when its uuid is known in several.
    #[arg(long, value_name = "NAME", requires = "meeting")]
    pub account: Option<String>,
    /// JSON instead of text (the API's documents, docs/status.md).
    #[arg(long)]
    pub json: bool,
    /// The status server to ask (default: http://{status.listen}).
    #[arg(long, value_name = "URL", conflicts_with = "direct")]
    pub server: Option<String>,
    /// Read the streams directly instead of asking a status server.
    #[arg(long)]
    pub direct: bool,
}

impl StatusArgs {
    /// Whether the command prints something rather than serving.
    pub fn is_query(&self) -> bool {
        self.summary || self.meeting.is_some() || self.json
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("the status server at {server} answered {status}: {message}")]
    Server {
        server: String,
        status: u16,
        message: String,
    },
    #[error("no status server answered at {server} ({reason})")]
    Unreachable { server: String, reason: String },
    #[error("{0}")]
    Direct(String),
    #[error("{0}")]
    NotFound(String),
}

/// What `zoom-relay status` needs of the configuration to print.
pub struct Inputs<'a> {
    pub status: &'a StatusSettings,
    pub amqp: &'a AmqpSettings,
    pub retry_delays: &'a [Duration],
    pub accounts: &'a [AccountSettings],
}

enum Document {
    Summary(Box<Summary>),
    Meeting(Box<MeetingDetail>),
}

/// Runs the query `args` asks for and prints it.
pub async fn run(args: &StatusArgs, inputs: Inputs<'_>) -> ExitCode {
    match render(args, &inputs).await {
        Ok((text, code)) => {
            print!("{text}");
            code
        }
        Err(error) => {
            eprintln!("zoom-relay status: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What `run` prints, and its exit status.
pub async fn render(
    args: &StatusArgs,
    inputs: &Inputs<'_>,
) -> Result<(String, ExitCode), CliError> {
    let json = |value: Result<String, serde_json::Error>| {
        value
            .map(|text| format!("{text}\n"))
            .map_err(|error| CliError::Direct(error.to_string()))
    };
    Ok(match fetch(args, inputs).await? {
        Document::Summary(summary) => {
            let text = if args.json {
                json(serde_json::to_string_pretty(&summary))?
            } else {
                summary_text(&summary, Utc::now())
            };
            let code = if summary.attention.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
            (text, code)
        }
        Document::Meeting(detail) => {
            let text = if args.json {
                json(serde_json::to_string_pretty(&detail))?
            } else {
                meeting_text(&detail)
            };
            (text, ExitCode::SUCCESS)
        }
    })
}

/// `http://{listen}`, an unspecified address (`0.0.0.0`) asked on loopback.
pub fn default_server(listen: SocketAddr) -> String {
    let mut address = listen;
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{address}")
}

async fn fetch(args: &StatusArgs, inputs: &Inputs<'_>) -> Result<Document, CliError> {
    if args.direct {
        return direct(args, inputs).await;
    }
    let explicit = args.server.is_some();
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| default_server(inputs.status.listen));
    match ask(args, inputs.status, &server).await {
        Err(CliError::Unreachable { reason, .. }) if !explicit => {
            eprintln!(
                "zoom-relay status: no status server at {server} ({reason}); reading the streams directly"
            );
            direct(args, inputs).await
        }
        other => other,
    }
}

async fn ask(
    args: &StatusArgs,
    settings: &StatusSettings,
    server: &str,
) -> Result<Document, CliError> {
    let base = server.trim_end_matches('/');
    let url = match &args.meeting {
        Some(uuid) => {
            let mut url = format!(
                "{base}/api/meetings/{}",
                utf8_percent_encode(uuid, NON_ALPHANUMERIC)
            );
            if let Some(account) = &args.account {
                let _ = write!(
                    url,
                    "?account={}",
                    utf8_percent_encode(account, NON_ALPHANUMERIC)
                );
            }
            url
        }
        None => format!("{base}/api/summary"),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|error| CliError::Direct(error.to_string()))?;
    let mut request = http.get(&url);
    if let Some(token) = &settings.bearer_token {
        request = request.bearer_auth(token.expose_secret());
    } else if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
        request = request.basic_auth(user, Some(password.expose_secret()));
    }
    let response = request
        .send()
        .await
        .map_err(|error| CliError::Unreachable {
            server: server.to_owned(),
            reason: error.without_url().to_string(),
        })?;
    let status = response.status();
    if !status.is_success() {
        let body: Option<ErrorBody> = response.json().await.ok();
        let message = body
            .map(|body| format!("{} ({})", body.message, body.error))
            .unwrap_or_else(|| "no explanation".into());
        if status.as_u16() == 404 && args.meeting.is_some() {
            return Err(CliError::NotFound(message));
        }
        return Err(CliError::Server {
            server: server.to_owned(),
            status: status.as_u16(),
            message,
        });
    }
    let decoded = |error: reqwest::Error| CliError::Server {
        server: server.to_owned(),
        status: status.as_u16(),
        message: format!("unexpected answer: {}", error.without_url()),
    };
    Ok(match args.meeting {
        Some(_) => Document::Meeting(Box::new(response.json().await.map_err(decoded)?)),
        None => Document::Summary(Box::new(response.json().await.map_err(decoded)?)),
    })
}

/// Folds the streams here, up to where they end, and looks at the queues once.
async fn direct(args: &StatusArgs, inputs: &Inputs<'_>) -> Result<Document, CliError> {
    let topology = Topology::new(inputs.amqp, inputs.retry_delays);
    let state = StatusState::new(fold_settings(inputs.status, inputs.accounts), topology);
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(StreamReader::new(inputs.amqp, state.clone()).run(shutdown.clone()));
    let caught_up = state
        .wait_caught_up_or_failing(DIRECT_DEADLINE, DIRECT_FAILURES)
        .await;
    shutdown.cancel();
    let _ = reader.await;
    if !caught_up {
        return Err(CliError::Direct(match state.last_failure() {
            Some(reason) => format!("cannot read the status stream: {reason}"),
            None => format!(
                "could not read the status stream within {}",
                age(DIRECT_DEADLINE.as_secs() as i64)
            ),
        }));
    }
    match Management::new(inputs.amqp) {
        Ok(management) => {
            let prefix = state
                .topology()
                .stage_queue(relay_core::broker::StageName::Plan);
            let prefix = prefix.trim_end_matches("plan").to_owned();
            state.set_queues(
                management
                    .queues(&prefix)
                    .await
                    .map_err(|error| error.to_string()),
            );
        }
        Err(error) => state.set_queues(Err(error.to_string())),
    }
    let now = Utc::now();
    match &args.meeting {
        Some(uuid) => state.read_view(|view| {
            let found = view.find(uuid, args.account.as_deref());
            match found.as_slice() {
                [meeting] => Ok(Document::Meeting(Box::new(view.detail(meeting)))),
                [] => Err(CliError::NotFound(format!(
                    "no meeting {uuid} in the status stream"
                ))),
                several => Err(CliError::NotFound(format!(
                    "meeting {uuid} is known in several accounts ({}): add --account NAME",
                    several
                        .iter()
                        .map(|meeting| meeting.account.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }),
        None => Ok(Document::Summary(Box::new(state.summary(now)))),
    }
}

/// Text from Zoom or a sender, safe for a terminal: control characters (an escape sequence could
/// rewrite the screen) and bidirectional overrides are shown as `\u{…}`.
pub fn term(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn since(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    at.map(|at| ago(at, now)).unwrap_or_else(|| "never".into())
}

/// `--summary` as text.
pub fn summary_text(summary: &Summary, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "zoom-relay status, {}", time(now));
    let _ = writeln!(out, "{}", term(&summary.headline));
    let rest: Vec<&String> = summary
        .attention
        .iter()
        .filter(|line| **line != summary.headline)
        .collect();
    for line in rest {
        let _ = writeln!(out, "  - {}", term(line));
    }
    let _ = writeln!(out, "\nAccounts");
    for account in &summary.accounts {
        let authorization = &account.authorization;
        let token = match authorization.state.as_str() {
            "ok" => format!("token obtained {}", since(authorization.last_token_at, now)),
            "failing" => format!(
                "TOKEN REFUSED {}: {}",
                since(authorization.error_at, now),
                term(authorization.error.as_deref().unwrap_or("no reason given"))
            ),
            _ => "no report yet".into(),
        };
        let _ = writeln!(out, "  {}: {token}", term(&account.account));
        if !authorization.missing_scopes.is_empty() {
            let _ = writeln!(
                out,
                "    missing scopes: {}",
                authorization.missing_scopes.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "    last webhook {}; last archived {}",
            since(account.last_webhook_at, now),
            match &account.last_archived {
                Some(archived) => format!(
                    "{} ({})",
                    ago(archived.at, now),
                    term(archived.topic.as_deref().unwrap_or(&archived.meeting_uuid))
                ),
                None => "never".into(),
            }
        );
        let reconcile = match &account.reconcile {
            Some(reconcile) if reconcile.ok => format!(
                "ok {}{}",
                ago(reconcile.at, now),
                reconcile
                    .lag_seconds
                    .map(|lag| format!(", lag {}", age(lag)))
                    .unwrap_or_default()
            ),
            Some(reconcile) => format!(
                "FAILED {}: {}",
                ago(reconcile.at, now),
                term(reconcile.error.as_deref().unwrap_or("no reason given"))
            ),
            None => "no pass reported".into(),
        };
        let limits = &account.rate_limits;
        let _ = writeln!(
            out,
            "    reconciliation {reconcile}; Zoom 429s {}, daily cap {} of {}",
            limits.rate_limited, limits.daily_used, limits.daily_cap
        );
        let meetings = account
            .meetings
            .iter()
            .map(|(state, count)| format!("{count} {state}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "    meetings: {}",
            if meetings.is_empty() {
                "none".into()
            } else {
                meetings
            }
        );
        for risky in &account.auto_delete_at_risk {
            let _ = writeln!(
                out,
                "    AT RISK: {} ({}) is deleted by Zoom on {} and is {}",
                term(risky.topic.as_deref().unwrap_or("no topic")),
                term(&risky.meeting_uuid),
                term(&risky.auto_delete_date),
                risky.state
            );
        }
    }
    let _ = writeln!(
        out,
        "\nPipeline   {:>8} {:>11} {:>9} {:>8} {:>5} {:>8}  oldest waiting",
        "waiting", "in progress", "consumers", "retrying", "dead", "meetings"
    );
    let figure = |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    for stage in &summary.queues.stages {
        let _ = writeln!(
            out,
            "  {:<8} {:>8} {:>11} {:>9} {:>8} {:>5} {:>8}  {}",
            stage.stage,
            figure(stage.ready),
            figure(stage.unacked),
            figure(stage.consumers),
            figure(stage.retrying),
            figure(stage.dead_letters),
            stage.pending_meetings,
            match (&stage.oldest_pending, stage.oldest_pending_seconds) {
                (Some(oldest), Some(seconds)) =>
                    format!("{} ({})", age(seconds), term(&oldest.meeting_uuid)),
                _ => "-".into(),
            }
        );
    }
    if let Some(error) = &summary.queues.management.error {
        let _ = writeln!(out, "  (queue figures unavailable: {})", term(error));
    }
    if !summary.failures.is_empty() {
        let _ = writeln!(out, "\nFailed meetings (the most recent first)");
        for meeting in &summary.failures {
            let _ = writeln!(
                out,
                "  {} {} \"{}\"\n    {}",
                term(&meeting.account),
                term(&meeting.meeting_uuid),
                term(meeting.topic.as_deref().unwrap_or("")),
                term(&meeting.summary)
            );
            if let Some(failure) = &meeting.failure {
                let _ = writeln!(out, "    retry: {}", term(&failure.replay));
            }
        }
    }
    out
}

fn failure_text(out: &mut String, failure: &FailureView) {
    let file = match (&failure.file_id, &failure.file_type) {
        (Some(id), Some(kind)) => format!(", file {} ({kind})", term(id)),
        (Some(id), None) => format!(", file {}", term(id)),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "FAILED at {} with {}{file}, attempt {}, {}",
        failure.stage,
        failure.code,
        failure.attempt,
        time(failure.at)
    );
    let _ = writeln!(out, "  means:  {}", failure.meaning);
    let _ = writeln!(out, "  reason: {}", term(&failure.reason));
    let _ = writeln!(out, "  do:     {}", failure.advice);
    let _ = writeln!(out, "  retry:  {}", term(&failure.replay));
}

/// `--meeting UUID` as text.
pub fn meeting_text(detail: &MeetingDetail) -> String {
    let meeting = &detail.meeting;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Meeting {} of account {}",
        term(&meeting.meeting_uuid),
        term(&meeting.account)
    );
    let _ = writeln!(
        out,
        "  topic: {}\n  host:  {}\n  start: {}",
        term(meeting.topic.as_deref().unwrap_or("-")),
        term(meeting.host_email.as_deref().unwrap_or("-")),
        term(meeting.start_time.as_deref().unwrap_or("-"))
    );
    let reached = match &meeting.reached {
        Some(reached) if *reached != meeting.state => format!(" (reached {reached})"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "  state: {}{reached}: {}",
        meeting.state,
        term(&meeting.summary)
    );
    if let Some(date) = &meeting.auto_delete_date {
        let _ = writeln!(out, "  Zoom deletes it on {}", term(date));
    }
    for failure in &detail.failures {
        out.push('\n');
        failure_text(&mut out, failure);
    }
    if let Some(landed) = &detail.landed {
        let _ = writeln!(
            out,
            "\nLanded at {} (manifest {}): {} files, {} bytes{}",
            term(landed.destination.as_deref().unwrap_or("?")),
            term(landed.manifest.as_deref().unwrap_or("?")),
            landed.files,
            landed.bytes,
            if landed.missing > 0 {
                format!(", {} missing (listed in the manifest)", landed.missing)
            } else {
                String::new()
            }
        );
    }
    if let Some(deletion) = &detail.deletion {
        let _ = writeln!(
            out,
            "At Zoom: {}",
            if deletion.gone {
                "no longer listed; nothing to delete".to_owned()
            } else {
                format!(
                    "{} {} file(s), kept {}",
                    deletion.action.as_deref().unwrap_or("deleted"),
                    deletion.deleted.len(),
                    deletion.kept.len()
                )
            }
        );
    }
    if !detail.files.is_empty() {
        let _ = writeln!(out, "\nFiles");
        for file in &detail.files {
            let _ = writeln!(
                out,
                "  {:<8} {:<10} {} {}{}",
                file.state,
                term(file.file_type.as_deref().unwrap_or("?")),
                term(&file.file_id),
                file.size
                    .map(|size| format!("{size} bytes"))
                    .unwrap_or_default(),
                file.failure
                    .as_ref()
                    .map(|failure| format!(" ({})", failure.code))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(out, "\nHistory");
    for entry in &detail.history {
        let mut details = Vec::new();
        if let Some(file) = &entry.file_id {
            details.push(format!("file {}", term(file)));
        }
        if let Some(code) = &entry.code {
            details.push(code.clone());
        }
        if let Some(attempt) = entry.attempt {
            details.push(format!("attempt {attempt}"));
        }
        if let Some(note) = &entry.note {
            details.push(term(note));
        }
        if let Some(origin) = &entry.origin {
            details.push(format!("via {origin}"));
        }
        let _ = writeln!(
            out,
            "  {} {:<9} {:<9} {:<22} {}",
            time(entry.at),
            entry.state,
            entry.stage,
            term(entry.process.as_deref().unwrap_or("")),
            details.join(", ")
        );
    }
    if detail.history_omitted > 0 {
        let _ = writeln!(
            out,
            "  ({} lines of a long history left out)",
            detail.history_omitted
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_text_cannot_carry_escapes_or_reorder_a_line() {
        assert_eq!(term("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(term("report\u{202e}4pm.exe"), "report\\u{202e}4pm.exe");
        assert_eq!(term("Совещание"), "Совещание");
    }

    #[test]
    fn an_unspecified_listen_address_is_asked_on_loopback() {
        assert_eq!(
            default_server("0.0.0.0:8090".parse().expect("address")),
            "http://127.0.0.1:8090"
        );
        assert_eq!(
            default_server("127.0.0.1:8091".parse().expect("address")),
            "http://127.0.0.1:8091"
        );
    }
}
