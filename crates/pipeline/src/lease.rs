//! A lease: one process at a time does a job (reconcile an account, hold a WebSocket
//! subscription), across replicas and machines, through the staging store every replica shares.
//!
//! Taken by a create-only write (of two processes racing, exactly one creates it), held by
//! renewing it before it expires, and taken over by another process only once it has expired: a
//! process that died gives its job up after one lease time. Renewal checks ownership and the
//! holder's own clock first; a holder that could not renew in time stops the job (`renew` says
//! so) rather than risk two holders. Clocks of the replicas must agree to well within the lease
//! time (NTP does).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use object_store::path::Path;
use relay_storage::{Location, StorageError};
use serde::{Deserialize, Serialize};

use crate::staging::{RecordKey, Staging};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    owner: String,
    expires_at: DateTime<Utc>,
}

pub struct Lease {
    location: Location,
    path: Path,
    owner: String,
    ttl: Duration,
    expires_at: DateTime<Utc>,
}

impl Lease {
    /// Takes the lease `name` for `ttl`, if nobody holds it (or its holder let it expire).
    pub async fn acquire(
        staging: &Staging,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        let path = staging.record(RecordKey::Lease { name })?;
        let location = staging.location.clone();
        let owner = format!("{}-{}", relay_core::status::process_name(), uuid_like());
        let expires_at = Utc::now() + to_delta(ttl);
        let record = Record {
            owner: owner.clone(),
            expires_at,
        };
        if !location.create_json(&path, &record).await? {
            let held: Option<Record> = location.get_json(&path).await.ok().flatten();
            let expired = held.is_none_or(|held| held.expires_at <= Utc::now());
            if !expired {
                return Ok(None);
            }
            // Taken over only by a create-only write after deleting the expired record: of two
            // processes taking over at once, one creates it.
            location.delete(&path).await?;
            if !location.create_json(&path, &record).await? {
                return Ok(None);
            }
        }
        Ok(Some(Lease {
            location,
            path,
            owner,
            ttl,
            expires_at,
        }))
    }

    /// Extends the lease by its time; `false` when it was lost (expired before this renewal, or
    /// taken by another process): the job must stop.
    pub async fn renew(&mut self) -> Result<bool, StorageError> {
        if Utc::now() >= self.expires_at {
            return Ok(false);
        }
        let held: Option<Record> = self.location.get_json(&self.path).await?;
        if held.is_none_or(|held| held.owner != self.owner) {
            return Ok(false);
        }
        let expires_at = Utc::now() + to_delta(self.ttl);
        self.location
            .put_json(
                &self.path,
                &Record {
                    owner: self.owner.clone(),
                    expires_at,
                },
            )
            .await?;
        self.expires_at = expires_at;
        Ok(true)
    }

    /// Gives the lease back, if still ours, so another process need not wait for it to expire.
    pub async fn release(self) {
        let held: Option<Record> = self.location.get_json(&self.path).await.ok().flatten();
        if held.is_some_and(|held| held.owner == self.owner) {
            let _ = self.location.delete(&self.path).await;
        }
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

fn uuid_like() -> String {
    use sha2::Digest;
    let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
    hex::encode(&sha2::Sha256::digest(seed.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use relay_storage::StoreUrl;

    use super::*;

    fn staging() -> Staging {
        Staging::new(&StoreUrl::new("memory:///"), &BTreeMap::new()).expect("staging")
    }

    #[tokio::test]
    async fn one_holder_at_a_time_until_it_expires_or_is_released() {
        let staging = staging();
        let ttl = Duration::from_secs(60);
        let mut first = Lease::acquire(&staging, "reconcile:acme", ttl)
            .await
            .expect("store")
            .expect("free");
        assert!(
            Lease::acquire(&staging, "reconcile:acme", ttl)
                .await
                .expect("store")
                .is_none(),
            "held"
        );
        assert!(
            Lease::acquire(&staging, "reconcile:globex", ttl)
                .await
                .expect("store")
                .is_some(),
            "another job's lease is another lease"
        );
        assert!(first.renew().await.expect("store"));
        first.release().await;
        assert!(
            Lease::acquire(&staging, "reconcile:acme", ttl)
                .await
                .expect("store")
                .is_some(),
            "released"
        );
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_holder_learns_it_lost_it() {
        let staging = staging();
        let mut stale = Lease::acquire(&staging, "job", Duration::ZERO)
            .await
            .expect("store")
            .expect("free");
        let taken = Lease::acquire(&staging, "job", Duration::from_secs(60))
            .await
            .expect("store");
        assert!(taken.is_some(), "expired: taken over");
        assert!(
            !stale.renew().await.expect("store"),
            "the old holder lost it"
        );
    }
}
