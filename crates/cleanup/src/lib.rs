//! The cleanup stage: deletes a meeting's cloud recording once every file of it is verified at the
//! destination — only for accounts with `delete_after_upload`, after `delete_after_days`.
//!
//! Nothing is deleted whose upload is not verified: each file of the manifest must be at the
//! destination with its size. A claim in staging (`cleanup.json`, created only if absent) makes
//! the deletion happen once even when duplicates run concurrently; a claim left by a crashed
//! worker is taken over after [`CLAIM_STALE_AFTER`]. "Already gone" at Zoom is success. Every
//! deletion is logged as an audit line (target `audit`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use object_store::ObjectStoreExt;
use relay_core::Settings;
use relay_core::broker::{Broker, StageName};
use relay_core::consumer::{self, Context, Stage, StageError, Subject};
use relay_core::settings::DeleteAfterUpload;
use relay_core::shutdown::CancellationToken;
use relay_pipeline::manifest::Manifest;
use relay_pipeline::messages::CleanupTask;
use relay_pipeline::storage::{Staging, StagingKey};
use relay_pipeline::{Accounts, StartError};
use serde::{Deserialize, Serialize};
use tracing::info;
use zoom_api::ZoomError;
use zoom_api::client::DeleteAction;

/// A claim older than this, never marked done, belonged to a worker that died. Longer than a
/// living worker can take (Zoom's `Retry-After` waits included): deleting late is harmless,
/// deleting twice is not.
pub const CLAIM_STALE_AFTER: Duration = Duration::from_secs(2 * 3600);

#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    /// Which worker holds it: only the holder releases it.
    owner: String,
    claimed_at: DateTime<Utc>,
    done: bool,
    action: Option<String>,
}

pub struct Cleanup {
    accounts: Accounts,
    staging: Staging,
}

impl Cleanup {
    pub fn new(accounts: Accounts, staging: Staging) -> Self {
        Self { accounts, staging }
    }

    /// Deletes what was uploaded: the whole meeting when every file Zoom lists was kept, else
    /// each kept file. Returns the file ids deleted.
    async fn delete(
        &self,
        account: &relay_pipeline::Account,
        uuid: &str,
        manifest: &Manifest,
        action: DeleteAction,
    ) -> Result<Vec<String>, StageError> {
        let uploaded: HashSet<&str> = manifest.files().map(|file| file.file_id.as_str()).collect();
        let listed = match account.zoom.meeting_recordings(uuid, false).await {
            Ok(listed) => Some(listed),
            Err(ZoomError::NotFound { .. }) => None,
            Err(error) => return Err(error.into()),
        };
        let mut deleted_files = Vec::new();
        if let Some(listed) = listed {
            if listed.all_files().any(|file| !file.is_completed()) {
                return Err(StageError::retry(
                    "file_processing",
                    "Zoom is still processing a file of this meeting",
                ));
            }
            let at_zoom: Vec<String> = listed
                .all_files()
                .filter_map(|file| file.id.clone())
                .collect();
            if at_zoom.iter().all(|id| uploaded.contains(id.as_str())) {
                account.zoom.delete_meeting_recordings(uuid, action).await?;
                deleted_files = at_zoom;
            } else {
                // Some files were filtered out (file types): delete only what was kept.
                for id in at_zoom
                    .into_iter()
                    .filter(|id| uploaded.contains(id.as_str()))
                {
                    account
                        .zoom
                        .delete_recording_file(uuid, &id, action)
                        .await?;
                    deleted_files.push(id);
                }
            }
        }
        Ok(deleted_files)
    }
}

impl Stage for Cleanup {
    const NAME: StageName = StageName::Cleanup;
    type Message = CleanupTask;

    fn subject(task: &CleanupTask) -> Subject {
        task.subject()
    }

    async fn handle(&self, task: CleanupTask, _context: &Context) -> Result<(), StageError> {
        let account = self.accounts.require(&task.account)?;
        let action = match account.settings.delete_after_upload {
            DeleteAfterUpload::Off => return Ok(()),
            DeleteAfterUpload::Trash => DeleteAction::Trash,
            DeleteAfterUpload::Delete => DeleteAction::Delete,
        };
        let due = task.uploaded_at + TimeDelta::days(i64::from(account.settings.delete_after_days));
        let now = Utc::now();
        if now < due {
            return Err(StageError::Defer((due - now).to_std().unwrap_or_default()));
        }
        let (name, uuid) = (task.account.as_str(), task.meeting_uuid.as_str());
        let location = &self.staging.location;
        let manifest: Manifest = location
            .get_json(&self.staging.path(StagingKey::Manifest {
                account: name,
                uuid,
            }))
            .await?
            .ok_or_else(|| {
                StageError::reject(
                    "no_manifest",
                    "no manifest: nothing is known to be uploaded",
                )
            })?;

        // Verified at the destination, each file and the manifest, or nothing is deleted.
        let destination = &account.destination;
        for file in manifest.files() {
            let found = destination
                .exists_with_size(&destination.path(&file.path))
                .await?;
            if found != Some(file.size) {
                return Err(StageError::reject(
                    "not_verified",
                    format!(
                        "{} is not at the destination with its size; not deleting",
                        file.file_id
                    ),
                ));
            }
        }
        if destination
            .exists_with_size(&destination.path(&manifest.manifest_path))
            .await?
            .is_none()
        {
            return Err(StageError::retry(
                "not_verified",
                "the manifest is not at the destination yet",
            ));
        }

        let claim_path = self.staging.path(StagingKey::CleanupClaim {
            account: name,
            uuid,
        });
        let owner = format!(
            "{}-{}",
            std::process::id(),
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        let claim = Claim {
            owner: owner.clone(),
            claimed_at: now,
            done: false,
            action: None,
        };
        // Only a create-if-absent takes the claim, also when taking over a stale one: of two
        // workers racing, exactly one creates it.
        if !location.create_json(&claim_path, &claim).await? {
            let existing: Option<Claim> = location.get_json(&claim_path).await?;
            let stale = match &existing {
                Some(existing) if existing.done => return Ok(()),
                Some(existing) => {
                    (now - existing.claimed_at).to_std().unwrap_or_default() >= CLAIM_STALE_AFTER
                }
                None => true,
            };
            if stale {
                let _ = location.store.delete(&claim_path).await;
            }
            if !stale || !location.create_json(&claim_path, &claim).await? {
                // Another worker is deleting right now; come back to see it done.
                return Err(StageError::Defer(Duration::from_secs(30)));
            }
        }

        let deleted_files = match self.delete(account, uuid, &manifest, action).await {
            Ok(deleted) => deleted,
            Err(error) => {
                // Release our claim: the next attempt must not wait for a worker that gave up.
                let current: Option<Claim> = location.get_json(&claim_path).await.ok().flatten();
                if current.is_some_and(|current| current.owner == owner) {
                    let _ = location.store.delete(&claim_path).await;
                }
                return Err(error);
            }
        };
        let done = Claim {
            owner,
            claimed_at: now,
            done: true,
            action: Some(action.as_str().to_owned()),
        };
        location.put_json(&claim_path, &done).await?;
        info!(
            target: "audit",
            account = name,
            meeting_uuid = uuid,
            files = ?deleted_files,
            action = action.as_str(),
            "cloud recording deleted at Zoom"
        );
        Ok(())
    }
}

/// Runs cleanup until `shutdown`.
pub async fn run(
    settings: &Settings,
    broker: Broker,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let stage = Cleanup::new(Accounts::new(settings)?, Staging::new(&settings.pipeline)?);
    consumer::run(
        broker,
        Arc::new(stage),
        settings.pipeline.cleanup,
        settings.pipeline.clone(),
        shutdown,
    )
    .await;
    Ok(())
}
