//! The upload stage: a meeting's staged files and manifest to the account's destination.
//!
//! For each file: already there with the same size and SHA-256 → skipped; staging and
//! destination in the same store → renamed (no second transfer); otherwise streamed as a
//! multipart upload with bounded memory, aborted on failure, so an object never appears
//! half-written under its final name. Every file is verified before the manifest is written and
//! the staged copies are removed: a copied file by its size at the destination and its SHA-256
//! read back (unless `pipeline.verify_readback` is off); a renamed one — the same object, whose
//! bytes were hashed as they were downloaded — by its size. Then cleanup is told, for accounts that delete.

use object_store::ObjectStoreExt;
use object_store::path::Path;
use relay_core::consumer::{Context, Stage};
use relay_core::failure::{Code, StageError};
use relay_core::status::{State, Transition};
use relay_pipeline::manifest::{Manifest, ManifestFile};
use relay_pipeline::messages::{CleanupTask, UploadTask};
use relay_pipeline::staging::{MeetingStaging, StagingKey};
use relay_pipeline::{Account, Shared};
use relay_storage::{Location, StorageError, copy_streaming};
use serde_json::json;
use tracing::{debug, info};

pub struct Upload {
    shared: Shared,
}

enum Placed {
    AlreadyThere,
    Moved,
    Copied,
}

impl Upload {
    pub fn new(shared: &Shared) -> Self {
        Self {
            shared: shared.clone(),
        }
    }

    fn staged_key(file: &ManifestFile) -> StagingKey<'_> {
        match file.file_id.strip_prefix("concat-") {
            Some(view) => StagingKey::Concat { view },
            None => StagingKey::Data {
                file_id: &file.file_id,
            },
        }
    }

    async fn matches(
        &self,
        location: &Location,
        path: &Path,
        file: &ManifestFile,
    ) -> Result<bool, StorageError> {
        if location.exists_with_size(path).await? != Some(file.size) {
            return Ok(false);
        }
        if !self.shared.settings.verify_readback {
            return Ok(true);
        }
        Ok(location.digest(path).await?.1 == file.sha256)
    }

    async fn place(
        &self,
        account: &Account,
        staging: &MeetingStaging<'_>,
        file: &ManifestFile,
        force: bool,
    ) -> Result<Placed, StageError> {
        let destination = &account.destination;
        let target = destination.path(&file.path)?;
        let source = staging.path(Self::staged_key(file))?;
        let staging = staging.location();
        let staged = staging.exists_with_size(&source).await?.is_some();
        // Forced (a replay testing a changed pipeline): what is staged is written again.
        if !(force && staged) && self.matches(destination, &target, file).await? {
            return Ok(Placed::AlreadyThere);
        }
        if !staged {
            // A concurrent duplicate may have just moved it.
            if self.matches(destination, &target, file).await? {
                return Ok(Placed::AlreadyThere);
            }
            // Moved by a duplicate still writing, or lost: try later.
            return Err(StageError::new(
                Code::StagedFileMissing,
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
            return Err(StageError::new(
                Code::VerificationFailed,
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
        source: &Path,
        target: &Path,
        file: &ManifestFile,
    ) -> Result<Placed, StageError> {
        let (sent, sha256) = copy_streaming(
            &self.shared.staging.location,
            std::slice::from_ref(source),
            &account.destination,
            target,
            file.size,
        )
        .await?;
        if sent != file.size || sha256 != file.sha256 {
            return Err(StageError::new(
                Code::VerificationFailed,
                format!("{}: staged copy does not match its record", file.file_id),
            ));
        }
        Ok(Placed::Copied)
    }
}

impl Stage for Upload {
    type Input = UploadTask;

    async fn handle(&self, task: UploadTask, context: &Context) -> Result<(), StageError> {
        let binding = context.binding();
        let account = self.shared.accounts.resolve(binding)?;
        let uuid = task.meeting_uuid.as_str();
        let staging = self.shared.staging.meeting(account.name(), uuid);
        let manifest: Manifest = staging
            .location()
            .get_json(&staging.path(StagingKey::Manifest)?)
            .await?
            .ok_or_else(|| StageError::new(Code::NoManifest, "no manifest in staging"))?;
        let (mut skipped, mut moved, mut copied) = (0, 0, 0);
        for file in manifest.files() {
            match self.place(account, &staging, file, binding.force).await? {
                Placed::AlreadyThere => skipped += 1,
                Placed::Moved => moved += 1,
                Placed::Copied => copied += 1,
            }
        }
        let destination = &account.destination;
        let manifest_path = destination.path(&manifest.manifest_path)?;
        // Two uploads of one meeting can race (a manifest, then one with the transcript added):
        // the one with fewer files is the older and must not replace the newer.
        let written: Option<Manifest> = destination.get_json(&manifest_path).await?;
        if written.is_none_or(|written| written.files().count() <= manifest.files().count()) {
            destination.put_json(&manifest_path, &manifest).await?;
        }
        for file in manifest.files() {
            let staged = staging.path(Self::staged_key(file))?;
            if let Err(error) = staging.location().delete(&staged).await {
                debug!(%error, "staged copy not removed");
            }
        }
        info!(
            copied,
            moved,
            skipped,
            bytes = manifest.total_bytes,
            "meeting uploaded and verified"
        );
        context
            .record(
                Transition::new(binding, uuid, State::Uploaded, "upload").detail(json!({
                    "files": manifest.files().count(),
                    "bytes": manifest.total_bytes,
                    "manifest": manifest.manifest_path,
                    "destination": account.settings.destination.redacted(),
                    "topic": manifest.topic,
                })),
            )
            .await?;
        if account.settings.deletes() {
            context
                .send(&CleanupTask {
                    meeting_uuid: uuid.to_owned(),
                    uploaded_at: chrono::Utc::now(),
                })
                .await?;
        }
        Ok(())
    }
}
