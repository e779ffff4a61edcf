//! The upload stage: a meeting's staged files and manifest to the account's destination.
//!
//! For each file: already there with the same size and SHA-256 → skipped; staging and
//! destination in the same store → renamed (no second transfer); otherwise streamed as a
//! multipart upload with bounded memory, aborted on failure, so an object never appears
//! half-written under its final name. Every file is verified before the manifest is written and
//! the staged copies are removed: a copied file by its size at the destination and its SHA-256
//! read back (unless `pipeline.verify_readback` is off); a renamed one — the same object, whose
//! bytes were hashed as they were downloaded — by its size. Then cleanup is told, for accounts that delete.

use std::sync::Arc;

use object_store::ObjectStoreExt;
use relay_core::Settings;
use relay_core::broker::{Broker, StageName};
use relay_core::consumer::{self, Context, Stage, StageError, Subject};
use relay_core::settings::DeleteAfterUpload;
use relay_core::shutdown::CancellationToken;
use relay_pipeline::manifest::{Manifest, ManifestFile};
use relay_pipeline::messages::{CleanupTask, MeetingRef};
use relay_pipeline::storage::{Location, Staging, StagingKey, StorageError, copy_streaming};
use relay_pipeline::{Account, Accounts, StartError};
use tracing::{debug, info};

pub struct Upload {
    accounts: Accounts,
    staging: Staging,
    verify_readback: bool,
}

enum Placed {
    AlreadyThere,
    Moved,
    Copied,
}

impl Upload {
    pub fn new(accounts: Accounts, staging: Staging, verify_readback: bool) -> Self {
        Self {
            accounts,
            staging,
            verify_readback,
        }
    }

    fn staged_key<'a>(account: &'a str, uuid: &'a str, file: &'a ManifestFile) -> StagingKey<'a> {
        match file.file_id.strip_prefix("concat-") {
            Some(view) => StagingKey::Concat {
                account,
                uuid,
                view,
            },
            None => StagingKey::Data {
                account,
                uuid,
                file_id: &file.file_id,
            },
        }
    }

    async fn matches(
        &self,
        location: &Location,
        path: &object_store::path::Path,
        file: &ManifestFile,
    ) -> Result<bool, StorageError> {
        if location.exists_with_size(path).await? != Some(file.size) {
            return Ok(false);
        }
        if !self.verify_readback {
            return Ok(true);
        }
        Ok(location.digest(path).await?.1 == file.sha256)
    }

    async fn place(
        &self,
        account: &Account,
        uuid: &str,
        file: &ManifestFile,
    ) -> Result<Placed, StageError> {
        let destination = &account.destination;
        let target = destination.path(&file.path);
        if self.matches(destination, &target, file).await? {
            return Ok(Placed::AlreadyThere);
        }
        let staging = &self.staging.location;
        let source = self
            .staging
            .path(Self::staged_key(&account.settings.name, uuid, file));
        if staging.exists_with_size(&source).await?.is_none() {
            // A concurrent duplicate may have just moved it.
            if self.matches(destination, &target, file).await? {
                return Ok(Placed::AlreadyThere);
            }
            // Moved by a duplicate still writing, or lost: try later.
            return Err(StageError::retry(
                "staged_file_missing",
                format!("{} is neither staged nor at the destination", file.file_id),
            ));
        }
        let placed = if staging.same_store_as(destination) {
            match staging.store.rename(&source, &target).await {
                Ok(()) => Placed::Moved,
                // Across filesystems a rename fails: fall back to a copy.
                Err(error) => {
                    debug!(%error, "rename failed, copying instead");
                    self.copy(account, &source, &target, file).await?
                }
            }
        } else {
            self.copy(account, &source, &target, file).await?
        };
        // A rename moves the object, not its bytes, which were hashed as they were downloaded:
        // the size says it is the same object. Copied bytes are read back and hashed.
        let verified = match placed {
            Placed::Moved => destination.exists_with_size(&target).await? == Some(file.size),
            _ => self.matches(destination, &target, file).await?,
        };
        if !verified {
            return Err(StageError::retry(
                "verification_failed",
                format!(
                    "{} at the destination differs from what was staged",
                    file.file_id
                ),
            ));
        }
        Ok(placed)
    }

    async fn copy(
        &self,
        account: &Account,
        source: &object_store::path::Path,
        target: &object_store::path::Path,
        file: &ManifestFile,
    ) -> Result<Placed, StageError> {
        let (sent, sha256) = copy_streaming(
            &self.staging.location,
            source,
            &account.destination,
            target,
            file.size,
        )
        .await?;
        if sent != file.size || sha256 != file.sha256 {
            return Err(StageError::retry(
                "staged_file_corrupt",
                format!("{}: staged copy does not match its record", file.file_id),
            ));
        }
        Ok(Placed::Copied)
    }
}

impl Stage for Upload {
    const NAME: StageName = StageName::Upload;
    type Message = MeetingRef;

    fn subject(meeting: &MeetingRef) -> Subject {
        meeting.subject()
    }

    async fn handle(&self, meeting: MeetingRef, context: &Context) -> Result<(), StageError> {
        let account = self.accounts.require(&meeting.account)?;
        let (name, uuid) = (meeting.account.as_str(), meeting.meeting_uuid.as_str());
        let manifest: Manifest = self
            .staging
            .location
            .get_json(&self.staging.path(StagingKey::Manifest {
                account: name,
                uuid,
            }))
            .await?
            .ok_or_else(|| StageError::reject("no_manifest", "no manifest in staging"))?;
        let (mut skipped, mut moved, mut copied) = (0, 0, 0);
        for file in manifest.files() {
            match self.place(account, uuid, file).await? {
                Placed::AlreadyThere => skipped += 1,
                Placed::Moved => moved += 1,
                Placed::Copied => copied += 1,
            }
        }
        let manifest_path = account.destination.path(&manifest.manifest_path);
        // Two uploads of one meeting can race (a manifest, then one with the transcript added):
        // the one with fewer files is the older and must not replace the newer.
        let written: Option<Manifest> = account.destination.get_json(&manifest_path).await?;
        if written.is_none_or(|written| written.files().count() <= manifest.files().count()) {
            account
                .destination
                .put_json(&manifest_path, &manifest)
                .await?;
        }
        for file in manifest.files() {
            let staged = self.staging.path(Self::staged_key(name, uuid, file));
            match self.staging.location.store.delete(&staged).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => debug!(%error, "staged copy not removed"),
            }
        }
        info!(
            copied,
            moved,
            skipped,
            bytes = manifest.total_bytes,
            "meeting uploaded and verified"
        );
        if account.settings.delete_after_upload != DeleteAfterUpload::Off {
            let task = CleanupTask {
                account: name.to_owned(),
                meeting_uuid: uuid.to_owned(),
                uploaded_at: chrono::Utc::now(),
            };
            context
                .send(StageName::Cleanup, &format!("cleanup:{uuid}"), &task)
                .await?;
        }
        Ok(())
    }
}

/// Runs upload until `shutdown`.
pub async fn run(
    settings: &Settings,
    broker: Broker,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let stage = Upload::new(
        Accounts::new(settings)?,
        Staging::new(&settings.pipeline)?,
        settings.pipeline.verify_readback,
    );
    consumer::run(
        broker,
        Arc::new(stage),
        settings.pipeline.upload,
        settings.pipeline.clone(),
        shutdown,
    )
    .await;
    Ok(())
}
