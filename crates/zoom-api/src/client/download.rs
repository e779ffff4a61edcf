//! Streaming download of one recording file, in constant memory whatever its size.
//!
//! - **Auth chain**, each step taken only on a 401/403: the event's `download_token` while its
//!   JWT `exp` is ahead, then the account's access token, then a fresh URL and
//!   `download_access_token` from the recordings API.
//! - **Allowlist**: the URL and every redirect must be http(s) on `zoom.download_hosts`; anything
//!   else is refused as an SSRF attempt.
//! - **Resume**: a cut connection, an idle stall or an early end continues with `Range` from the
//!   last byte received, up to `zoom.download_resumes` times.
//! - **Verification**: completeness is judged by what the server promised (`Content-Length`, or
//!   the `Content-Range` total); a 200 with an HTML body, or a size far from the payload's
//!   `file_size`, is Zoom's answer for a deleted or unauthorised file, never the file.
//! - **Ranges**: a download may cover one range of the file (`start_at`..`end_at`), so a large
//!   file can be fetched over several connections at once; a range starting at the file's end
//!   (the server answers 416 with the file's length) is complete and empty.
//! - **Digest**: SHA-256 of a whole-file download is computed on a blocking thread of its own,
//!   fed the very chunks handed to the caller (`Bytes`: a reference count, no copy) through a
//!   bounded queue, so hashing overlaps the network and the disk instead of sitting in series
//!   with them. A range is not hashed: its caller hashes the joined file.
//!
//! Neither URLs nor tokens ever reach a log line or an error.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, RANGE};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::error::{DownloadError, ZoomError};
use super::{ZoomClient, backoff, retry_after};
use crate::model::Sensitive;
use crate::settings::{ZoomSettings, secure_transport};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// An event `download_token` expiring sooner than this is not worth trying.
const TOKEN_EXPIRY_MARGIN_SECS: i64 = 60;
/// Chunks waiting for the hashing thread. A chunk is at most the HTTP client's read buffer
/// (a few hundred KiB), so this bounds what the digest holds back to about a MiB; when the
/// thread falls behind, the download waits for it rather than buffering more (hashing runs at
/// about twice the speed of the network here, so a deeper queue only held more memory).
const HASH_QUEUE: usize = 4;

/// Which file to fetch and what the event said about it.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub meeting_uuid: String,
    pub file_id: String,
    pub download_url: Sensitive,
    /// The event's `download_token`, if it carried one.
    pub download_token: Option<Sensitive>,
    /// The payload's `file_size`.
    pub expected_size: Option<u64>,
    /// Bytes already held elsewhere (earlier parts): the download asks for the rest.
    pub start_at: u64,
    /// Where to stop (exclusive): one range of the file, fetched beside others. `None`: to the
    /// file's end. A download that is not the whole file has no digest.
    pub end_at: Option<u64>,
}

/// What was received, measured on the fly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Where the download ended in the file (`start_at` included).
    pub bytes: u64,
    /// Lowercase hex, of the whole file; `None` for a download of a part of it.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    EventToken,
    AccessToken,
    FreshUrl,
}

/// A download in progress: pull chunks with [`Download::next_chunk`], or hand it a writer with
/// [`Download::copy_to`], or treat it as a [`Stream`] with [`Download::into_stream`].
pub struct Download<'c> {
    client: &'c ZoomClient,
    source: FileSource,
    url: Sensitive,
    credential: Credential,
    fresh_token: Option<Sensitive>,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    received: u64,
    promised: Option<u64>,
    /// Bytes to discard after a server answered a resumption with the whole file.
    skip: u64,
    resumes: u32,
    digest: Option<Digester>,
    done: bool,
}

/// SHA-256 of every byte received, on a thread of its own (see the module doc).
struct Digester {
    chunks: tokio::sync::mpsc::Sender<Bytes>,
    hasher: tokio::task::JoinHandle<[u8; 32]>,
}

impl Digester {
    fn start() -> Self {
        let (chunks, mut queue) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
        // Ends when the sender is dropped: at `finish`, or with an abandoned download.
        let hasher = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(chunk) = queue.blocking_recv() {
                hasher.update(&chunk);
            }
            hasher.finalize().into()
        });
        Self { chunks, hasher }
    }

    async fn update(&self, chunk: Bytes) -> Result<(), DownloadError> {
        self.chunks.send(chunk).await.map_err(|_| hashing_stopped())
    }

    async fn finish(self) -> Result<String, DownloadError> {
        drop(self.chunks);
        let digest = self.hasher.await.map_err(|_| hashing_stopped())?;
        Ok(hex::encode(digest))
    }
}

fn hashing_stopped() -> DownloadError {
    DownloadError::Sink(std::io::Error::other("the hashing thread stopped"))
}

pub(super) fn file_client(settings: &ZoomSettings) -> Result<reqwest::Client, ZoomError> {
    let hosts = settings.download_hosts.clone();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if host_allowed(attempt.url(), &hosts) {
            attempt.follow()
        } else {
            attempt.error("redirect to a host outside zoom.download_hosts")
        }
    });
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .redirect(policy)
        .user_agent(concat!("zoom-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ZoomError::transport)
}

/// https (plain http to a loopback host only: the simulator) on an allowlisted host or one of
/// its subdomains. A download request carries a bearer token: never in clear over a network.
pub fn host_allowed(url: &url::Url, hosts: &[String]) -> bool {
    if !secure_transport(url) {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    hosts.iter().any(|allowed| {
        let allowed = allowed.trim().trim_start_matches("*.").to_ascii_lowercase();
        host == allowed
            || host
                .strip_suffix(allowed.as_str())
                .is_some_and(|prefix| prefix.ends_with('.'))
    })
}

/// The `exp` claim of a JWT, unverified: only used to skip a token that is surely dead.
pub fn jwt_expiry(token: &str) -> Option<i64> {
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("exp")?.as_i64()
}

fn event_token_usable(token: Option<&Sensitive>) -> bool {
    let Some(token) = token else { return false };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default();
    // Unreadable expiry: try it, a 401 moves down the chain.
    jwt_expiry(token.expose()).is_none_or(|exp| exp > now + TOKEN_EXPIRY_MARGIN_SECS)
}

fn within_tolerance(settings: &ZoomSettings, expected: u64, served: u64) -> bool {
    let allowed = ((expected as f64 * settings.file_size_tolerance) as u64)
        .max(settings.file_size_tolerance_bytes);
    expected.abs_diff(served) <= allowed
}

/// `bytes */TOTAL` (a 416's answer to a range past the end) → TOTAL.
fn unsatisfied_range_total(response: &reqwest::Response) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    value.trim().strip_prefix("bytes */")?.parse().ok()
}

/// `bytes START-END/TOTAL` → (START, TOTAL if known).
fn content_range(response: &reqwest::Response) -> Option<(u64, Option<u64>)> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    let (span, total) = range.split_once('/')?;
    let (start, _) = span.split_once('-')?;
    Some((start.parse().ok()?, total.parse().ok()))
}

impl<'c> Download<'c> {
    pub(super) async fn start(
        client: &'c ZoomClient,
        source: FileSource,
    ) -> Result<Self, DownloadError> {
        let credential = if event_token_usable(source.download_token.as_ref()) {
            Credential::EventToken
        } else {
            Credential::AccessToken
        };
        let start_at = source.start_at;
        let whole_file = start_at == 0 && source.end_at.is_none();
        let mut download = Self {
            client,
            url: source.download_url.clone(),
            source,
            credential,
            fresh_token: None,
            body: None,
            received: start_at,
            promised: None,
            skip: 0,
            resumes: 0,
            digest: whole_file.then(Digester::start),
            done: false,
        };
        download.open().await?;
        Ok(download)
    }

    /// The size the server promised, once known.
    pub fn promised(&self) -> Option<u64> {
        self.promised
    }

    /// Bytes of the file received so far, `start_at` included.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Where this download ends, once known: its range's end, or the file's.
    fn target(&self) -> Option<u64> {
        match (self.source.end_at, self.promised) {
            (Some(end), Some(promised)) => Some(end.min(promised)),
            (end, promised) => end.or(promised),
        }
    }

    /// Everything this download covers was received.
    pub fn is_complete(&self) -> bool {
        self.done || self.target().is_some_and(|target| self.received >= target)
    }

    /// The next chunk; `None` once the whole promised file was received.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, DownloadError> {
        let idle_timeout = self.client.settings.download_idle_timeout;
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else {
                self.resume().await?;
                continue;
            };
            match tokio::time::timeout(idle_timeout, body.next()).await {
                Ok(Some(Ok(mut chunk))) => {
                    if self.skip > 0 {
                        let discard = (self.skip as usize).min(chunk.len());
                        chunk = chunk.slice(discard..);
                        self.skip -= discard as u64;
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    // A server that ignored the range's end: keep the range, drop the rest.
                    if let Some(end) = self.source.end_at
                        && self.received + chunk.len() as u64 >= end
                    {
                        chunk.truncate(end.saturating_sub(self.received) as usize);
                        self.body = None;
                        self.done = true;
                    }
                    self.received += chunk.len() as u64;
                    if let Some(promised) = self.promised
                        && self.received > promised
                    {
                        return Err(DownloadError::Overlong { promised });
                    }
                    if let Some(digest) = &self.digest {
                        digest.update(chunk.clone()).await?;
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    return Ok(Some(chunk));
                }
                Ok(None) => {
                    self.body = None;
                    let short =
                        self.skip > 0 || self.target().is_some_and(|target| self.received < target);
                    if short {
                        debug!(received = self.received, "file server ended early");
                        continue;
                    }
                    if self.promised.is_none()
                        && let Some(expected) = self.source.expected_size
                        && !within_tolerance(&self.client.settings, expected, self.received)
                    {
                        return Err(DownloadError::SizeMismatch {
                            expected,
                            served: self.received,
                        });
                    }
                    self.done = true;
                }
                Ok(Some(Err(error))) => {
                    debug!(received = self.received, error = %error.without_url(), "download cut");
                    self.body = None;
                }
                Err(_) => {
                    debug!(received = self.received, "download stalled");
                    self.body = None;
                }
            }
        }
    }

    /// Writes the whole file into `writer` (not flushed or shut down: the caller owns it).
    pub async fn copy_to<W: AsyncWrite + Unpin>(
        mut self,
        writer: &mut W,
    ) -> Result<Downloaded, DownloadError> {
        while let Some(chunk) = self.next_chunk().await? {
            writer.write_all(&chunk).await?;
        }
        self.finish().await
    }

    /// Byte count and SHA-256 of what was received (waits for the hashing thread to catch up).
    pub async fn finish(self) -> Result<Downloaded, DownloadError> {
        let sha256 = match self.digest {
            Some(digest) => Some(digest.finish().await?),
            None => None,
        };
        Ok(Downloaded {
            bytes: self.received,
            sha256,
        })
    }

    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, DownloadError>> + 'c {
        futures_util::stream::try_unfold(self, |mut download| async move {
            Ok(download.next_chunk().await?.map(|chunk| (chunk, download)))
        })
    }

    async fn resume(&mut self) -> Result<(), DownloadError> {
        if self.resumes >= self.client.settings.download_resumes {
            return Err(DownloadError::Incomplete {
                received: self.received,
                promised: self.promised,
            });
        }
        self.resumes += 1;
        tokio::time::sleep(backoff(&self.client.settings, self.resumes)).await;
        debug!(
            resumes = self.resumes,
            offset = self.received,
            "resuming download"
        );
        self.open().await
    }

    /// Sends the request for the remaining bytes, walking the auth chain on 401/403.
    async fn open(&mut self) -> Result<(), DownloadError> {
        let settings = &self.client.settings;
        let mut attempt = 0;
        loop {
            let url = url::Url::parse(self.url.expose())
                .map_err(|_| DownloadError::NotAllowed("the download URL does not parse".into()))?;
            if !host_allowed(&url, &settings.download_hosts) {
                return Err(DownloadError::NotAllowed(
                    "the download URL's host is outside zoom.download_hosts".into(),
                ));
            }
            let bearer = match self.credential {
                Credential::EventToken => self.source.download_token.clone(),
                Credential::AccessToken => Some(self.client.tokens.get().await?.value.clone()),
                Credential::FreshUrl => self.fresh_token.clone(),
            };
            let mut request = self.client.files.get(url);
            if let Some(bearer) = &bearer {
                request = request.bearer_auth(bearer.expose());
            }
            match self.source.end_at {
                Some(end) => {
                    let last = end.saturating_sub(1);
                    request = request.header(RANGE, format!("bytes={}-{last}", self.received));
                }
                None if self.received > 0 => {
                    request = request.header(RANGE, format!("bytes={}-", self.received));
                }
                None => {}
            }
            attempt += 1;
            // A server that accepts the connection but never answers must not hold the task.
            let sent = tokio::time::timeout(settings.download_idle_timeout, request.send()).await;
            let response = match sent {
                Err(_) if attempt < settings.max_attempts => {
                    debug!(attempt, "file server did not answer, retrying");
                    continue;
                }
                Err(_) => {
                    return Err(DownloadError::Transport(
                        "the file server did not answer in time".into(),
                    ));
                }
                Ok(sent) => sent,
            };
            let response = match response {
                Ok(response) => response,
                Err(error) if !error.is_redirect() && attempt < settings.max_attempts => {
                    debug!(attempt, error = %error.without_url(), "file server unreachable");
                    tokio::time::sleep(backoff(settings, attempt)).await;
                    continue;
                }
                Err(error) => return Err(DownloadError::transport(error)),
            };
            let status = response.status().as_u16();
            match status {
                200 | 206 => return self.accept(response),
                401 | 403 => {
                    self.next_credential().await?;
                    attempt = 0;
                }
                404 => return Err(DownloadError::NotFound),
                // Asked from the file's end or past it (a range split from a `file_size` larger
                // than the file): nothing of it exists, which completes the range. The caller
                // checks its parts against the size given.
                416 => match unsatisfied_range_total(&response) {
                    Some(total) if total <= self.received && self.received > 0 => {
                        self.promised = Some(total);
                        self.done = true;
                        return Ok(());
                    }
                    _ => return Err(DownloadError::BadRange),
                },
                429 | 500..=599 if attempt < settings.max_attempts => {
                    let wait = retry_after(&response).unwrap_or_else(|| backoff(settings, attempt));
                    debug!(attempt, status, "file server busy, retrying");
                    tokio::time::sleep(wait).await;
                }
                status => return Err(DownloadError::Http { status }),
            }
        }
    }

    async fn next_credential(&mut self) -> Result<(), DownloadError> {
        self.credential = match self.credential {
            Credential::EventToken => {
                debug!("event download_token refused, using the access token");
                Credential::AccessToken
            }
            Credential::AccessToken => {
                debug!("access token refused for the file, fetching a fresh URL");
                let meeting = self
                    .client
                    .meeting_recordings(&self.source.meeting_uuid, true)
                    .await
                    .map_err(|error| match error {
                        ZoomError::NotFound { .. } => DownloadError::NotFound,
                        error => DownloadError::Api(error),
                    })?;
                let file = meeting
                    .file(&self.source.file_id)
                    .ok_or(DownloadError::NotFound)?;
                self.url = file.download_url.clone().ok_or(DownloadError::Processing)?;
                self.fresh_token = meeting.download_access_token.clone();
                Credential::FreshUrl
            }
            Credential::FreshUrl => return Err(DownloadError::Unauthorized),
        };
        Ok(())
    }

    fn accept(&mut self, response: reqwest::Response) -> Result<(), DownloadError> {
        let status = response.status().as_u16();
        let is_html = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/html")
            });
        if is_html {
            return Err(DownloadError::HtmlInsteadOfFile { status });
        }
        if status == 206 {
            let (start, total) = content_range(&response).ok_or(DownloadError::BadRange)?;
            if start != self.received {
                return Err(DownloadError::BadRange);
            }
            // The same check as a whole file's length: a range of a file far from its listed
            // size is not a part of that file.
            if let (Some(expected), Some(total)) = (self.source.expected_size, total)
                && !within_tolerance(&self.client.settings, expected, total)
            {
                return Err(DownloadError::SizeMismatch {
                    expected,
                    served: total,
                });
            }
            self.promised = total.or(self.promised);
        } else {
            // A 200 to a resumption: the server sent the whole file again.
            self.skip = self.received;
            let length = response.content_length();
            if let (Some(expected), Some(served)) = (self.source.expected_size, length)
                && !within_tolerance(&self.client.settings, expected, served)
            {
                return Err(DownloadError::SizeMismatch { expected, served });
            }
            self.promised = length.or(self.promised);
        }
        self.body = Some(response.bytes_stream().boxed());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_hosts_and_subdomains_over_http_only() {
        let hosts = vec!["zoom.us".to_owned(), "127.0.0.1".to_owned()];
        let allowed = |url: &str| host_allowed(&url::Url::parse(url).expect("url"), &hosts);
        assert!(allowed("https://zoom.us/rec/download/x"));
        assert!(allowed("https://ssrweb.zoom.us/file"));
        assert!(allowed("http://127.0.0.1:9000/file"));
        assert!(!allowed("https://evilzoom.us/file"));
        assert!(!allowed("https://zoom.us.evil.com/file"));
        assert!(!allowed("file:///etc/passwd"));
        assert!(
            !allowed("http://zoom.us/rec/download/x"),
            "a token in clear"
        );
        assert!(!allowed("https://169.254.169.254/latest/meta-data"));
    }

    #[test]
    fn reads_jwt_expiry() {
        // {"exp":1700000000}
        let token = "eyJhbGciOiJIUzUxMiJ9.eyJleHAiOjE3MDAwMDAwMDB9.signature";
        assert_eq!(jwt_expiry(token), Some(1_700_000_000));
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert!(!event_token_usable(Some(&Sensitive::new(token))));
        assert!(event_token_usable(Some(&Sensitive::new("opaque"))));
    }
}
