//! The optional metadata an account fetches into `meeting.json` (its `metadata` setting): who
//! attended (and a webinar's panelists), a recurring meeting's past instances, the AI Companion
//! summary, a webinar's Q&A. Each needs its own scope. A scope the token lacks, or a call Zoom
//! refuses, leaves that one out with its reason in `unavailable` and one warning per account and
//! kind in the log: metadata never fails a recording.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use zoom_api::client::metadata::{MeetingSummary, Panelist, Participant, QaAsker};
use zoom_api::client::{Capability, PastInstance};

use crate::accounts::Account;
use crate::settings::Metadata;

/// What was fetched, by kind; absent when not enabled, not applicable, or unavailable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrichment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<Participant>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panelists: Option<Vec<Panelist>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<PastInstance>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<MeetingSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qa: Option<Vec<QaAsker>>,
    /// The alternative hosts, each mapped by the account's `owner` rule: who else may claim
    /// the recording at the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_owners: Option<Vec<String>>,
    /// Enabled, and not fetched: why. The recording is archived all the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<Unavailable>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailable {
    /// `participants`, `panelists`, `instances`, `summary`, `qa` or `co_owners`.
    pub metadata: String,
    pub reason: String,
}

/// The meeting being described.
pub struct Subject<'a> {
    pub uuid: &'a str,
    pub meeting_id: Option<u64>,
    pub webinar: bool,
}

/// Fetches every kind `account` enables that applies to `subject`.
#[tracing::instrument(skip_all, fields(account = %account.name(), meeting_uuid = subject.uuid))]
pub async fn fetch(account: &Account, subject: &Subject<'_>) -> Enrichment {
    let mut enrichment = Enrichment::default();
    let wanted = &account.settings.metadata;
    if wanted.is_empty() {
        return enrichment;
    }
    let scopes = match account.zoom.tokens().get().await {
        Ok(token) => token.scopes.clone(),
        Err(error) => {
            for kind in wanted {
                enrichment.unavailable.push(Unavailable {
                    metadata: name(*kind).into(),
                    reason: format!("no access token: {error}"),
                });
            }
            return enrichment;
        }
    };
    let zoom = &account.zoom;
    for kind in wanted {
        match kind {
            Metadata::Participants if subject.webinar => {
                if allowed(
                    account,
                    &scopes,
                    Capability::ReadWebinarParticipants,
                    "participants",
                    &mut enrichment,
                ) {
                    enrichment.participants = keep(
                        zoom.past_webinar_participants(subject.uuid).await,
                        account,
                        "participants",
                        &mut enrichment,
                    );
                    enrichment.panelists = match subject.meeting_id {
                        Some(id) => keep(
                            zoom.webinar_panelists(id).await,
                            account,
                            "panelists",
                            &mut enrichment,
                        ),
                        None => None,
                    };
                }
            }
            Metadata::Participants => {
                if allowed(
                    account,
                    &scopes,
                    Capability::ReadMeetingParticipants,
                    "participants",
                    &mut enrichment,
                ) {
                    enrichment.participants = keep(
                        zoom.past_meeting_participants(subject.uuid).await,
                        account,
                        "participants",
                        &mut enrichment,
                    );
                }
            }
            Metadata::Instances => {
                let Some(id) = subject.meeting_id else {
                    continue;
                };
                if allowed(
                    account,
                    &scopes,
                    Capability::ReadPastInstances,
                    "instances",
                    &mut enrichment,
                ) {
                    enrichment.instances = keep(
                        zoom.past_instances(id).await,
                        account,
                        "instances",
                        &mut enrichment,
                    );
                }
            }
            Metadata::Summary => {
                if allowed(
                    account,
                    &scopes,
                    Capability::ReadMeetingSummary,
                    "summary",
                    &mut enrichment,
                ) {
                    enrichment.summary = keep(
                        zoom.meeting_summary(subject.uuid).await,
                        account,
                        "summary",
                        &mut enrichment,
                    );
                }
            }
            Metadata::CoOwners => {
                let Some(id) = subject.meeting_id else {
                    continue;
                };
                let capability = if subject.webinar {
                    Capability::ReadWebinar
                } else {
                    Capability::ReadMeeting
                };
                if allowed(account, &scopes, capability, "co_owners", &mut enrichment) {
                    enrichment.co_owners = keep(
                        zoom.alternative_hosts(id, subject.webinar).await,
                        account,
                        "co_owners",
                        &mut enrichment,
                    )
                    .map(|hosts| {
                        let mut owners: Vec<String> = hosts
                            .iter()
                            .map(|email| account.settings.owner.owner_of(Some(email)))
                            .collect();
                        owners.dedup();
                        owners
                    });
                }
            }
            // Zoom's Q&A is a webinar's.
            Metadata::Qa if !subject.webinar => {}
            Metadata::Qa => {
                if allowed(
                    account,
                    &scopes,
                    Capability::ReadWebinarQa,
                    "qa",
                    &mut enrichment,
                ) {
                    enrichment.qa = keep(
                        zoom.past_webinar_qa(subject.uuid).await,
                        account,
                        "qa",
                        &mut enrichment,
                    );
                }
            }
        }
    }
    enrichment
}

/// Whether the token carries the scope; if not, records why and warns once.
fn allowed(
    account: &Account,
    scopes: &[String],
    capability: Capability,
    kind: &'static str,
    enrichment: &mut Enrichment,
) -> bool {
    if capability.satisfied_by(scopes) {
        return true;
    }
    let reason = format!(
        "the app lacks the scope {} (see `zoom-relay check`)",
        capability.describe()
    );
    warn_once(account, kind, &reason);
    enrichment.unavailable.push(Unavailable {
        metadata: kind.into(),
        reason,
    });
    false
}

/// The fetched value, or `None` with the refusal recorded.
fn keep<T>(
    fetched: Result<T, zoom_api::ZoomError>,
    account: &Account,
    kind: &'static str,
    enrichment: &mut Enrichment,
) -> Option<T> {
    match fetched {
        Ok(value) => Some(value),
        Err(error) => {
            let reason = error.to_string();
            warn_once(account, kind, &reason);
            enrichment.unavailable.push(Unavailable {
                metadata: kind.into(),
                reason,
            });
            None
        }
    }
}

/// One warning per account and kind per process: a missing scope is a standing condition, not
/// news at every meeting (later ones log at info).
fn warn_once(account: &Account, kind: &'static str, reason: &str) {
    static WARNED: OnceLock<Mutex<HashSet<(String, &'static str)>>> = OnceLock::new();
    let first = WARNED
        .get_or_init(Mutex::default)
        .lock()
        .map(|mut warned| warned.insert((account.name().to_owned(), kind)))
        .unwrap_or(true);
    if first {
        warn!(metadata = kind, reason, "metadata left out of the manifest");
    } else {
        info!(metadata = kind, reason, "metadata left out of the manifest");
    }
}

fn name(kind: Metadata) -> &'static str {
    match kind {
        Metadata::Participants => "participants",
        Metadata::Instances => "instances",
        Metadata::Summary => "summary",
        Metadata::Qa => "qa",
        Metadata::CoOwners => "co_owners",
    }
}
