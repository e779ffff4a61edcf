//! A user-managed OAuth app's grant, kept in staging where every process of the deployment finds
//! it: one record per generation (`_accounts/{account}/oauth/{generation}.json`), created only if
//! absent, and a [`Lease`] so that one process at a time refreshes. The rules of the chain are
//! `zoom_api::client::grant`'s; this is only where it is kept.
//!
//! The records hold the current refresh and access tokens: staging must be as private as the
//! configuration file.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use relay_storage::StorageError;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zoom_api::Credentials;
use zoom_api::client::grant::{GrantLock, GrantStore, GrantStoreError, StoredGrant};

use crate::lease::Lease;
use crate::settings::AccountSettings;
use crate::staging::{RecordKey, Staging};

/// Older generations kept besides the latest (for an operator reading what happened).
const GENERATIONS_KEPT: u64 = 3;

/// The account's credentials, with the shared grant store for a user-managed app.
pub fn credentials(account: &AccountSettings, staging: Option<&Staging>) -> Credentials {
    let mut credentials = account.credentials();
    if credentials.refresh_token.is_some()
        && let Some(staging) = staging
    {
        credentials.grant_store = Some(Arc::new(StagingGrantStore::new(
            staging.clone(),
            &account.name,
        )));
    }
    credentials
}

#[derive(Serialize, Deserialize)]
struct GrantRecord {
    generation: u64,
    refresh_token: String,
    access_token: Option<String>,
    renew_at: Option<DateTime<Utc>>,
    scopes: Vec<String>,
    seeds: Vec<String>,
    written_at: DateTime<Utc>,
    written_by: String,
}

/// An account's grant generations in staging.
pub struct StagingGrantStore {
    staging: Staging,
    account: String,
}

impl StagingGrantStore {
    pub fn new(staging: Staging, account: &str) -> Self {
        Self {
            staging,
            account: account.to_owned(),
        }
    }

    async fn latest_record(&self) -> Result<Option<StoredGrant>, StorageError> {
        let dir = self.staging.record(RecordKey::Grants {
            account: &self.account,
        })?;
        let newest = self
            .staging
            .location
            .list(&dir)
            .await?
            .into_iter()
            .filter_map(|path| generation_of(&path))
            .max();
        let Some(generation) = newest else {
            return Ok(None);
        };
        let path = self.staging.record(RecordKey::Grant {
            account: &self.account,
            generation,
        })?;
        let record: Option<GrantRecord> = self.staging.location.get_json(&path).await?;
        Ok(record.map(|record| StoredGrant {
            generation: record.generation,
            refresh_token: SecretString::from(record.refresh_token),
            access_token: record.access_token.map(SecretString::from),
            renew_at: record.renew_at,
            scopes: record.scopes,
            seeds: record.seeds,
        }))
    }

    async fn create_record(&self, grant: &StoredGrant) -> Result<bool, StorageError> {
        let path = self.staging.record(RecordKey::Grant {
            account: &self.account,
            generation: grant.generation,
        })?;
        let record = GrantRecord {
            generation: grant.generation,
            refresh_token: grant.refresh_token.expose_secret().to_owned(),
            access_token: grant
                .access_token
                .as_ref()
                .map(|token| token.expose_secret().to_owned()),
            renew_at: grant.renew_at,
            scopes: grant.scopes.clone(),
            seeds: grant.seeds.clone(),
            written_at: Utc::now(),
            written_by: relay_core::status::process_name(),
        };
        let created = self.staging.location.create_json(&path, &record).await?;
        if created {
            self.prune(grant.generation).await;
        }
        Ok(created)
    }

    /// Drops generations well behind `latest`: their refresh tokens are dead at Zoom.
    async fn prune(&self, latest: u64) {
        let Ok(dir) = self.staging.record(RecordKey::Grants {
            account: &self.account,
        }) else {
            return;
        };
        let Ok(paths) = self.staging.location.list(&dir).await else {
            return;
        };
        for path in paths {
            if generation_of(&path).is_some_and(|g| g + GENERATIONS_KEPT < latest) {
                let _ = self.staging.location.delete(&path).await;
            }
        }
    }
}

fn generation_of(path: &object_store::path::Path) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

fn store_error(error: StorageError) -> GrantStoreError {
    GrantStoreError(error.to_string())
}

impl GrantStore for StagingGrantStore {
    fn latest(&self) -> BoxFuture<'_, Result<Option<StoredGrant>, GrantStoreError>> {
        Box::pin(async move { self.latest_record().await.map_err(store_error) })
    }

    fn create<'a>(
        &'a self,
        grant: &'a StoredGrant,
    ) -> BoxFuture<'a, Result<bool, GrantStoreError>> {
        Box::pin(async move { self.create_record(grant).await.map_err(store_error) })
    }

    fn lock(&self, ttl: Duration) -> BoxFuture<'_, Result<Option<GrantLock>, GrantStoreError>> {
        Box::pin(async move {
            let name = format!("oauth:{}", self.account);
            let lease = Lease::acquire(&self.staging, &name, ttl)
                .await
                .map_err(store_error)?;
            Ok(lease.map(|lease| GrantLock::new(move || Box::pin(lease.release()))))
        })
    }
}
