//! Plain words: what a meeting's state means, what to do about a failure, the command that
//! retries it. Shared by the API, the page and the terminal, so they say the same thing.

use chrono::{DateTime, Utc};
use relay_core::broker::StageName;
use relay_core::failure::Code;
use relay_core::status::State;

use std::collections::BTreeMap;

use crate::api::{AccountView, FileCounts, MeetingSummary, QueuesPage, StreamView, Summary};
use crate::machine::{Meeting, Pending};
use crate::reader::Progress;

pub use relay_core::status::{replay_command, shell_word};

/// What to do about a failure with `code`, before running the replay command.
pub fn advice(code: Option<Code>, attempt: u32) -> String {
    let Some(code) = code else {
        return "Look at the reason, fix the cause, then replay it.".into();
    };
    let specific = match code {
        Code::ZoomCredentials => {
            "Fix the account's app at Zoom (client id and secret, app activated; `zoom-relay check` \
             tells), then replay it."
        }
        Code::ZoomUnavailable => "Zoom did not answer usefully; once it does, replay it.",
        Code::ZoomRefused => {
            "Zoom refused the request: check the app's scopes and the meeting at Zoom, then replay it."
        }
        Code::HtmlInsteadOfFile | Code::FileNotFound => {
            "Zoom no longer serves this file (deleted at Zoom, or the app may not read it). The rest \
             of the meeting is archived without it, and its manifest lists it as missing. If the \
             file is still at Zoom, replay it."
        }
        Code::SizeMismatch | Code::DownloadOverlong => {
            "Zoom served another size than it listed; nothing was stored. Replay it later: Zoom may \
             still have been writing the file."
        }
        Code::DownloadNotAllowed => {
            "The download URL points outside zoom.download_hosts. Check that the event is genuine; \
             add the host only if it is Zoom's, then replay it."
        }
        Code::DownloadUnauthorized => {
            "No credential opened the file: check the app's recording scopes, then replay it."
        }
        Code::StorageFailed | Code::StorageInvalid => {
            "Fix the store (space, permissions, credentials, reachability), then replay it."
        }
        Code::DestinationConflict => {
            "Another object already has this file's key at the destination: move it away (or \
             replay with --force to overwrite it), then replay it."
        }
        Code::PathTemplate => "Fix the account's path_template or file_template, then replay it.",
        Code::UnknownAccount | Code::AccountMismatch => {
            "The message is bound to an account this configuration does not have (or has with \
             another Zoom id): fix [[accounts]], then replay it."
        }
        Code::FileProcessingTimeout => {
            "Zoom kept the file processing past pipeline.processing_deadline: if Zoom finished it \
             since, replay it."
        }
        Code::MissingBinding => {
            "The message did not come through a verified path. Replay it only if you know where \
             it came from (with --rebind)."
        }
        Code::MediaBroken => "The file is not playable media: check it at Zoom, then replay it.",
        _ if code.is_retryable() => {
            return format!(
                "It was tried {attempt} time{}. Fix the cause, then replay it.",
                if attempt == 1 { "" } else { "s" }
            );
        }
        _ => "It is not retried on its own. Fix the cause, then replay it.",
    };
    specific.to_owned()
}

/// "3 h", "2 days": for ages and lags.
pub fn age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7_200 => format!("{} min", seconds / 60),
        7_200..172_800 => format!("{} h", seconds / 3_600),
        _ => format!("{} days", seconds / 86_400),
    }
}

pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ago", age((now - at).num_seconds()))
}

fn files(count: usize) -> String {
    format!("{count} file{}", if count == 1 { "" } else { "s" })
}

/// One sentence about a meeting.
pub fn meeting_sentence(meeting: &Meeting, pending: Option<Pending>, counts: FileCounts) -> String {
    let state = meeting.state();
    match state {
        State::Failed => {
            let failures = meeting.open_failures();
            let first = failures.first();
            let what = match first {
                Some(failure) if failure.file_id.is_some() => format!(
                    "{} of {} could not be fetched ({})",
                    files(counts.failed),
                    counts.wanted,
                    failure.code
                ),
                Some(failure) => format!("the {} stage gave up ({})", failure.stage, failure.code),
                None => "a stage gave up".into(),
            };
            let reached = match meeting.reached {
                Some(State::Uploaded) => "; the rest is archived",
                Some(State::Deleted) => "; the rest is archived and deleted at Zoom",
                _ => "; not archived",
            };
            format!("Failed: {what}{reached}.")
        }
        State::Skipped => format!(
            "Skipped on purpose: {}.",
            meeting.skipped.as_deref().unwrap_or("filtered out")
        ),
        State::Updated => format!(
            "Zoom reported {} for a recording not archived here.",
            meeting
                .updates
                .last()
                .map(String::as_str)
                .unwrap_or("a change")
        ),
        State::Deleted => "Archived and verified; the cloud recording is deleted at Zoom.".into(),
        State::Uploaded => match pending {
            Some(Pending {
                stage: StageName::Cleanup,
                ..
            }) => "Archived and verified; waiting for cleanup to delete it at Zoom.".into(),
            Some(pending) => format!(
                "Archived; a later event's work waits at {}.",
                pending.stage.as_str()
            ),
            None => "Archived and verified at the destination.".into(),
        },
        _ => match pending {
            Some(Pending {
                stage: StageName::Plan,
                ..
            }) if meeting.processing > 0 => format!(
                "Waiting for Zoom to finish processing {}.",
                files(meeting.processing as usize)
            ),
            Some(Pending {
                stage: StageName::Download,
                ..
            }) => format!(
                "Downloading: {} of {} staged.",
                counts.staged, counts.wanted
            ),
            Some(pending) => format!("In progress: waiting at {}.", pending.stage.as_str()),
            None => format!("{}.", capitalized(state.as_str())),
        },
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The summary's headline and what needs a person, in plain sentences, most urgent first.
pub fn summarize(
    progress: Progress,
    meetings: BTreeMap<String, usize>,
    failures: Vec<MeetingSummary>,
    accounts: Vec<AccountView>,
    queues: QueuesPage,
    stream: StreamView,
) -> Summary {
    let pending: usize = accounts.iter().map(|account| account.pending).sum();
    let failed: usize = accounts.iter().map(|account| account.failed).sum();
    let at_risk: usize = accounts
        .iter()
        .map(|account| account.auto_delete_at_risk.len())
        .sum();
    let mut attention = Vec::new();
    if !progress.caught_up {
        attention.push(format!(
            "Still reading the status stream ({} messages so far): what follows may be incomplete.",
            stream.status_messages + stream.archive_messages
        ));
    }
    for account in &accounts {
        let authorization = &account.authorization;
        if authorization.state == "failing" {
            attention.push(format!(
                "Account {} cannot get a Zoom access token: {}. Nothing of it moves until its \
                 app's client id and secret are fixed (`zoom-relay check` tells).",
                account.account,
                authorization.error.as_deref().unwrap_or("no reason given")
            ));
        }
        if !authorization.missing_scopes.is_empty() {
            attention.push(format!(
                "Account {}'s Zoom app lacks scopes: {}.",
                account.account,
                authorization.missing_scopes.join(", ")
            ));
        }
    }
    for account in &accounts {
        let risky = account.auto_delete_at_risk.len();
        if risky > 0 {
            attention.push(format!(
                "{risky} recording{} of {} will be deleted by Zoom soon and {} not archived.",
                if risky == 1 { "" } else { "s" },
                account.account,
                if risky == 1 { "is" } else { "are" }
            ));
        }
    }
    if failed > 0 {
        attention.push(format!(
            "{failed} meeting{} failed: each says why and how to retry it.",
            if failed == 1 { "" } else { "s" }
        ));
    }
    for stage in &queues.stages {
        let waiting = stage.ready.unwrap_or(0) + stage.unacked.unwrap_or(0);
        if stage.consumers == Some(0) && waiting > 0 {
            attention.push(format!(
                "Nothing consumes the {} stage while {waiting} message{} wait: start its processes.",
                stage.stage,
                if waiting == 1 { "" } else { "s" }
            ));
        }
        if let Some(dead) = stage.dead_letters.filter(|dead| *dead > 0) {
            attention.push(format!(
                "{dead} dead letter{} at the {} stage (`zoom-relay replay --from-dlq {}` once fixed).",
                if dead == 1 { "" } else { "s" },
                stage.stage,
                stage.stage
            ));
        }
    }
    if let Some(error) = &queues.management.error {
        attention.push(format!(
            "Queue figures are unavailable: RabbitMQ's management API: {error}."
        ));
    }
    for account in &accounts {
        if let Some(reconcile) = account.reconcile.as_ref().filter(|reconcile| !reconcile.ok) {
            attention.push(format!(
                "The last reconciliation of {} failed: {}.",
                account.account,
                reconcile.error.as_deref().unwrap_or("no reason given")
            ));
        }
    }
    let total: usize = meetings.values().sum();
    let everything_archived = progress.caught_up && pending == 0 && failed == 0;
    let headline = if !progress.caught_up {
        "Catching up with the status stream…".to_owned()
    } else if let Some(first) = attention.first() {
        first.clone()
    } else if pending > 0 {
        format!(
            "{pending} meeting{} in progress; nothing needs attention.",
            if pending == 1 { "" } else { "s" }
        )
    } else if total == 0 {
        "Nothing received yet.".to_owned()
    } else {
        "Everything is archived.".to_owned()
    };
    Summary {
        caught_up: progress.caught_up,
        headline,
        everything_archived,
        attention,
        meetings,
        pending,
        failed,
        auto_delete_at_risk: at_risk,
        accounts,
        queues,
        failures,
        stream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_commands_quote_only_what_a_shell_would_misread() {
        assert_eq!(
            replay_command("download", "aB+c/d==", "acme"),
            "zoom-relay replay --from-dlq download --meeting aB+c/d== --account acme"
        );
        assert_eq!(
            replay_command("plan", "it's; rm -rf /", "acme"),
            r"zoom-relay replay --from-dlq plan --meeting 'it'\''s; rm -rf /' --account acme"
        );
    }

    #[test]
    fn every_code_has_advice() {
        for code in Code::ALL {
            assert!(advice(Some(*code), 3).ends_with('.'), "{code}");
        }
        assert!(advice(Some(Code::StagedFileMissing), 3).contains("3 times"));
    }
}
