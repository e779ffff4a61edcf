//! The assemble stage: when every wanted file of a meeting is staged, write its manifest (and,
//! where enabled, one concatenated MP4 per view), then hand the meeting to upload.
//!
//! Download tells assemble only when a file completes the meeting, so a meeting is assembled
//! once (a few times when its last files finish together), not once per file. A later
//! `recording.transcript_completed` or a repeated `recording.completed` adds wanted files and
//! assembles again: the new manifest replaces the old one. Two assemblers racing on one meeting
//! write the same manifest.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use relay_core::consumer::{Context, Stage};
use relay_core::failure::{Code, StageError};
use relay_core::status::{State, Transition};
use relay_pipeline::manifest::{
    FailedFile, Manifest, ManifestFile, MeetingMeta, StagedFile, WantedFile,
};
use relay_pipeline::messages::{AssembleTask, UploadTask};
use relay_pipeline::staging::{MeetingStaging, StagingKey};
use relay_pipeline::{Account, Shared, StartError};
use relay_storage::names::component;
use serde_json::json;
use tracing::info;
use zoom_api::model::FileType;

/// Distinguishes concurrent joins' temporary files within a process.
static JOINS: AtomicU64 = AtomicU64::new(0);

pub struct Assemble {
    shared: Shared,
}

impl Assemble {
    /// Refuses to start when an account wants concatenation but ffmpeg does not run or staging
    /// is not a local directory.
    pub fn new(shared: &Shared) -> Result<Self, StartError> {
        let settings = &shared.settings;
        if let Some(account) = shared.accounts.iter().find(|a| a.settings.concat_media) {
            let ffmpeg = std::process::Command::new(&settings.ffmpeg)
                .arg("-version")
                .output();
            if !ffmpeg.is_ok_and(|output| output.status.success()) {
                return Err(StartError::Requirement(format!(
                    "account `{}` has concat_media = true but `{}` does not run (Debian: apt-get install ffmpeg, or set pipeline.ffmpeg)",
                    account.settings.name, settings.ffmpeg
                )));
            }
            if !shared.staging.location.is_local() {
                return Err(StartError::Requirement(format!(
                    "account `{}` has concat_media = true, which needs pipeline.staging to be a file:// directory",
                    account.settings.name
                )));
            }
        }
        Ok(Self {
            shared: shared.clone(),
        })
    }

    /// Joins each view's MP4 segments into one file with ffmpeg's concat demuxer (stream copy).
    async fn concatenate(
        &self,
        staging: &MeetingStaging<'_>,
        manifest: &Manifest,
        previous: Option<&Manifest>,
    ) -> Result<Vec<ManifestFile>, StageError> {
        let mut by_view: BTreeMap<String, Vec<&ManifestFile>> = BTreeMap::new();
        for segment in &manifest.segments {
            for file in segment
                .files
                .iter()
                .filter(|f| f.file_type == FileType::Mp4.as_str())
            {
                by_view
                    .entry(file.view.clone().unwrap_or_default())
                    .or_default()
                    .push(file);
            }
        }
        let dir = manifest.manifest_path.trim_end_matches("meeting.json");
        let mut joined = Vec::new();
        for (view, parts) in by_view.into_iter().filter(|(_, parts)| parts.len() > 1) {
            // Never the key of one of the meeting's own files (a file template could name one
            // `{view}-full.mp4`).
            let taken: std::collections::HashSet<&str> =
                manifest.files().map(|file| file.path.as_str()).collect();
            let mut path = format!("{dir}{}-full.mp4", component(&view));
            while taken.contains(path.as_str()) {
                path = format!("{}-joined.mp4", path.trim_end_matches(".mp4"));
            }
            let inputs: Option<Vec<_>> = parts
                .iter()
                .map(|part| {
                    staging.local_path(StagingKey::Data {
                        file_id: &part.file_id,
                    })
                })
                .collect();
            let inputs = inputs.filter(|inputs| inputs.iter().all(|input| input.exists()));
            let Some(inputs) = inputs else {
                // Segments already uploaded and removed: the earlier join still stands.
                if let Some(earlier) =
                    previous.and_then(|m| m.concatenated.iter().find(|f| f.path == path))
                {
                    joined.push(earlier.clone());
                }
                continue;
            };
            let output_key = || StagingKey::Concat { view: &view };
            let output = staging.local_path(output_key()).ok_or_else(|| {
                StageError::new(Code::StorageInvalid, "concat_media needs a file:// staging")
            })?;
            if let Some(parent) = output.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| StageError::from_error(Code::StorageFailed, &e))?;
            }
            // Two assemblers can finish one meeting at once: each joins into files of its own
            // and renames the result into place, so neither sees the other's half-written output.
            let run = format!(
                "{}-{}",
                std::process::id(),
                JOINS.fetch_add(1, Ordering::Relaxed)
            );
            let list = output.with_extension(format!("{run}.txt"));
            let partial = output.with_extension(format!("{run}.partial.mp4"));
            let listing: String = inputs
                .iter()
                .map(|input| format!("file '{}'\n", input.display()))
                .collect();
            tokio::fs::write(&list, listing)
                .await
                .map_err(|e| StageError::from_error(Code::StorageFailed, &e))?;
            let status = tokio::process::Command::new(&self.shared.settings.ffmpeg)
                .args([
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-y",
                    "-f",
                    "concat",
                    "-safe",
                    "0",
                    "-i",
                ])
                .arg(&list)
                .args(["-c", "copy", "-movflags", "+faststart", "-f", "mp4"])
                .arg(&partial)
                .status()
                .await
                .map_err(|e| StageError::from_error(Code::MediaBroken, &e));
            let _ = tokio::fs::remove_file(&list).await;
            let status = match status {
                Ok(status) if status.success() => {
                    tokio::fs::rename(&partial, &output)
                        .await
                        .map_err(|e| StageError::from_error(Code::StorageFailed, &e))?;
                    status
                }
                other => {
                    let _ = tokio::fs::remove_file(&partial).await;
                    other?
                }
            };
            if !status.success() {
                return Err(StageError::new(
                    Code::MediaBroken,
                    format!("ffmpeg exited with {status} joining {view}"),
                ));
            }
            let (size, sha256) = staging
                .location()
                .digest(&staging.path(output_key())?)
                .await?;
            joined.push(ManifestFile {
                file_id: format!("concat-{view}"),
                file_type: "MP4".into(),
                view: Some(view.clone()),
                file_name: None,
                start: parts.first().and_then(|p| p.start.clone()),
                end: parts.last().and_then(|p| p.end.clone()),
                size,
                sha256,
                listed_size: None,
                path,
            });
        }
        Ok(joined)
    }
}

impl Stage for Assemble {
    type Input = AssembleTask;

    async fn handle(&self, task: AssembleTask, context: &Context) -> Result<(), StageError> {
        let binding = context.binding();
        let account: &Account = self.shared.accounts.resolve(binding)?;
        let uuid = task.meeting_uuid.as_str();
        let staging = self.shared.staging.meeting(account.name(), uuid);
        let snapshot = staging.snapshot().await?;
        if !snapshot.complete() {
            info!(
                wanted = snapshot.wanted(),
                missing = snapshot.missing(),
                "waiting for more files"
            );
            return Ok(());
        }
        let location = staging.location();
        let wanted: Vec<WantedFile> = location
            .list_json(&staging.path(StagingKey::WantedDir)?, ".json")
            .await?;
        let staged: BTreeMap<String, StagedFile> = location
            .list_json::<StagedFile>(&staging.path(StagingKey::FilesDir)?, ".done.json")
            .await?
            .into_iter()
            .map(|record| (record.file_id.clone(), record))
            .collect();
        let failed: BTreeMap<String, FailedFile> = location
            .list_json::<FailedFile>(&staging.path(StagingKey::FilesDir)?, ".failed.json")
            .await?
            .into_iter()
            .filter(|record| !staged.contains_key(&record.file_id))
            .map(|record| (record.file_id.clone(), record))
            .collect();
        let metas: Vec<MeetingMeta> = location
            .list_json(&staging.path(StagingKey::MetaDir)?, ".json")
            .await?;
        let manifest_key = staging.path(StagingKey::Manifest)?;
        let previous: Option<Manifest> = location.get_json(&manifest_key).await?;
        let (mut manifest, _) = Manifest::build(
            &account.settings,
            &account.templates,
            &metas,
            &wanted,
            &staged,
            &failed,
            previous.as_ref(),
        )?;
        if account.settings.concat_media {
            manifest.concatenated = self
                .concatenate(&staging, &manifest, previous.as_ref())
                .await?;
        }
        location.put_json(&manifest_key, &manifest).await?;
        info!(
            files = manifest.files().count(),
            bytes = manifest.total_bytes,
            "manifest written"
        );
        context
            .record(
                Transition::new(binding, uuid, State::Assembled, "assemble").detail(json!({
                    "files": manifest.files().count(),
                    "bytes": manifest.total_bytes,
                    "manifest": manifest.manifest_path,
                })),
            )
            .await?;
        context
            .send(&UploadTask {
                meeting_uuid: uuid.to_owned(),
                manifest_digest: manifest.content_digest(),
            })
            .await
    }
}
