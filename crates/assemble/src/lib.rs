//! The assemble stage: when every wanted file of a meeting is staged, write its manifest (and,
//! where enabled, one concatenated MP4 per view), then hand the meeting to upload.
//!
//! A later `recording.transcript_completed` or a repeated `recording.completed` adds wanted
//! files; the next staged file triggers a new manifest for the same meeting, which replaces the
//! old one. Two assemblers racing on one meeting write the same manifest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use relay_core::Settings;
use relay_core::broker::{Broker, StageName};
use relay_core::consumer::{self, Context, Stage, StageError, Subject};
use relay_core::shutdown::CancellationToken;
use relay_pipeline::manifest::{Manifest, ManifestFile, MeetingMeta, StagedFile, WantedFile};
use relay_pipeline::messages::MeetingRef;
use relay_pipeline::paths::sanitize;
use relay_pipeline::storage::{Staging, StagingKey};
use relay_pipeline::{Account, Accounts, StartError};
use tracing::info;
use zoom_api::model::FileType;

/// Distinguishes concurrent joins' temporary files within a process.
static JOINS: AtomicU64 = AtomicU64::new(0);

pub struct Assemble {
    accounts: Accounts,
    staging: Staging,
    ffmpeg: String,
}

impl Assemble {
    pub fn new(accounts: Accounts, staging: Staging, ffmpeg: String) -> Self {
        Self {
            accounts,
            staging,
            ffmpeg,
        }
    }

    /// Joins each view's MP4 segments into one file with ffmpeg's concat demuxer (stream copy).
    async fn concatenate(
        &self,
        account: &Account,
        manifest: &Manifest,
        previous: Option<&Manifest>,
    ) -> Result<Vec<ManifestFile>, StageError> {
        let (name, uuid) = (
            account.settings.name.as_str(),
            manifest.meeting_uuid.as_str(),
        );
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
            let path = format!("{dir}{}-full.mp4", sanitize(&view));
            let inputs: Option<Vec<_>> = parts
                .iter()
                .map(|part| {
                    self.staging.local_path(StagingKey::Data {
                        account: name,
                        uuid,
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
            let output_key = || StagingKey::Concat {
                account: name,
                uuid,
                view: &view,
            };
            let output = self.staging.local_path(output_key()).ok_or_else(|| {
                StageError::reject(
                    "concat_needs_local_staging",
                    "concat_media needs a file:// staging",
                )
            })?;
            if let Some(parent) = output.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| StageError::retry("storage", e))?;
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
                .map_err(|e| StageError::retry("storage", e))?;
            let status = tokio::process::Command::new(&self.ffmpeg)
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
                .map_err(|e| StageError::retry("ffmpeg_unavailable", e));
            let _ = tokio::fs::remove_file(&list).await;
            let status = match status {
                Ok(status) if status.success() => {
                    tokio::fs::rename(&partial, &output)
                        .await
                        .map_err(|e| StageError::retry("storage", e))?;
                    status
                }
                other => {
                    let _ = tokio::fs::remove_file(&partial).await;
                    other?
                }
            };
            if !status.success() {
                return Err(StageError::reject(
                    "ffmpeg_failed",
                    format!("ffmpeg exited with {status} joining {view}"),
                ));
            }
            let (size, sha256) = self
                .staging
                .location
                .digest(&self.staging.path(output_key()))
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
                path,
            });
        }
        Ok(joined)
    }
}

impl Stage for Assemble {
    const NAME: StageName = StageName::Assemble;
    type Message = MeetingRef;

    fn subject(meeting: &MeetingRef) -> Subject {
        meeting.subject()
    }

    async fn handle(&self, meeting: MeetingRef, context: &Context) -> Result<(), StageError> {
        let account = self.accounts.require(&meeting.account)?;
        let (name, uuid) = (meeting.account.as_str(), meeting.meeting_uuid.as_str());
        let location = &self.staging.location;
        let wanted: Vec<WantedFile> = location
            .list_json(
                &self.staging.path(StagingKey::WantedDir {
                    account: name,
                    uuid,
                }),
                ".json",
            )
            .await?;
        let staged: BTreeMap<String, StagedFile> = location
            .list_json::<StagedFile>(
                &self.staging.path(StagingKey::FilesDir {
                    account: name,
                    uuid,
                }),
                ".done.json",
            )
            .await?
            .into_iter()
            .map(|record| (record.file_id.clone(), record))
            .collect();
        let missing = wanted
            .iter()
            .filter(|w| {
                w.file
                    .id
                    .as_ref()
                    .is_some_and(|id| !staged.contains_key(id))
            })
            .count();
        if wanted.is_empty() || missing > 0 {
            info!(wanted = wanted.len(), missing, "waiting for more files");
            return Ok(());
        }
        let metas: Vec<MeetingMeta> = location
            .list_json(
                &self.staging.path(StagingKey::MetaDir {
                    account: name,
                    uuid,
                }),
                ".json",
            )
            .await?;
        let manifest_key = self.staging.path(StagingKey::Manifest {
            account: name,
            uuid,
        });
        let previous: Option<Manifest> = location.get_json(&manifest_key).await?;
        let (mut manifest, _) = Manifest::build(
            &account.settings,
            &account.templates,
            &metas,
            &wanted,
            &staged,
            previous.as_ref(),
        )
        .map_err(|error| StageError::reject("path_template", error))?;
        if account.settings.concat_media {
            manifest.concatenated = self
                .concatenate(account, &manifest, previous.as_ref())
                .await?;
        }
        location.put_json(&manifest_key, &manifest).await?;
        info!(
            files = manifest.files().count(),
            bytes = manifest.total_bytes,
            "manifest written"
        );
        let id = format!(
            "upload:{uuid}:{}:{}",
            manifest.files().count(),
            manifest.total_bytes
        );
        context.send(StageName::Upload, &id, &meeting).await
    }
}

/// Runs assemble until `shutdown`. Refuses to start when an account wants concatenation but
/// ffmpeg is missing or staging is not a local directory.
pub async fn run(
    settings: &Settings,
    broker: Broker,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let accounts = Accounts::new(settings)?;
    let staging = Staging::new(&settings.pipeline)?;
    if let Some(account) = accounts.iter().find(|a| a.settings.concat_media) {
        let ffmpeg = std::process::Command::new(&settings.pipeline.ffmpeg)
            .arg("-version")
            .output();
        if !ffmpeg.is_ok_and(|output| output.status.success()) {
            return Err(StartError::Requirement(format!(
                "account `{}` has concat_media = true but `{}` does not run (Debian: apt-get install ffmpeg, or set pipeline.ffmpeg)",
                account.settings.name, settings.pipeline.ffmpeg
            )));
        }
        if !settings.pipeline.staging.starts_with("file://") {
            return Err(StartError::Requirement(format!(
                "account `{}` has concat_media = true, which needs pipeline.staging to be a file:// directory",
                account.settings.name
            )));
        }
    }
    let stage = Assemble::new(accounts, staging, settings.pipeline.ffmpeg.clone());
    consumer::run(
        broker,
        Arc::new(stage),
        settings.pipeline.assemble,
        settings.pipeline.clone(),
        shutdown,
    )
    .await;
    Ok(())
}
