//! The cleanup stage: deletes cloud recordings at Zoom once they are verified at the destination,
//! for accounts with `delete_after_upload`, after `delete_after_days`.
//!
//! Deletion is file by file, never the whole meeting: a meeting-wide DELETE would also remove a
//! file that appeared after the listing and was never archived. A file is deleted only when Zoom
//! still lists it with the id and the size the manifest recorded, and the destination holds it
//! with its size. A replayed event deletes nothing unless its replay was started with
//! `--allow-delete` (the binding says so), whatever the account's configuration.
//!
//! What counts as verified is what upload recorded for the manifest (`verified/{digest}`: each
//! file's key, size and the store's version tag), checked again at the destination now: a file
//! replaced there since, or missing, is kept at Zoom.
//!
//! A claim per manifest (`cleanup/{digest}`, created only if absent) makes the deletion happen
//! once even when duplicates run concurrently; a later manifest (a transcript added) has its own
//! claim, so its new files are deleted too. A claim left by a crashed worker is taken over after
//! [`CLAIM_STALE_AFTER`]. Every outcome is an audit log line (target `audit`) saying what was
//! deleted, what was kept and why.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use relay_core::consumer::{Context, Stage};
use relay_core::failure::{Code, StageError};
use relay_core::status::{State, Transition};
use relay_pipeline::manifest::{Manifest, ManifestFile, VerifiedUpload};
use relay_pipeline::messages::CleanupTask;
use relay_pipeline::staging::StagingKey;
use relay_pipeline::{Account, DeleteAfterUpload, Shared};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;
use zoom_api::ZoomError;
use zoom_api::client::DeleteAction;
use zoom_api::model::MeetingRecordings;

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

/// What cleanup decided for one meeting, file by file.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Zoom file ids to delete.
    pub delete: Vec<String>,
    /// Files Zoom lists that stay, with why.
    pub keep: Vec<(String, &'static str)>,
}

/// Which of the files Zoom lists now may be deleted: those the manifest holds with the same id
/// and the same listed size, verified at the destination. Pure: table-tested below.
pub fn decide(listed: &MeetingRecordings, manifest: &Manifest, verified: &[&str]) -> Decision {
    let archived: HashMap<&str, &ManifestFile> = manifest
        .files()
        .map(|file| (file.file_id.as_str(), file))
        .collect();
    let mut decision = Decision::default();
    for file in listed.all_files() {
        let Some(id) = file.id.as_deref() else {
            decision
                .keep
                .push(("(processing)".into(), "still processing at Zoom"));
            continue;
        };
        let reason = match archived.get(id) {
            _ if !file.has_zoom_id() => Some("Zoom gave it no id to delete it by"),
            None => Some("not archived (filtered out, or new since the upload)"),
            Some(_) if !file.is_completed() => Some("still processing at Zoom"),
            Some(archived)
                if archived.listed_size.is_none() || archived.listed_size != file.file_size =>
            {
                Some("Zoom lists another size than the one archived")
            }
            Some(_) if !verified.contains(&id) => Some("not verified at the destination"),
            Some(_) => None,
        };
        match reason {
            Some(reason) => decision.keep.push((id.to_owned(), reason)),
            None => decision.delete.push(id.to_owned()),
        }
    }
    decision
}

pub struct Cleanup {
    shared: Shared,
}

impl Cleanup {
    pub fn new(shared: &Shared) -> Self {
        Self {
            shared: shared.clone(),
        }
    }

    /// The manifest's files that are at the destination exactly as upload verified them: the
    /// same key, size and version tag.
    async fn verified(
        &self,
        account: &Account,
        manifest: &Manifest,
        upload: &VerifiedUpload,
    ) -> Result<Vec<String>, StageError> {
        let destination = account.destination_for(&manifest.kind);
        if destination
            .exists_with_size(&destination.path(&manifest.manifest_path)?)
            .await?
            .is_none()
        {
            return Err(StageError::new(
                Code::NotVerified,
                "the manifest is not at the destination yet",
            ));
        }
        let mut verified = Vec::new();
        for file in manifest.files() {
            let Some(record) = upload.files.get(&file.file_id) else {
                continue;
            };
            let path = destination.path(&record.path)?;
            let meta = match destination.head(&path).await {
                Ok(meta) => meta,
                Err(relay_storage::StorageError::Store(object_store::Error::NotFound {
                    ..
                })) => {
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let same_version = match (&record.e_tag, &meta.e_tag) {
                (Some(then), Some(now)) => then == now,
                _ => true,
            };
            if record.path == file.path && meta.size == file.size && same_version {
                verified.push(file.file_id.clone());
            }
        }
        Ok(verified)
    }
}

impl Stage for Cleanup {
    type Input = CleanupTask;

    async fn handle(&self, task: CleanupTask, context: &Context) -> Result<(), StageError> {
        let binding = context.binding();
        let account = self.shared.accounts.resolve(binding)?;
        let uuid = task.meeting_uuid.as_str();
        let action = match account.settings.delete_after_upload {
            DeleteAfterUpload::Off => return Ok(()),
            DeleteAfterUpload::Trash => DeleteAction::Trash,
            DeleteAfterUpload::Delete => DeleteAction::Delete,
        };
        if !binding.may_delete() {
            info!(
                target: "audit",
                account = account.name(),
                meeting_uuid = uuid,
                replay_job = binding.replay_job,
                "kept at Zoom: a replayed event deletes only with --allow-delete"
            );
            // Cleanup is done with it all the same: status must not show it waiting here.
            return context
                .record(
                    Transition::new(binding, uuid, State::Uploaded, "cleanup").detail(json!({
                        "deleted": [], "kept": [], "listed": true,
                        "reason": "a replayed event deletes only with --allow-delete",
                    })),
                )
                .await;
        }
        let due = task.uploaded_at + TimeDelta::days(i64::from(account.settings.delete_after_days));
        let now = Utc::now();
        if now < due {
            return Err(StageError::wait(
                Code::Waiting,
                "the account's grace period before deletion",
                (due - now).to_std().unwrap_or_default(),
            ));
        }
        let staging = self.shared.staging.meeting(account.name(), uuid);
        let location = staging.location();
        let manifest: Manifest = location
            .get_json(&staging.path(StagingKey::Manifest)?)
            .await?
            .ok_or_else(|| {
                StageError::new(
                    Code::NoManifest,
                    "no manifest: nothing is known to be uploaded",
                )
            })?;
        let digest = task.manifest_digest.as_str();
        let upload: VerifiedUpload = location
            .get_json(&staging.path(StagingKey::Verified { digest })?)
            .await?
            .ok_or_else(|| {
                StageError::new(
                    Code::NotVerified,
                    "upload recorded no verification for this manifest",
                )
            })?;
        let verified = self.verified(account, &manifest, &upload).await?;

        let claim_path = staging.path(StagingKey::CleanupClaim { digest })?;
        let owner = format!(
            "{}-{}",
            relay_core::status::process_name(),
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
                location.delete(&claim_path).await?;
            }
            if !stale || !location.create_json(&claim_path, &claim).await? {
                return Err(StageError::wait(
                    Code::Waiting,
                    "another worker is deleting this meeting",
                    Duration::from_secs(30),
                ));
            }
        }

        let outcome = async {
            let listed = match account.zoom.meeting_recordings(uuid, false).await {
                Ok(listed) => listed,
                Err(ZoomError::NotFound { .. }) => return Ok(None),
                Err(error) => return Err(StageError::from(error)),
            };
            let verified: Vec<&str> = verified.iter().map(String::as_str).collect();
            let decision = decide(&listed, &manifest, &verified);
            for id in &decision.delete {
                account.zoom.delete_recording_file(uuid, id, action).await?;
            }
            Ok(Some(decision))
        }
        .await;
        let decision = match outcome {
            Ok(decision) => decision,
            Err(error) => {
                // Release our claim: the next attempt must not wait for a worker that gave up.
                let current: Option<Claim> = location.get_json(&claim_path).await.ok().flatten();
                if current.is_some_and(|current| current.owner == owner) {
                    let _ = location.delete(&claim_path).await;
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
        let detail = match &decision {
            None => {
                info!(
                    target: "audit",
                    account = account.name(),
                    meeting_uuid = uuid,
                    "nothing deleted: Zoom no longer lists this meeting's recording"
                );
                json!({ "action": action.as_str(), "deleted": [], "listed": false })
            }
            Some(decision) if decision.delete.is_empty() => {
                let kept: Vec<String> = decision
                    .keep
                    .iter()
                    .map(|(id, why)| format!("{id}: {why}"))
                    .collect();
                info!(
                    target: "audit",
                    account = account.name(),
                    meeting_uuid = uuid,
                    kept = ?kept,
                    "nothing deleted at Zoom: no listed file is archived and verified"
                );
                // Done, keeping everything: recorded so status does not show it waiting here.
                return context
                    .record(
                        Transition::new(binding, uuid, State::Uploaded, "cleanup").detail(json!({
                            "action": action.as_str(), "deleted": [], "kept": kept, "listed": true,
                            "reason": "no listed file is archived and verified",
                        })),
                    )
                    .await;
            }
            Some(decision) => {
                let kept: Vec<String> = decision
                    .keep
                    .iter()
                    .map(|(id, why)| format!("{id}: {why}"))
                    .collect();
                info!(
                    target: "audit",
                    account = account.name(),
                    meeting_uuid = uuid,
                    action = action.as_str(),
                    deleted = ?decision.delete,
                    kept = ?kept,
                    "deleted {} of the meeting's files at Zoom, kept {}",
                    decision.delete.len(),
                    decision.keep.len()
                );
                json!({ "action": action.as_str(), "deleted": decision.delete, "kept": kept, "listed": true })
            }
        };
        context
            .record(Transition::new(binding, uuid, State::Deleted, "cleanup").detail(detail))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoom_api::model::{FileType, RecordingFile};

    fn listed(files: &[(&str, u64)]) -> MeetingRecordings {
        MeetingRecordings {
            uuid: "u==".into(),
            recording_files: files
                .iter()
                .map(|(id, size)| RecordingFile {
                    id: Some((*id).into()),
                    file_type: FileType::Mp4,
                    file_size: Some(*size),
                    status: Some("completed".into()),
                    ..RecordingFile::default()
                })
                .collect(),
            ..MeetingRecordings::default()
        }
    }

    fn manifest(files: &[(&str, u64)]) -> Manifest {
        let mut manifest: Manifest = serde_json::from_value(json!({
            "account": "acme", "account_id": "A", "meeting_uuid": "u==", "meeting_id": null,
            "topic": "t", "kind": "meeting", "type": 2, "host_id": null, "host_email": null,
            "start_time": null, "timezone": null, "duration_minutes": null, "recorded_seconds": 0,
            "auto_delete_date": null, "segments": [], "transcripts": [], "captions": [], "chat": [],
            "participant_audio": [], "other": [], "concatenated": [], "total_bytes": 0,
            "source_events": [], "manifest_path": "m/meeting.json"
        }))
        .expect("manifest");
        manifest.other = files
            .iter()
            .map(|(id, size)| ManifestFile {
                file_id: (*id).into(),
                file_type: "MP4".into(),
                view: None,
                file_name: None,
                start: None,
                end: None,
                size: *size,
                sha256: "x".into(),
                listed_size: Some(*size),
                path: format!("m/{id}.mp4"),
            })
            .collect();
        manifest
    }

    #[test]
    fn deletes_only_files_archived_with_the_same_id_and_size() {
        let decision = decide(
            &listed(&[("a", 10), ("b", 20), ("new", 5), ("grown", 31)]),
            &manifest(&[("a", 10), ("b", 20), ("grown", 30)]),
            &["a", "b", "grown"],
        );
        assert_eq!(decision.delete, vec!["a".to_owned(), "b".to_owned()]);
        let kept: Vec<&str> = decision.keep.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(kept, vec!["new", "grown"]);
    }

    #[test]
    fn keeps_what_is_not_verified_at_the_destination() {
        let decision = decide(&listed(&[("a", 10)]), &manifest(&[("a", 10)]), &[]);
        assert!(decision.delete.is_empty());
        assert_eq!(decision.keep[0].1, "not verified at the destination");
    }

    #[test]
    fn a_file_without_a_zoom_id_is_never_deleted_by_a_made_up_one() {
        let mut zoom = listed(&[]);
        let mut timeline = RecordingFile {
            file_type: FileType::Timeline,
            download_url: Some(zoom_api::model::Sensitive::new("https://zoom.us/x")),
            ..RecordingFile::default()
        };
        timeline.recording_start = Some("2019-07-23T22:14:57Z".into());
        zoom.recording_files.push(timeline);
        zoom.normalize();
        let id = zoom.recording_files[0].id.clone().expect("derived");
        let decision = decide(&zoom, &manifest(&[(&id, 0)]), &[&id]);
        assert!(decision.delete.is_empty(), "{decision:?}");
    }
}
