//! Server-to-Server OAuth access tokens: one cached per account, renewed ahead of expiry, with a
//! single renewal in flight however many tasks ask at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::error::ZoomError;
use crate::model::Sensitive;
use crate::settings::{Credentials, ZoomSettings};

/// A bearer token and what it allows.
pub struct AccessToken {
    pub value: Sensitive,
    pub scopes: Vec<String>,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
    #[serde(default)]
    scope: String,
}

fn default_expiry() -> u64 {
    3600
}

pub struct TokenCache {
    http: reqwest::Client,
    oauth_url: String,
    account_id: String,
    client_id: String,
    client_secret: SecretString,
    refresh_margin: Duration,
    request_timeout: Duration,
    // Held across a renewal: concurrent callers wait for the one request instead of each sending one.
    current: Mutex<Option<Arc<AccessToken>>>,
    renewals: AtomicU64,
    // What the last requests gave, for the account's status (never the token itself).
    outcome: std::sync::Mutex<TokenOutcome>,
}

/// The last token requests' outcome, as operators see it: when a token was last obtained, with
/// which scopes, and the last refusal with Zoom's reason. Never a token or a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenOutcome {
    pub last_token_at: Option<chrono::DateTime<chrono::Utc>>,
    pub scopes: Vec<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Token requests that failed since the cache was built.
    pub failures: u64,
}

impl TokenCache {
    pub fn new(http: reqwest::Client, settings: &ZoomSettings, credentials: Credentials) -> Self {
        Self {
            http,
            oauth_url: settings.oauth_url.clone(),
            account_id: credentials.account_id,
            client_id: credentials.client_id,
            client_secret: credentials.client_secret,
            refresh_margin: settings.token_refresh_margin,
            request_timeout: settings.request_timeout,
            current: Mutex::new(None),
            renewals: AtomicU64::new(0),
            outcome: std::sync::Mutex::new(TokenOutcome::default()),
        }
    }

    /// A token valid for at least the refresh margin.
    pub async fn get(&self) -> Result<Arc<AccessToken>, ZoomError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok(token.clone());
        }
        let requested = self.request().await;
        self.record(&requested);
        let token = Arc::new(requested?);
        *current = Some(token.clone());
        Ok(token)
    }

    fn record(&self, requested: &Result<AccessToken, ZoomError>) {
        let mut outcome = match self.outcome.lock() {
            Ok(outcome) => outcome,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = chrono::Utc::now();
        match requested {
            Ok(token) => {
                outcome.last_token_at = Some(now);
                outcome.scopes = token.scopes.clone();
            }
            Err(error) => {
                outcome.last_error = Some(error.to_string());
                outcome.last_error_at = Some(now);
                outcome.failures += 1;
            }
        }
    }

    /// What the token requests so far gave (see [`TokenOutcome`]).
    pub fn outcome(&self) -> TokenOutcome {
        match self.outcome.lock() {
            Ok(outcome) => outcome.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Drops `stale` after Zoom refused it, unless another task already replaced it.
    pub async fn invalidate(&self, stale: &AccessToken) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|token| token.value == stale.value)
        {
            *current = None;
        }
    }

    /// How many tokens this cache has requested (a figure for tests and metrics).
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    #[tracing::instrument(name = "oauth_token", skip_all, fields(account_id = %self.account_id))]
    async fn request(&self) -> Result<AccessToken, ZoomError> {
        self.renewals.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .post(&self.oauth_url)
            .query(&[
                ("grant_type", "account_credentials"),
                ("account_id", self.account_id.as_str()),
            ])
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(ZoomError::transport)?;
        let status = response.status();
        if !status.is_success() {
            let reason = super::zoom_message(response)
                .await
                .1
                .unwrap_or_else(|| "no reason given".into());
            return Err(if status.is_server_error() {
                ZoomError::Server {
                    status: status.as_u16(),
                    attempts: 1,
                }
            } else {
                ZoomError::Credentials {
                    status: status.as_u16(),
                    reason,
                }
            });
        }
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|error| ZoomError::Decode(error.without_url().to_string()))?;
        let lifetime = Duration::from_secs(body.expires_in);
        // A token shorter-lived than the margin would never count as fresh.
        let margin = self.refresh_margin.min(lifetime / 2);
        tracing::debug!(expires_in = body.expires_in, "access token renewed");
        Ok(AccessToken {
            value: Sensitive::new(body.access_token),
            scopes: body.scope.split_whitespace().map(str::to_owned).collect(),
            renew_at: Instant::now() + lifetime - margin,
        })
    }
}
