//! What the simulated Zoom knows: accounts, issued tokens, meetings and their files, faults, and
//! a log of every request it was sent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zoom_api::model::MeetingRecordings;

/// An account the simulated Zoom knows: its app's credentials and secret token.
#[derive(Debug, Clone)]
pub struct SimAccount {
    pub name: String,
    pub account_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub secret_token: String,
}

/// Faults of one file, set when the meeting is created or later through `/_sim/files/{id}/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileFaults {
    /// Cut the connection after this many bytes …
    pub cut_after: Option<u64>,
    /// … in this many responses (then serve normally).
    pub cut_times: u32,
    /// Serve at most this many bytes per second.
    pub bytes_per_second: Option<u64>,
    /// Answer the download with 500 this many times.
    pub server_errors: u32,
    /// Answer the download with 429 (`Retry-After: 1`) this many times.
    pub rate_limited: u32,
    /// The file is gone: 404.
    pub not_found: bool,
    /// The file is gone, answered as Zoom does it at times: 200 with an HTML page.
    pub deleted_html: bool,
    /// The payload's `file_size` differs from the bytes served by this much.
    pub size_off_by: i64,
    /// The API lists the file as `processing` for this many more reads.
    pub processing_reads: u32,
    /// The download URL refuses account access tokens: only an event `download_token` or a
    /// `download_access_token` opens it.
    pub refuse_access_tokens: bool,
}

/// Faults of the API as a whole; counters count down as they are served.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiFaults {
    /// Answer this many API calls with 429 …
    pub rate_limited: u32,
    /// … carrying this `Retry-After` (seconds); none when absent.
    pub retry_after_secs: Option<u64>,
    /// Answer this many API calls with 500.
    pub server_errors: u32,
    /// Revoke every access token issued so far (the next API call with one gets 401).
    pub revoke_tokens: bool,
    /// Treat this many `next_page_token`s as expired.
    pub expired_page_tokens: u32,
    /// Answer this many token requests with 500.
    pub oauth_errors: u32,
    /// Scopes granted to new tokens (space-separated); all recording and user scopes when absent.
    pub token_scopes: Option<String>,
    /// `GET /accounts/{id}/recordings` answers "No permission." (as for a master account
    /// without `account:read:admin`): recordings must be listed user by user.
    pub refuse_account_listing: bool,
}

/// A deletion the simulator was asked for (see `GET /_sim/deletions`).
#[derive(Debug, Clone, Serialize)]
pub struct Deletion {
    pub meeting_uuid: String,
    pub file_id: Option<String>,
    pub action: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileState {
    pub meeting_uuid: String,
    pub account_id: String,
    /// Bytes actually served.
    pub size: u64,
    pub seed: u64,
    pub faults: FileFaults,
    pub deleted: bool,
    /// Bytes given through `PUT /_sim/files/{id}/content` (a real MP4, say), served instead of
    /// generated ones.
    #[serde(skip)]
    pub content: Option<bytes::Bytes>,
}

pub struct MeetingState {
    pub account_id: String,
    pub recording: MeetingRecordings,
    pub deleted: Option<String>,
    /// Files Zoom has not finished yet (a transcript comes later): not listed until released.
    pub hidden: std::collections::HashSet<String>,
    /// The `download_token` lifetime of the events this meeting produces.
    pub token_ttl_secs: i64,
}

pub struct PageCursor {
    pub items: Vec<serde_json::Value>,
    pub issued: Instant,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The `Range` header of a file request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    pub status: u16,
}

#[derive(Default)]
pub struct Mutable {
    /// access token → (account id, expires)
    pub tokens: HashMap<String, (String, Instant)>,
    /// download token (event or access) → (meeting uuid, expires)
    pub download_tokens: HashMap<String, (String, Instant)>,
    pub meetings: Vec<MeetingState>,
    pub files: HashMap<String, FileState>,
    pub pages: HashMap<String, PageCursor>,
    pub api_faults: ApiFaults,
    pub requests: Vec<RecordedRequest>,
    pub deletions: Vec<Deletion>,
    pub token_requests: u64,
    pub user_oauth: crate::oauth::UserOAuth,
    pub websockets: crate::websocket::Sockets,
}

/// The user the simulator lists as deactivated: a meeting hosted by it is found only by
/// listing inactive users too.
pub const INACTIVE_HOST: &str = "former-host@example.com";

pub struct SimState {
    pub accounts: Vec<SimAccount>,
    pub public_url: String,
    pub token_ttl: Duration,
    pub page_token_ttl: Duration,
    pub download_token_ttl: Duration,
    pub page_size_limit: usize,
    /// Keys the signed file-server URLs.
    pub url_secret: String,
    pub inner: Mutex<Mutable>,
}

impl SimState {
    /// Runs `f` with the mutable state. A poisoned lock (a panicked handler) still serves.
    pub fn with<R>(&self, f: impl FnOnce(&mut Mutable) -> R) -> R {
        let mut guard = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub fn account_by_id(&self, account_id: &str) -> Option<&SimAccount> {
        self.accounts.iter().find(|a| a.account_id == account_id)
    }

    pub fn account_by_name_or_id(&self, key: &str) -> Option<&SimAccount> {
        self.accounts
            .iter()
            .find(|a| a.name == key || a.account_id == key)
    }
}
