//! The assemble stage: when every wanted file of a meeting is staged, write its manifest (and,
//! where enabled, one joined MP4 per view), then hand the meeting to upload.
//!
//! Download tells assemble only when a file completes the meeting, so a meeting is assembled
//! once (a few times when its last files finish together), not once per file. A later
//! `recording.transcript_completed` or a repeated `recording.completed` adds wanted files and
//! assembles again: the new manifest replaces the old one. Two assemblers racing on one meeting
//! write the same manifest.
//!
//! - [`media`]: ffmpeg and ffprobe runs (bounded, output captured) and the checks on what they
//!   report.
//! - [`join`]: one view's join, idempotent and safe beside upload (docs/media.md).
//!
//! With `verify_media`, every MP4 and M4A the manifest adds is checked with ffprobe before the
//! manifest is written — that is when a file counts as archived: upload places, and cleanup
//! deletes at Zoom, only what a manifest lists. A broken file fails the assembly (retried: the
//! check may have met a passing fault); on the last attempt it is recorded as given up on
//! (`media_broken`), the meeting is assembled again without it, and it stays at Zoom.

pub mod join;
pub mod media;

use std::collections::{BTreeMap, HashSet};

use join::{Joiner, Outcome};
use media::{Deadline, Probed, Tools};
use relay_core::consumer::{Context, Stage};
use relay_core::failure::{Code, StageError};
use relay_core::status::{State, Transition};
use relay_pipeline::manifest::{
    FailedFile, Join, JoinOutcome, Manifest, ManifestFile, MeetingMeta, StagedFile, WantedFile,
};
use relay_pipeline::messages::{AssembleTask, UploadTask};
use relay_pipeline::staging::{MeetingStaging, StagingKey};
use relay_pipeline::{Account, Shared, StartError};
use relay_storage::names::component;
use serde_json::json;
use tracing::{info, warn};
use zoom_api::model::FileType;

pub struct Assemble {
    shared: Shared,
    tools: Tools,
}

/// Whether `program -version` runs.
fn runs(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("-version")
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|output| output.status.success())
}

impl Assemble {
    /// Refuses to start when an account joins or checks media but ffmpeg or ffprobe does not
    /// run, or staging is not a local directory (they read files).
    pub fn new(shared: &Shared) -> Result<Self, StartError> {
        let settings = &shared.settings;
        let requirement = |account: &Account, what: String| {
            StartError::Requirement(format!("account `{}` has {what}", account.settings.name))
        };
        for account in shared.accounts.iter() {
            let wants = [
                ("concat_media", account.settings.concat_media),
                ("verify_media", account.settings.verify_media),
            ];
            let Some((key, _)) = wants.iter().find(|(_, on)| *on) else {
                continue;
            };
            if account.settings.concat_media && !runs(&settings.ffmpeg) {
                return Err(requirement(
                    account,
                    format!(
                        "concat_media = true but `{}` does not run (Debian: apt-get install ffmpeg, or set pipeline.ffmpeg)",
                        settings.ffmpeg
                    ),
                ));
            }
            if !runs(&settings.ffprobe) {
                return Err(requirement(
                    account,
                    format!(
                        "{key} = true but `{}` does not run (Debian: apt-get install ffmpeg, which has ffprobe, or set pipeline.ffprobe)",
                        settings.ffprobe
                    ),
                ));
            }
            if !shared.staging.location.is_local() {
                return Err(requirement(
                    account,
                    format!("{key} = true, which needs pipeline.staging to be a file:// directory"),
                ));
            }
        }
        Ok(Self {
            shared: shared.clone(),
            tools: Tools {
                ffmpeg: settings.ffmpeg.clone(),
                ffprobe: settings.ffprobe.clone(),
            },
        })
    }

    /// `verify_media`: the MP4 and M4A files this manifest adds that are not sound media, with
    /// why. Files of the previous manifest were checked when it was written (and may be
    /// uploaded and gone from staging since).
    async fn check_media(
        &self,
        staging: &MeetingStaging<'_>,
        manifest: &Manifest,
        previous: Option<&Manifest>,
        deadline: Deadline,
    ) -> Result<Vec<(ManifestFile, String)>, StageError> {
        let known: HashSet<&str> = previous
            .into_iter()
            .flat_map(Manifest::files)
            .map(|file| file.file_id.as_str())
            .collect();
        let media = [FileType::Mp4.as_str(), FileType::M4a.as_str()];
        let mut broken = Vec::new();
        for file in manifest.files() {
            if !media.contains(&file.file_type.as_str()) || known.contains(file.file_id.as_str()) {
                continue;
            }
            let Some(path) = staging.local_path(StagingKey::Data {
                file_id: &file.file_id,
            }) else {
                return Err(StageError::new(
                    Code::StorageInvalid,
                    "verify_media needs a file:// staging",
                ));
            };
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            if !path.exists() {
                // Not staged: upload says so (`staged_file_missing`).
                continue;
            }
            let started = std::time::Instant::now();
            let verdict = match self
                .tools
                .probe(dir, &name.to_string_lossy(), deadline)
                .await
            {
                Ok(Probed::Media(probe)) => media::integrity(&probe).err(),
                Ok(Probed::Unreadable(why)) => Some(format!("not readable media: {why}")),
                // ffprobe itself failed, not the file: retried, never held against the file.
                Err(error) => {
                    return Err(StageError::new(
                        Code::StorageFailed,
                        format!("checking {}: {error}", file.file_id),
                    ));
                }
            };
            info!(
                file_id = %file.file_id,
                sound = verdict.is_none(),
                seconds = started.elapsed().as_secs_f64(),
                "media checked"
            );
            if let Some(why) = verdict {
                broken.push((file.clone(), why));
            }
        }
        Ok(broken)
    }

    /// The error for broken media; on the last attempt, first records each broken file as given
    /// up on and asks for the meeting to be assembled again without them, so the rest of it
    /// lands and they stay at Zoom, listed as missing.
    async fn give_up_broken(
        &self,
        staging: &MeetingStaging<'_>,
        uuid: &str,
        broken: Vec<(ManifestFile, String)>,
        context: &Context,
    ) -> StageError {
        let reason = broken
            .iter()
            .map(|(file, why)| {
                let view = file.view.as_deref().unwrap_or("no view");
                format!("{} ({}, {view}): {why}", file.file_id, file.file_type)
            })
            .collect::<Vec<_>>()
            .join("; ");
        warn!(files = broken.len(), %reason, "media check failed");
        if context.attempt() < self.shared.settings.max_attempts {
            return StageError::new(Code::MediaBroken, reason);
        }
        let given_up = async {
            for (file, why) in &broken {
                let record = FailedFile {
                    file_id: file.file_id.clone(),
                    code: Code::MediaBroken.as_str().to_owned(),
                    reason: why.clone(),
                    failed_at: chrono::Utc::now(),
                };
                let key = staging.path(StagingKey::Failed {
                    file_id: &file.file_id,
                })?;
                staging.location().put_json(&key, &record).await?;
            }
            let first = broken.first().map(|(file, _)| file.file_id.clone());
            context
                .send(&AssembleTask {
                    meeting_uuid: uuid.to_owned(),
                    staged_file: first.unwrap_or_default(),
                })
                .await
        };
        match given_up.await {
            Ok(()) => StageError::new(Code::MediaBroken, reason),
            // Not recorded: that failure is what the message reports.
            Err(error) => error,
        }
    }

    /// Joins each view's MP4 segments (docs/media.md) into `manifest.concatenated`, saying in
    /// `manifest.joins` what became of each view. A join that cannot be made never holds the
    /// segments back.
    async fn concatenate(
        &self,
        staging: &MeetingStaging<'_>,
        manifest: &mut Manifest,
        previous: Option<&Manifest>,
        reencode: bool,
        deadline: Deadline,
    ) -> Result<(), StageError> {
        let mut by_view: BTreeMap<String, Vec<ManifestFile>> = BTreeMap::new();
        for segment in &manifest.segments {
            for file in segment
                .files
                .iter()
                .filter(|f| f.file_type == FileType::Mp4.as_str())
            {
                by_view
                    .entry(file.view.clone().unwrap_or_default())
                    .or_default()
                    .push(file.clone());
            }
        }
        let joiner = Joiner {
            tools: &self.tools,
            staging,
            deadline,
            stale_after: self.shared.settings.media_timeout * 2,
        };
        let dir = manifest
            .manifest_path
            .trim_end_matches("meeting.json")
            .to_owned();
        // Never the key of one of the meeting's own files (a file template could name one
        // `{view}-full.mp4`).
        let mut taken: HashSet<String> = manifest.files().map(|file| file.path.clone()).collect();
        let (mut joined, mut joins) = (Vec::new(), Vec::new());
        for (view, parts) in by_view.into_iter().filter(|(_, parts)| parts.len() > 1) {
            let parts: Vec<&ManifestFile> = parts.iter().collect();
            let segments: Vec<String> = parts.iter().map(|part| part.file_id.clone()).collect();
            let earlier = previous.and_then(|m| {
                m.concatenated
                    .iter()
                    .find(|f| f.view.as_deref() == Some(view.as_str()))
            });
            let earlier_note = previous.and_then(|m| m.joins.iter().find(|join| join.view == view));
            let record = match joiner.join(&view, &parts, reencode).await? {
                Outcome::Joined(record) => record,
                Outcome::Skipped { method, mut reason } => {
                    warn!(view, %reason, "join skipped; the segments are archived as they are");
                    if let Some(earlier) = earlier {
                        // A join of fewer segments made before stays what it was.
                        reason.push_str("; the file joined earlier stays");
                        taken.insert(earlier.path.clone());
                        joined.push(earlier.clone());
                    }
                    joins.push(Join {
                        view: view.clone(),
                        outcome: JoinOutcome::Skipped,
                        method,
                        segments,
                        file_id: None,
                        duration_seconds: None,
                        reason: Some(reason),
                    });
                    continue;
                }
                Outcome::SegmentsGone => {
                    // Uploaded before any join of them was recorded: what was said stands.
                    if let Some(earlier) = earlier {
                        taken.insert(earlier.path.clone());
                        joined.push(earlier.clone());
                    }
                    joins.push(earlier_note.cloned().unwrap_or(Join {
                        view: view.clone(),
                        outcome: JoinOutcome::Skipped,
                        method: None,
                        segments,
                        file_id: None,
                        duration_seconds: None,
                        reason: Some(
                            "the segments were archived before they could be joined".into(),
                        ),
                    }));
                    continue;
                }
            };
            let file_id = format!("concat-{view}");
            // The earlier join's key, if it holds these bytes; never over other bytes there.
            let mut path = match earlier {
                Some(earlier) if earlier.sha256 == record.sha256 => earlier.path.clone(),
                Some(earlier) => {
                    taken.insert(earlier.path.clone());
                    format!("{dir}{}-full.mp4", component(&view))
                }
                None => format!("{dir}{}-full.mp4", component(&view)),
            };
            while taken.contains(&path) {
                path = format!("{}-joined.mp4", path.trim_end_matches(".mp4"));
            }
            taken.insert(path.clone());
            joined.push(ManifestFile {
                file_id: file_id.clone(),
                file_type: FileType::Mp4.as_str().into(),
                view: Some(view.clone()),
                file_name: None,
                start: parts.first().and_then(|p| p.start.clone()),
                end: parts.last().and_then(|p| p.end.clone()),
                size: record.size,
                sha256: record.sha256.clone(),
                listed_size: None,
                path,
            });
            joins.push(Join {
                view: view.clone(),
                outcome: JoinOutcome::Joined,
                method: Some(record.method),
                segments: record.segments.clone(),
                file_id: Some(file_id),
                duration_seconds: Some(record.duration_seconds),
                reason: record.reason.clone(),
            });
        }
        manifest.concatenated = joined;
        manifest.joins = joins;
        Ok(())
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
        let failed: Vec<FailedFile> = location
            .list_json(&staging.path(StagingKey::FilesDir)?, ".failed.json")
            .await?;
        // A file given up on as broken media stays out though its download completed (a
        // download replayed since removed the record).
        let broken: HashSet<&str> = failed
            .iter()
            .filter(|record| record.code == Code::MediaBroken.as_str())
            .map(|record| record.file_id.as_str())
            .collect();
        let staged: BTreeMap<String, StagedFile> = location
            .list_json::<StagedFile>(&staging.path(StagingKey::FilesDir)?, ".done.json")
            .await?
            .into_iter()
            .filter(|record| !broken.contains(record.file_id.as_str()))
            .map(|record| (record.file_id.clone(), record))
            .collect();
        let failed: BTreeMap<String, FailedFile> = failed
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
        if !account.settings.metadata.is_empty() {
            // Fetched once: an assembly done again keeps what the first one found.
            manifest.metadata = match previous.as_ref().and_then(|p| p.metadata.clone()) {
                Some(kept) if kept.unavailable.is_empty() => Some(kept),
                _ => Some(
                    relay_pipeline::metadata::fetch(
                        account,
                        &relay_pipeline::metadata::Subject {
                            uuid: &manifest.meeting_uuid,
                            meeting_id: manifest.meeting_id,
                            webinar: manifest.kind == "webinar",
                        },
                    )
                    .await,
                ),
            };
        }
        // One budget for every ffmpeg and ffprobe run of this delivery.
        let deadline = Deadline::after(self.shared.settings.media_timeout);
        if account.settings.verify_media {
            let broken = self
                .check_media(&staging, &manifest, previous.as_ref(), deadline)
                .await?;
            if !broken.is_empty() {
                return Err(self.give_up_broken(&staging, uuid, broken, context).await);
            }
        }
        if account.settings.concat_media {
            self.concatenate(
                &staging,
                &mut manifest,
                previous.as_ref(),
                account.settings.concat_reencode,
                deadline,
            )
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
