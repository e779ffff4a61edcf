//! The Zoom REST API for one account, with Server-to-Server OAuth or a user-managed app's
//! rotating refresh token ([`grant`]); a meeting's optional metadata ([`metadata`]).
//!
//! Every call goes through [`ZoomClient::send`]: the account's rate budget, a cached token, and
//! one retry policy — 401 renews the token and retries once, 429 waits `Retry-After` (or backs off
//! with jitter), 5xx and connection errors back off exponentially within `zoom.max_attempts`,
//! anything else is a typed [`ZoomError`] with Zoom's `code` and `message`.

mod auth;
mod download;
mod error;
pub mod grant;
pub mod metadata;
mod ratelimit;
mod stats;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Months, NaiveDate};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use reqwest::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

pub use auth::{AccessToken, TokenCache, TokenOutcome};
pub use download::{Download, Downloaded, FileSource};
pub use error::{DownloadError, ZoomError};
pub use ratelimit::{Category, Priority, RateLimits};
pub use stats::{StatsSnapshot, ZoomStats};

use crate::model::{MeetingRecordings, Page, User};
use crate::settings::{Credentials, ZoomSettings};

/// Characters left as they are in a path segment; everything else is percent-encoded.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A meeting id or UUID as a path segment. Zoom requires a UUID that starts with `/` or contains
/// `//` to be encoded twice; any other is encoded once (`+`, `=` and `/` included).
pub fn meeting_path_segment(meeting_id: &str) -> String {
    let once = utf8_percent_encode(meeting_id, PATH_SEGMENT).to_string();
    if meeting_id.starts_with('/') || meeting_id.contains("//") {
        utf8_percent_encode(&once, PATH_SEGMENT).to_string()
    } else {
        once
    }
}

/// One occurrence of a recurring meeting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct PastInstance {
    pub uuid: String,
    #[serde(default)]
    pub start_time: Option<String>,
}

/// `trash` keeps the recording recoverable for 30 days; `delete` is permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteAction {
    Trash,
    Delete,
}

impl DeleteAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trash => "trash",
            Self::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    /// Zoom no longer had it: success for an idempotent cleanup.
    AlreadyGone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Inactive,
    Pending,
}

impl UserStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Pending => "pending",
        }
    }
}

/// What an account's features need from its app: each is granted by a classic scope or by a
/// granular one (Zoom offers both; an app has one kind or the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    ReadRecordings,
    DeleteRecordings,
    ReadUsers,
    /// Who attended a past meeting (`GET /past_meetings/{uuid}/participants`).
    ReadMeetingParticipants,
    /// A webinar's panelists and past attendees (`GET /webinars/{id}/panelists`,
    /// `GET /past_webinars/{uuid}/participants`).
    ReadWebinarParticipants,
    /// A recurring meeting's occurrences (`GET /past_meetings/{id}/instances`).
    ReadPastInstances,
    /// The AI Companion meeting summary (`GET /meetings/{uuid}/meeting_summary`).
    ReadMeetingSummary,
    /// A past webinar's Q&A (`GET /past_webinars/{uuid}/qa`).
    ReadWebinarQa,
    /// A meeting's settings, its alternative hosts among them (`GET /meetings/{id}`).
    ReadMeeting,
    /// A webinar's settings, its alternative hosts among them (`GET /webinars/{id}`).
    ReadWebinar,
}

impl Capability {
    pub const ALL: [Capability; 10] = [
        Self::ReadRecordings,
        Self::DeleteRecordings,
        Self::ReadUsers,
        Self::ReadMeetingParticipants,
        Self::ReadWebinarParticipants,
        Self::ReadPastInstances,
        Self::ReadMeetingSummary,
        Self::ReadWebinarQa,
        Self::ReadMeeting,
        Self::ReadWebinar,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Self::ReadRecordings => "recording:read:admin (or cloud_recording:read:*)",
            Self::DeleteRecordings => "recording:write:admin (or cloud_recording:delete:*)",
            Self::ReadUsers => "user:read:admin (or user:read:*)",
            Self::ReadMeetingParticipants => {
                "meeting:read:admin (or meeting:read:list_past_participants:*)"
            }
            Self::ReadWebinarParticipants => {
                "webinar:read:admin (or webinar:read:list_panelists:* and webinar:read:list_past_participants:*)"
            }
            Self::ReadPastInstances => "meeting:read:admin (or meeting:read:list_past_instances:*)",
            Self::ReadMeetingSummary => "meeting_summary:read:admin (or meeting:read:summary:*)",
            Self::ReadWebinarQa => "webinar:read:admin (or webinar:read:list_past_qa:*)",
            Self::ReadMeeting => "meeting:read:admin (or meeting:read:meeting:*)",
            Self::ReadWebinar => "webinar:read:admin (or webinar:read:webinar:*)",
        }
    }

    /// Classic scope names, and the granular-scope prefixes that together grant it.
    fn scopes(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::ReadRecordings => (
                &["recording:read:admin", "recording:read"],
                &["cloud_recording:read:"],
            ),
            Self::DeleteRecordings => (
                &["recording:write:admin", "recording:write"],
                &["cloud_recording:delete:"],
            ),
            Self::ReadUsers => (&["user:read:admin", "user:read"], &["user:read:"]),
            Self::ReadMeetingParticipants => (
                &["meeting:read:admin", "meeting:read"],
                &["meeting:read:list_past_participants:"],
            ),
            Self::ReadWebinarParticipants => (
                &["webinar:read:admin", "webinar:read"],
                &[
                    "webinar:read:list_panelists:",
                    "webinar:read:list_past_participants:",
                ],
            ),
            Self::ReadPastInstances => (
                &["meeting:read:admin", "meeting:read"],
                &["meeting:read:list_past_instances:"],
            ),
            Self::ReadMeetingSummary => (
                &["meeting_summary:read:admin", "meeting_summary:read"],
                &["meeting:read:summary:"],
            ),
            Self::ReadWebinarQa => (
                &["webinar:read:admin", "webinar:read"],
                &["webinar:read:list_past_qa:"],
            ),
            Self::ReadMeeting => (
                &["meeting:read:admin", "meeting:read"],
                &["meeting:read:meeting:"],
            ),
            Self::ReadWebinar => (
                &["webinar:read:admin", "webinar:read"],
                &["webinar:read:webinar:"],
            ),
        }
    }

    /// Granted by `scopes`: one classic scope, or every granular scope it takes.
    pub fn satisfied_by(self, scopes: &[String]) -> bool {
        let (classic, granular) = self.scopes();
        scopes.iter().any(|scope| classic.contains(&scope.as_str()))
            || granular
                .iter()
                .all(|prefix| scopes.iter().any(|scope| scope.starts_with(prefix)))
    }

    /// Whether `scope` is one this capability uses.
    pub fn uses(self, scope: &str) -> bool {
        let (classic, granular) = self.scopes();
        classic.contains(&scope) || granular.iter().any(|prefix| scope.starts_with(prefix))
    }
}

/// Granted scopes that none of `wanted` uses: least privilege says remove them.
pub fn unneeded_scopes(granted: &[String], wanted: &[Capability]) -> Vec<String> {
    granted
        .iter()
        .filter(|scope| !wanted.iter().any(|capability| capability.uses(scope)))
        .cloned()
        .collect()
}

/// Outcome of a credentials check: never contains a secret.
#[derive(Debug)]
pub struct CheckReport {
    pub account: String,
    pub result: Result<(), String>,
    pub missing: Vec<Capability>,
    /// Scopes the token carries that none of the wanted capabilities uses.
    pub unneeded: Vec<String>,
}

/// One account's API client. Cheap to share (`Arc`); its rate budget and token cache are the
/// account's for this whole process.
pub struct ZoomClient {
    account: String,
    account_id: String,
    settings: ZoomSettings,
    api: reqwest::Client,
    files: reqwest::Client,
    tokens: TokenCache,
    limits: RateLimits,
    stats: ZoomStats,
}

impl ZoomClient {
    /// `account` is our name for it (logs); `credentials` its app's.
    pub fn new(
        settings: &ZoomSettings,
        account: &str,
        credentials: Credentials,
    ) -> Result<Arc<Self>, ZoomError> {
        let api = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("zoom-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ZoomError::transport)?;
        let files = download::file_client(settings)?;
        Ok(Arc::new(Self {
            account: account.to_owned(),
            account_id: credentials.account_id.clone(),
            tokens: TokenCache::new(api.clone(), settings, credentials)?,
            limits: RateLimits::new(&settings.rate_limits),
            stats: ZoomStats::new(settings.rate_limits.heavy_per_day),
            settings: settings.clone(),
            api,
            files,
        }))
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// 429s and daily-cap use met by this client (for the account's status report).
    pub fn stats(&self) -> &ZoomStats {
        &self.stats
    }

    pub fn settings(&self) -> &ZoomSettings {
        &self.settings
    }

    /// `GET /meetings/{id}/recordings`, optionally with a fresh `download_access_token`.
    #[tracing::instrument(skip_all, fields(account = %self.account, meeting_uuid = meeting_id))]
    pub async fn meeting_recordings(
        &self,
        meeting_id: &str,
        with_download_token: bool,
    ) -> Result<MeetingRecordings, ZoomError> {
        let path = format!("/meetings/{}/recordings", meeting_path_segment(meeting_id));
        let mut query = Vec::new();
        if with_download_token {
            query.push(("include_fields", "download_access_token".to_owned()));
            query.push((
                "ttl",
                self.settings
                    .download_access_token_ttl
                    .as_secs()
                    .clamp(1, 604_800)
                    .to_string(),
            ));
        }
        let mut meeting: MeetingRecordings = self
            .get_json((Category::Light, Priority::Live), &path, &query)
            .await?;
        meeting.normalize();
        Ok(meeting)
    }

    /// Every recording of a user between `from` and `to` (inclusive).
    pub async fn user_recordings(
        &self,
        user_id: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<MeetingRecordings>, ZoomError> {
        let path = format!("/users/{}/recordings", meeting_path_segment(user_id));
        self.list_recordings(&path, from, to).await
    }

    /// Every recording of the account between `from` and `to` (inclusive).
    pub async fn account_recordings(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<MeetingRecordings>, ZoomError> {
        let path = format!(
            "/accounts/{}/recordings",
            meeting_path_segment(&self.account_id)
        );
        self.list_recordings(&path, from, to).await
    }

    /// Zoom lists at most one month per request, and a page token expires after 15 minutes: each
    /// window is listed from its first page to its last in one go; an expired token restarts the
    /// window, never resumes it.
    #[tracing::instrument(skip_all, fields(account = %self.account, %from, %to))]
    async fn list_recordings(
        &self,
        path: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<MeetingRecordings>, ZoomError> {
        let mut meetings = Vec::new();
        let mut seen = HashSet::new();
        for (window_from, window_to) in month_windows(from, to) {
            let mut restarts = 0;
            let window = loop {
                match self.list_window(path, window_from, window_to).await {
                    Err(ZoomError::Api { code, .. })
                        if code == Some(PAGE_TOKEN_EXPIRED) && restarts < 2 =>
                    {
                        restarts += 1;
                        warn!(%window_from, "page token expired, listing the window again");
                    }
                    other => break other?,
                }
            };
            for mut meeting in window {
                meeting.normalize();
                if seen.insert(meeting.uuid.clone()) {
                    meetings.push(meeting);
                }
            }
        }
        Ok(meetings)
    }

    async fn list_window(
        &self,
        path: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<MeetingRecordings>, ZoomError> {
        let query = [("from", from.to_string()), ("to", to.to_string())];
        self.all_pages(Category::Medium, path, &query).await
    }

    /// A recurring meeting's past instances (`GET /past_meetings/{id}/instances`, Medium,
    /// `meeting:read:admin`): what a numeric meeting id expands to.
    pub async fn past_instances(&self, meeting_id: u64) -> Result<Vec<PastInstance>, ZoomError> {
        #[derive(serde::Deserialize)]
        struct Instances {
            #[serde(default)]
            meetings: Vec<PastInstance>,
        }
        let path = format!("/past_meetings/{meeting_id}/instances");
        let instances: Instances = self
            .get_json((Category::Medium, Priority::Live), &path, &[])
            .await?;
        Ok(instances.meetings)
    }

    /// Every user with `status`, all pages.
    pub async fn users(&self, status: UserStatus) -> Result<Vec<User>, ZoomError> {
        let query = [("status", status.as_str().to_owned())];
        self.all_pages(Category::Medium, "/users", &query).await
    }

    /// Follows `next_page_token` from the first page to the last, in one go.
    async fn all_pages<T: DeserializeOwned>(
        &self,
        category: Category,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, ZoomError> {
        let mut items = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut page_query = query.to_vec();
            page_query.push(("page_size", "300".to_owned()));
            if !page_token.is_empty() {
                page_query.push(("next_page_token", page_token.clone()));
            }
            // Listing is background work: the live pipeline keeps its share of the budget.
            let page: Page<T> = self
                .get_json((category, Priority::Background), path, &page_query)
                .await?;
            items.extend(page.items);
            match page.next_page_token {
                Some(next) if !next.is_empty() => page_token = next,
                _ => return Ok(items),
            }
        }
    }

    /// Active and inactive users: a deactivated host's recordings still need moving.
    pub async fn all_users(&self) -> Result<Vec<User>, ZoomError> {
        let mut users = self.users(UserStatus::Active).await?;
        users.extend(self.users(UserStatus::Inactive).await?);
        Ok(users)
    }

    /// Deletes all of a meeting's cloud recordings.
    #[tracing::instrument(skip_all, fields(account = %self.account, meeting_uuid = meeting_id, action = action.as_str()))]
    pub async fn delete_meeting_recordings(
        &self,
        meeting_id: &str,
        action: DeleteAction,
    ) -> Result<Deletion, ZoomError> {
        let path = format!("/meetings/{}/recordings", meeting_path_segment(meeting_id));
        self.delete(&path, action).await
    }

    /// Deletes one recording file of a meeting.
    #[tracing::instrument(skip_all, fields(account = %self.account, meeting_uuid = meeting_id, file_id, action = action.as_str()))]
    pub async fn delete_recording_file(
        &self,
        meeting_id: &str,
        file_id: &str,
        action: DeleteAction,
    ) -> Result<Deletion, ZoomError> {
        let path = format!(
            "/meetings/{}/recordings/{}",
            meeting_path_segment(meeting_id),
            utf8_percent_encode(file_id, PATH_SEGMENT)
        );
        self.delete(&path, action).await
    }

    async fn delete(&self, path: &str, action: DeleteAction) -> Result<Deletion, ZoomError> {
        let query = [("action", action.as_str().to_owned())];
        match self
            .send(
                (Category::Light, Priority::Live),
                Method::DELETE,
                path,
                &query,
            )
            .await
        {
            Ok(_) => Ok(Deletion::Deleted),
            Err(ZoomError::NotFound { .. }) => Ok(Deletion::AlreadyGone),
            Err(error) => Err(error),
        }
    }

    /// Token, then a cheap read (`GET /users/me`), then the scopes `wanted` features need.
    pub async fn check(&self, wanted: &[Capability]) -> CheckReport {
        let account = self.account.clone();
        let token = match self.tokens.get().await {
            Ok(token) => token,
            Err(error) => {
                return CheckReport {
                    account,
                    result: Err(error.to_string()),
                    missing: Vec::new(),
                    unneeded: Vec::new(),
                };
            }
        };
        let missing = wanted
            .iter()
            .copied()
            .filter(|capability| !capability.satisfied_by(&token.scopes))
            .collect();
        let unneeded = unneeded_scopes(&token.scopes, wanted);
        let result = self
            .send(
                (Category::Light, Priority::Live),
                Method::GET,
                "/users/me",
                &[],
            )
            .await
            .map(|_| ())
            .map_err(|error| error.to_string());
        CheckReport {
            account,
            result,
            missing,
            unneeded,
        }
    }

    /// Starts a streaming download (see [`Download`]).
    pub async fn download(&self, source: FileSource) -> Result<Download<'_>, DownloadError> {
        Download::start(self, source).await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        (category, priority): (Category, Priority),
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ZoomError> {
        let response = self
            .send((category, priority), Method::GET, path, query)
            .await?;
        response
            .json()
            .await
            .map_err(|error| ZoomError::Decode(error.without_url().to_string()))
    }

    /// One API call under the retry policy (module docs).
    async fn send(
        &self,
        (category, priority): (Category, Priority),
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Response, ZoomError> {
        let url = format!("{}{path}", self.settings.api_base.trim_end_matches('/'));
        let max_attempts = self.settings.max_attempts;
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.limits.acquire(category, priority).await;
            let token = self.tokens.get().await?;
            self.stats.sent(category);
            let sent = self
                .api
                .request(method.clone(), &url)
                .query(query)
                .bearer_auth(token.value.expose())
                .timeout(self.settings.request_timeout)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) if attempt < max_attempts => {
                    debug!(attempt, error = %error.without_url(), "Zoom unreachable, retrying");
                    tokio::time::sleep(backoff(&self.settings, attempt)).await;
                    continue;
                }
                Err(error) => return Err(ZoomError::transport(error)),
            };
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.stats.rate_limited(category);
            }
            match status {
                StatusCode::UNAUTHORIZED if !renewed => {
                    renewed = true;
                    attempt -= 1;
                    debug!("access token refused, renewing once");
                    self.tokens.invalidate(&token).await;
                }
                StatusCode::UNAUTHORIZED => {
                    let (_, message) = zoom_message(response).await;
                    return Err(ZoomError::Unauthorized {
                        message: message.unwrap_or_default(),
                    });
                }
                StatusCode::TOO_MANY_REQUESTS if attempt < max_attempts => {
                    let wait =
                        retry_after(&response).unwrap_or_else(|| backoff(&self.settings, attempt));
                    warn!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "rate limited by Zoom"
                    );
                    tokio::time::sleep(wait).await;
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    return Err(ZoomError::RateLimited { attempts: attempt });
                }
                status if status.is_server_error() && attempt < max_attempts => {
                    debug!(
                        attempt,
                        status = status.as_u16(),
                        "Zoom server error, retrying"
                    );
                    tokio::time::sleep(backoff(&self.settings, attempt)).await;
                }
                status if status.is_server_error() => {
                    return Err(ZoomError::Server {
                        status: status.as_u16(),
                        attempts: attempt,
                    });
                }
                StatusCode::NOT_FOUND => {
                    let (code, message) = zoom_message(response).await;
                    return Err(ZoomError::NotFound {
                        code,
                        message: message.unwrap_or_default(),
                    });
                }
                status => {
                    let (code, message) = zoom_message(response).await;
                    return Err(ZoomError::Api {
                        status: status.as_u16(),
                        code,
                        message: message.unwrap_or_default(),
                    });
                }
            }
        }
    }
}

/// Exponential from `retry_base`, capped at `retry_max`, with jitter.
pub(crate) fn backoff(settings: &ZoomSettings, attempt: u32) -> Duration {
    let exponential = settings
        .retry_base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let capped = exponential.min(settings.retry_max);
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Zoom's "next page token is invalid or expired" code.
const PAGE_TOKEN_EXPIRED: i64 = 300;

/// `Retry-After` in seconds, if Zoom sent one.
pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: f64 = value.to_str().ok()?.trim().parse().ok()?;
    (seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// Zoom's error body: `{"code": 3301, "message": "…"}`.
pub(crate) async fn zoom_message(response: Response) -> (Option<i64>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct ZoomErrorBody {
        code: Option<i64>,
        message: Option<String>,
        reason: Option<String>,
    }
    match response.json::<ZoomErrorBody>().await {
        Ok(body) => (body.code, body.message.or(body.reason)),
        Err(_) => (None, None),
    }
}

/// Splits `[from, to]` into consecutive windows of at most one calendar month.
pub fn month_windows(from: NaiveDate, to: NaiveDate) -> Vec<(NaiveDate, NaiveDate)> {
    let mut windows = Vec::new();
    let mut start = from;
    while start <= to {
        let end = start
            .checked_add_months(Months::new(1))
            .and_then(|next| next.pred_opt())
            .unwrap_or(to)
            .min(to);
        windows.push((start, end));
        match end.succ_opt() {
            Some(next) => start = next,
            None => break,
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_plain_uuids_once_and_slashy_uuids_twice() {
        assert_eq!(meeting_path_segment("1234567890"), "1234567890");
        assert_eq!(
            meeting_path_segment("4444AAAiAAAAAiAiAiiAii=="),
            "4444AAAiAAAAAiAiAiiAii%3D%3D"
        );
        assert_eq!(meeting_path_segment("ab+c/d=="), "ab%2Bc%2Fd%3D%3D");
        assert_eq!(
            meeting_path_segment("/ajXp112QmuoKj4854875=="),
            "%252FajXp112QmuoKj4854875%253D%253D"
        );
        assert_eq!(meeting_path_segment("ab//cd"), "ab%252F%252Fcd");
    }

    #[test]
    fn splits_ranges_into_month_windows() {
        let date = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date");
        assert_eq!(
            month_windows(date("2026-01-15"), date("2026-03-20")),
            vec![
                (date("2026-01-15"), date("2026-02-14")),
                (date("2026-02-15"), date("2026-03-14")),
                (date("2026-03-15"), date("2026-03-20")),
            ]
        );
        assert_eq!(
            month_windows(date("2026-01-01"), date("2026-01-01")).len(),
            1
        );
        assert!(month_windows(date("2026-02-01"), date("2026-01-01")).is_empty());
    }

    #[test]
    fn scopes_classic_and_granular() {
        let scopes = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Capability::ReadRecordings.satisfied_by(&scopes(&["recording:read:admin"])));
        assert!(Capability::ReadRecordings.satisfied_by(&scopes(&[
            "cloud_recording:read:list_user_recordings:admin"
        ])));
        assert!(!Capability::DeleteRecordings.satisfied_by(&scopes(&["recording:read:admin"])));
        assert!(
            !Capability::ReadWebinarParticipants
                .satisfied_by(&scopes(&["webinar:read:list_panelists:admin"])),
            "granular: every scope it takes"
        );
        assert!(Capability::ReadWebinarParticipants.satisfied_by(&scopes(&[
            "webinar:read:list_panelists:admin",
            "webinar:read:list_past_participants:admin"
        ])));
        assert!(
            !Capability::ReadMeetingParticipants
                .satisfied_by(&scopes(&["meeting:read:summary:admin"]))
        );
    }

    #[test]
    fn scopes_no_wanted_capability_uses_are_unneeded() {
        let granted: Vec<String> = [
            "recording:read:admin",
            "recording:write:admin",
            "meeting:read:summary:admin",
            "user:read:admin",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            unneeded_scopes(
                &granted,
                &[Capability::ReadRecordings, Capability::ReadUsers]
            ),
            vec!["recording:write:admin", "meeting:read:summary:admin"]
        );
        assert!(unneeded_scopes(&granted, &Capability::ALL).is_empty());
    }
}
