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
use relay_pipeline::manifest::{Manifest, ManifestFile, VerifiedFile, VerifiedUpload};
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

    /// Where a file of the manifest waits in staging: a joined view under its view and its
    /// content's digest (two assemblers' joins never share a name), any other file under its id.
    fn staged_key<'m>(manifest: &'m Manifest, file: &'m ManifestFile) -> StagingKey<'m> {
        let joined = manifest
            .concatenated
            .iter()
            .any(|joined| std::ptr::eq(joined, file));
        match (joined, file.view.as_deref()) {
            (true, Some(view)) => StagingKey::Concat {
                view,
                sha256: &file.sha256,
            },
            _ => StagingKey::Data {
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
        manifest: &Manifest,
        file: &ManifestFile,
        force: bool,
    ) -> Result<Placed, StageError> {
        let destination = account.destination_for(&manifest.kind);
        let target = destination.path(&file.path)?;
        let source = staging.path(Self::staged_key(manifest, file))?;
        let staging = staging.location();
        let staged = staging.exists_with_size(&source).await?.is_some();
        // Forced (a replay testing a changed pipeline): what is staged is written again.
        if !(force && staged) {
            if self.matches(destination, &target, file).await? {
                return Ok(Placed::AlreadyThere);
            }
            // Keys are unique per meeting and file: another object there is not ours to replace.
            if staged && destination.exists_with_size(&target).await?.is_some() {
                // A concurrent duplicate of this task may have placed it between the two looks.
                if self.matches(destination, &target, file).await? {
                    return Ok(Placed::AlreadyThere);
                }
                return Err(StageError::new(
                    Code::DestinationConflict,
                    format!(
                        "{} holds another object than {}: not overwritten",
                        file.path, file.file_id
                    ),
                ));
            }
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
                    self.copy(destination, &source, &target, file).await?
                }
            }
        } else {
            self.copy(destination, &source, &target, file).await?
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
        destination: &Location,
        source: &Path,
        target: &Path,
        file: &ManifestFile,
    ) -> Result<Placed, StageError> {
        let (sent, sha256) = copy_streaming(
            &self.shared.staging.location,
            std::slice::from_ref(source),
            destination,
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
        let digest = manifest.content_digest();
        if digest != task.manifest_digest && !binding.force {
            // A newer manifest replaced this one; its own upload is on its way.
            info!("a newer manifest is in staging; this upload is superseded");
            return Ok(());
        }
        let (mut skipped, mut moved, mut copied) = (0, 0, 0);
        let mut verified = VerifiedUpload {
            manifest_path: manifest.manifest_path.clone(),
            files: Default::default(),
        };
        let destination = account.destination_for(&manifest.kind);
        for file in manifest.files() {
            match self
                .place(account, &staging, &manifest, file, binding.force)
                .await?
            {
                Placed::AlreadyThere => skipped += 1,
                Placed::Moved => moved += 1,
                Placed::Copied => copied += 1,
            }
            let meta = destination.head(&destination.path(&file.path)?).await?;
            verified.files.insert(
                file.file_id.clone(),
                VerifiedFile {
                    path: file.path.clone(),
                    size: meta.size,
                    e_tag: meta.e_tag,
                },
            );
        }
        let manifest_path = destination.path(&manifest.manifest_path)?;
        // Two uploads of one meeting can race (a manifest, then one with the transcript added):
        // the one with fewer files is the older and must not replace the newer.
        let written: Option<Manifest> = destination.get_json(&manifest_path).await?;
        if written.is_none_or(|written| written.files().count() <= manifest.files().count()) {
            destination.put_json(&manifest_path, &manifest).await?;
        }
        staging
            .location()
            .put_json(
                &staging.path(StagingKey::Verified { digest: &digest })?,
                &verified,
            )
            .await?;
        for file in manifest.files() {
            let staged = staging.path(Self::staged_key(&manifest, file))?;
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
                    "missing": manifest.missing.len(),
                    "bytes": manifest.total_bytes,
                    "manifest": manifest.manifest_path,
                    "destination": match (&account.settings.webinar_destination, manifest.kind.as_str()) {
                        (Some(webinars), "webinar") => webinars.redacted(),
                        _ => account.settings.destination.redacted(),
                    },
                    "topic": manifest.topic,
                })),
            )
            .await?;
        if account.settings.deletes() {
            context
                .send(&CleanupTask {
                    meeting_uuid: uuid.to_owned(),
                    manifest_digest: digest,
                    uploaded_at: chrono::Utc::now(),
                })
                .await?;
        }
        Ok(())
    }
}
