//! Access tokens: one cached per account, renewed ahead of expiry, with a single renewal in
//! flight however many tasks ask at once. A Server-to-Server app asks with its account
//! credentials; a user-managed app with its refresh token, through the shared chain of
//! [`super::grant`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::error::ZoomError;
use super::grant::RefreshChain;
use crate::model::Sensitive;
use crate::settings::{Credentials, GrantType, ZoomSettings};

/// A bearer token and what it allows.
pub struct AccessToken {
    pub value: Sensitive,
    pub scopes: Vec<String>,
    pub(crate) renew_at: Instant,
}

#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
    #[serde(default)]
    scope: String,
    /// Only for the user-OAuth grants: the refresh token that replaces the one sent.
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
}

/// Why the token endpoint said no.
pub(crate) enum TokenRefusal {
    /// `invalid_grant`: the refresh token was used already, expired or was revoked.
    InvalidGrant(String),
    Other(ZoomError),
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
    grant: GrantType,
    refresh_margin: Duration,
    pub(crate) request_timeout: Duration,
    /// User-managed OAuth: the shared refresh-token chain. `None`: Server-to-Server.
    chain: Option<RefreshChain>,
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
    /// Fails when a refresh token comes without the store its chain lives in.
    pub fn new(
        http: reqwest::Client,
        settings: &ZoomSettings,
        credentials: Credentials,
    ) -> Result<Self, ZoomError> {
        let chain = match (credentials.refresh_token, credentials.grant_store) {
            (None, _) => None,
            (Some(refresh_token), Some(store)) => Some(RefreshChain::new(
                super::grant::UserGrant {
                    refresh_token,
                    store,
                },
                // Long enough for one refresh and the store writes after it.
                settings.request_timeout * 2 + Duration::from_secs(5),
            )),
            (Some(_), None) => {
                return Err(ZoomError::TokenStore(
                    "a user-managed OAuth app needs the shared grant store".into(),
                ));
            }
        };
        Ok(Self {
            http,
            oauth_url: settings.oauth_url.clone(),
            account_id: credentials.account_id,
            client_id: credentials.client_id,
            client_secret: credentials.client_secret,
            grant: GrantType::AccountCredentials,
            refresh_margin: settings.token_refresh_margin,
            request_timeout: settings.request_timeout,
            chain,
            current: Mutex::new(None),
            renewals: AtomicU64::new(0),
            outcome: std::sync::Mutex::new(TokenOutcome::default()),
        })
    }

    /// Another cache for the same app's credentials whose tokens are asked with `grant`: the
    /// WebSocket event subscription's, which Zoom may want under another grant than the API's.
    pub fn with_grant(&self, grant: GrantType) -> Self {
        Self {
            http: self.http.clone(),
            oauth_url: self.oauth_url.clone(),
            account_id: self.account_id.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            grant,
            refresh_margin: self.refresh_margin,
            request_timeout: self.request_timeout,
            // A user-managed app's chain has one cache per account; another grant is S2S only.
            chain: None,
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
            if let Some(chain) = &self.chain {
                chain.refused(stale);
            }
        }
    }

    /// How many tokens this cache has requested (a figure for tests and metrics).
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    #[tracing::instrument(name = "oauth_token", skip_all, fields(account_id = %self.account_id))]
    async fn request(&self) -> Result<AccessToken, ZoomError> {
        if let Some(chain) = &self.chain {
            return chain.token(self).await;
        }
        let account_id = self.account_id.clone();
        let mut params = vec![("grant_type", self.grant.as_str())];
        // `client_credentials` names no account: the app's credentials say which.
        if self.grant == GrantType::AccountCredentials {
            params.push(("account_id", account_id.as_str()));
        }
        let body = self
            .post_token(&params)
            .await
            .map_err(|refusal| match refusal {
                TokenRefusal::InvalidGrant(reason) => ZoomError::Credentials {
                    status: 400,
                    reason,
                },
                TokenRefusal::Other(error) => error,
            })?;
        Ok(self.access_token(&body))
    }

    /// One request to the token endpoint, authenticated as the app. Account credentials go in
    /// the query as Zoom documents them; a refresh token only ever in the body, never in a URL.
    pub(crate) async fn post_token(
        &self,
        params: &[(&str, &str)],
    ) -> Result<TokenResponse, TokenRefusal> {
        self.renewals.fetch_add(1, Ordering::Relaxed);
        let request = self
            .http
            .post(&self.oauth_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .timeout(self.request_timeout);
        let request = if self.chain.is_some() {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form)
        } else {
            request.query(params)
        };
        let response = request
            .send()
            .await
            .map_err(|error| TokenRefusal::Other(ZoomError::transport(error)))?;
        let status = response.status();
        if !status.is_success() {
            if status.is_server_error() {
                return Err(TokenRefusal::Other(ZoomError::Server {
                    status: status.as_u16(),
                    attempts: 1,
                }));
            }
            #[derive(Deserialize)]
            struct Refusal {
                error: Option<String>,
                reason: Option<String>,
                message: Option<String>,
            }
            let refusal: Option<Refusal> = response.json().await.ok();
            let code = refusal.as_ref().and_then(|r| r.error.clone());
            let reason = refusal
                .and_then(|r| r.reason.or(r.message))
                .unwrap_or_else(|| "no reason given".into());
            return Err(if code.as_deref() == Some("invalid_grant") {
                TokenRefusal::InvalidGrant(reason)
            } else {
                TokenRefusal::Other(ZoomError::Credentials {
                    status: status.as_u16(),
                    reason,
                })
            });
        }
        response.json().await.map_err(|error| {
            TokenRefusal::Other(ZoomError::Decode(error.without_url().to_string()))
        })
    }

    /// The access token of a token response, to be renewed the margin ahead of its expiry.
    pub(crate) fn access_token(&self, body: &TokenResponse) -> AccessToken {
        let lifetime = Duration::from_secs(body.expires_in);
        // A token shorter-lived than the margin would never count as fresh.
        let margin = self.refresh_margin.min(lifetime / 2);
        tracing::debug!(expires_in = body.expires_in, "access token renewed");
        AccessToken {
            value: Sensitive::new(body.access_token.clone()),
            scopes: body.scope.split_whitespace().map(str::to_owned).collect(),
            renew_at: Instant::now() + lifetime - margin,
        }
    }
}
