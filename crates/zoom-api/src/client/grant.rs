//! User-managed OAuth: an account's access comes from a refresh token that Zoom replaces on every
//! use (the one sent is dead once Zoom answers). The chain of refresh tokens lives in a
//! [`GrantStore`] that every process of the deployment shares, never in one process's memory:
//!
//! - Each refresh is a new *generation* of the grant, written create-only: a generation is never
//!   overwritten, so the token it holds is never forgotten before its successor is stored.
//! - One process at a time refreshes, under the store's lock; the others wait and then read the
//!   generation it stored (its access token included: Zoom lets an app hold only so many at once).
//! - The refresh token in the configuration seeds the chain the first time. A configured token the
//!   chain has never seen (the app was authorized again) starts a new generation from it; one it
//!   has seen (a replica with the old configuration) is ignored.
//! - A rotated grant the store would not take is kept in memory, used, and stored at the next
//!   renewal; the lock is then left to expire so that no other process refreshes with the dead
//!   token in the meantime.
//!
//! What no client can survive: the process dying after Zoom rotated the token and before the
//! store took the new one. Zoom offers no way to repeat a refresh. The window is one store write,
//! and the way back is to authorize the app again (docs/zoom-apps.md).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use super::auth::{AccessToken, TokenCache, TokenRefusal};
use super::error::ZoomError;
use crate::model::Sensitive;

/// Seeds kept in a grant: enough to recognise every configuration still deployed.
const SEEDS_KEPT: usize = 16;

/// One generation of an account's user-OAuth grant.
#[derive(Debug, Clone)]
pub struct StoredGrant {
    /// 1 for the first seed, one more for every refresh or new seed.
    pub generation: u64,
    /// The refresh token to send next.
    pub refresh_token: SecretString,
    /// The access token that came with it, shared by every process of the account.
    pub access_token: Option<SecretString>,
    /// When that access token is to be renewed (ahead of its expiry).
    pub renew_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    /// SHA-256 digests of the configured refresh tokens the chain started from.
    pub seeds: Vec<String>,
}

/// Why the grant store failed (I/O, an unreadable record). Never holds a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("grant store: {0}")]
pub struct GrantStoreError(pub String);

/// The exclusive right to refresh an account's grant, for a while.
pub struct GrantLock {
    release: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>,
}

impl GrantLock {
    pub fn new(release: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static) -> Self {
        Self {
            release: Box::new(release),
        }
    }

    /// Gives the lock back now (otherwise it expires on its own).
    pub async fn release(self) {
        (self.release)().await;
    }
}

/// Where an account's grant generations live: durable, and shared by every process.
pub trait GrantStore: Send + Sync {
    /// The highest generation stored, if any.
    fn latest(&self) -> BoxFuture<'_, Result<Option<StoredGrant>, GrantStoreError>>;
    /// Stores `grant` at its generation if that generation is not stored yet; `false` if it was.
    fn create<'a>(&'a self, grant: &'a StoredGrant)
    -> BoxFuture<'a, Result<bool, GrantStoreError>>;
    /// The refresh lock for `ttl`, or `None` while another process holds it.
    fn lock(&self, ttl: Duration) -> BoxFuture<'_, Result<Option<GrantLock>, GrantStoreError>>;
}

/// What a user-managed OAuth app needs: the configured refresh token and the shared store.
#[derive(Clone)]
pub struct UserGrant {
    pub refresh_token: SecretString,
    pub store: Arc<dyn GrantStore>,
}

impl std::fmt::Debug for UserGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserGrant { refresh_token: [REDACTED], .. }")
    }
}

impl From<GrantStoreError> for ZoomError {
    fn from(error: GrantStoreError) -> Self {
        ZoomError::TokenStore(error.0)
    }
}

pub(crate) struct RefreshChain {
    seed: SecretString,
    seed_digest: String,
    store: Arc<dyn GrantStore>,
    lock_ttl: Duration,
    /// A rotated grant Zoom gave that the store has not taken yet, with the refresh lock: held
    /// until it is stored (or expires), so that no other process refreshes with the dead token.
    unsaved: Mutex<Option<(StoredGrant, GrantLock)>>,
    /// The access token Zoom last refused: a stored copy of it is not handed out again.
    refused: Mutex<Option<String>>,
}

enum Refreshed {
    Stored(AccessToken),
    /// Zoom rotated the grant but the store did not take it: the lock is kept with it.
    Unsaved(AccessToken, StoredGrant),
    /// Another process stored a newer generation meanwhile: read it.
    Again,
}

impl RefreshChain {
    pub(crate) fn new(grant: UserGrant, lock_ttl: Duration) -> Self {
        Self {
            seed_digest: digest(grant.refresh_token.expose_secret()),
            seed: grant.refresh_token,
            store: grant.store,
            lock_ttl,
            unsaved: Mutex::new(None),
            refused: Mutex::new(None),
        }
    }

    pub(crate) fn refused(&self, stale: &AccessToken) {
        *lock_of(&self.refused) = Some(stale.value.expose().to_owned());
    }

    /// An access token: the shared one while it is fresh, else one refresh by one process.
    pub(crate) async fn token(&self, cache: &TokenCache) -> Result<AccessToken, ZoomError> {
        if let Some(kept) = self.store_unsaved().await {
            return kept;
        }
        let deadline = Instant::now() + self.lock_ttl + cache.request_timeout;
        let mut wait = Duration::from_millis(25);
        loop {
            let latest = self.current().await?;
            if let Some(token) = self.usable(&latest) {
                return Ok(token);
            }
            let Some(lock) = self.store.lock(self.lock_ttl).await? else {
                if Instant::now() >= deadline {
                    return Err(ZoomError::TokenStore(
                        "another process has held the refresh lock past its time".into(),
                    ));
                }
                // Another process is refreshing: its generation will be read next time round.
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
                continue;
            };
            match self.refresh(cache).await {
                Ok(Refreshed::Stored(token)) => {
                    lock.release().await;
                    return Ok(token);
                }
                Ok(Refreshed::Unsaved(token, grant)) => {
                    *lock_of(&self.unsaved) = Some((grant, lock));
                    return Ok(token);
                }
                Ok(Refreshed::Again) => lock.release().await,
                Err(error) => {
                    lock.release().await;
                    return Err(error);
                }
            }
        }
    }

    /// Under the lock: the latest generation again (another process may just have stored it),
    /// then one refresh, stored before its access token is handed out.
    async fn refresh(&self, cache: &TokenCache) -> Result<Refreshed, ZoomError> {
        let latest = self.current().await?;
        if let Some(token) = self.usable(&latest) {
            return Ok(Refreshed::Stored(token));
        }
        let body = match cache
            .post_token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", latest.refresh_token.expose_secret()),
            ])
            .await
        {
            Ok(body) => body,
            Err(TokenRefusal::InvalidGrant(reason)) => {
                // Refused: used already. By another process whose lock expired mid-refresh, if
                // a newer generation is there; otherwise the chain is broken.
                let again = self.store.latest().await?;
                if again.is_some_and(|again| again.generation > latest.generation) {
                    return Ok(Refreshed::Again);
                }
                error!(
                    generation = latest.generation,
                    "Zoom refused the stored refresh token: authorize the app again and configure the new refresh token"
                );
                return Err(ZoomError::Credentials {
                    status: 400,
                    reason: format!(
                        "the stored refresh token was refused ({reason}): it was used already or revoked; authorize the app again and set its new refresh token in user_oauth.refresh_token"
                    ),
                });
            }
            Err(TokenRefusal::Other(error)) => return Err(error),
        };
        let token = cache.access_token(&body);
        let next = StoredGrant {
            generation: latest.generation + 1,
            // Zoom always rotates; a server that does not keeps the token it has.
            refresh_token: body
                .refresh_token
                .clone()
                .map(SecretString::from)
                .unwrap_or_else(|| latest.refresh_token.clone()),
            access_token: Some(SecretString::from(body.access_token.clone())),
            renew_at: Some(Utc::now() + chrono_duration(token.renew_at - Instant::now())),
            scopes: token.scopes.clone(),
            seeds: latest.seeds.clone(),
        };
        match self.create_retrying(&next).await {
            Ok(true) => Ok(Refreshed::Stored(token)),
            Ok(false) => {
                // Only if our lock expired and another process refreshed first, which Zoom
                // would have refused to one of us: keep the generation that was stored.
                warn!(
                    generation = next.generation,
                    "another process stored this generation first"
                );
                Ok(Refreshed::Stored(token))
            }
            Err(store_error) => {
                warn!(generation = next.generation, error = %store_error, "the grant store did not take the rotated refresh token: kept in memory, stored at the next renewal");
                Ok(Refreshed::Unsaved(token, next))
            }
        }
    }

    /// A few attempts: the rotated token is the only valid one, so it is worth waiting for.
    async fn create_retrying(&self, grant: &StoredGrant) -> Result<bool, GrantStoreError> {
        let mut wait = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.store.create(grant).await {
                Err(_) if attempt < 4 => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                other => return other,
            }
        }
    }

    /// A grant kept in memory because the store failed: stored now if the store is back (its
    /// access token then comes from the store like any other), else used as long as it is
    /// fresh. `None`: nothing kept, or stored now.
    async fn store_unsaved(&self) -> Option<Result<AccessToken, ZoomError>> {
        let (pending, held) = lock_of(&self.unsaved).take()?;
        match self.store.create(&pending).await {
            Ok(_) => {
                info!(
                    generation = pending.generation,
                    "rotated refresh token stored after the grant store came back"
                );
                held.release().await;
                None
            }
            Err(error) => {
                warn!(generation = pending.generation, %error, "the grant store still refuses the rotated refresh token");
                let token = self.usable(&pending).ok_or_else(|| {
                    ZoomError::TokenStore(format!(
                        "the grant store is down and its access token expired: {error}"
                    ))
                });
                *lock_of(&self.unsaved) = Some((pending, held));
                Some(token)
            }
        }
    }

    /// The latest generation; the configured token starts a new one the first time, and when
    /// it is one the chain has never seen.
    async fn current(&self) -> Result<StoredGrant, ZoomError> {
        for _ in 0..3 {
            let latest = match self.store.latest().await? {
                Some(grant) if grant.seeds.contains(&self.seed_digest) => return Ok(grant),
                other => other,
            };
            let mut seeds = latest
                .as_ref()
                .map(|grant| grant.seeds.clone())
                .unwrap_or_default();
            seeds.push(self.seed_digest.clone());
            let excess = seeds.len().saturating_sub(SEEDS_KEPT);
            seeds.drain(..excess);
            let seeded = StoredGrant {
                generation: latest.as_ref().map_or(1, |grant| grant.generation + 1),
                refresh_token: self.seed.clone(),
                access_token: None,
                renew_at: None,
                scopes: Vec::new(),
                seeds,
            };
            if self.store.create(&seeded).await? {
                info!(
                    generation = seeded.generation,
                    "refresh token taken from the configuration"
                );
                return Ok(seeded);
            }
            // Another process seeded or refreshed at the same moment: read what it stored.
        }
        Err(ZoomError::TokenStore(
            "the grant kept changing while it was seeded".into(),
        ))
    }

    fn usable(&self, grant: &StoredGrant) -> Option<AccessToken> {
        let access = grant.access_token.as_ref()?;
        let renew_at = grant.renew_at?;
        let left = (renew_at - Utc::now()).to_std().ok()?;
        if lock_of(&self.refused).as_deref() == Some(access.expose_secret()) {
            return None;
        }
        Some(AccessToken {
            value: Sensitive::new(access.expose_secret().to_owned()),
            scopes: grant.scopes.clone(),
            renew_at: Instant::now() + left,
        })
    }
}

fn chrono_duration(duration: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::zero())
}

/// The digest a configured refresh token is recognised by (the token itself is never stored
/// twice).
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn lock_of<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
