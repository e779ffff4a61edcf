//! `meeting.json`: one document describing a meeting's recording as it landed at the destination.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zoom_api::EventName;
use zoom_api::model::{FileType, MeetingRecordings, RecordingFile};

use crate::paths::{PathTemplates, TemplateError, segment_numbers};
use crate::settings::AccountSettings;

/// What plan records for every file it wants (no download URL: that is a credential).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WantedFile {
    pub file: RecordingFile,
    pub participant: bool,
}

/// What download records once a file is complete in staging.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedFile {
    pub file_id: String,
    pub size: u64,
    pub sha256: String,
    pub staged_at: DateTime<Utc>,
}

/// What download records when it gives a file up (its task is dead-lettered): the meeting is
/// assembled and uploaded without it, and the manifest says what is missing and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedFile {
    pub file_id: String,
    pub code: String,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
}

/// A file the manifest lacks: Zoom has it, the relay could not fetch it. It stays at Zoom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissingFile {
    pub file_id: String,
    pub file_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// The failure code (docs/failures.md) and its reason.
    pub code: String,
    pub reason: String,
}

/// What upload verified at the destination for one manifest: what cleanup checks again before
/// it deletes anything at Zoom.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifiedUpload {
    pub manifest_path: String,
    pub files: BTreeMap<String, VerifiedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedFile {
    pub path: String,
    pub size: u64,
    /// The store's version tag when verified: a replaced object has another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

/// The meeting as one event described it, for the manifest's meeting fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeetingMeta {
    pub event: String,
    pub event_id: String,
    pub event_ts: i64,
    pub meeting: MeetingRecordings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub file_id: String,
    pub file_type: String,
    /// Zoom's `recording_type`: the view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    pub size: u64,
    pub sha256: String,
    /// The size Zoom listed for the file when it was planned. Cleanup deletes a file at Zoom
    /// only while Zoom still lists it with this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_size: Option<u64>,
    /// The key at the destination, relative to its root, exactly as written.
    pub path: String,
}

/// One view's join (`concat_media`), as the manifest tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Join {
    /// Zoom's `recording_type`.
    pub view: String,
    pub outcome: JoinOutcome,
    /// How the segments were (or would have been) joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<JoinMethod>,
    /// The segments' file ids, in order.
    pub segments: Vec<String>,
    /// The joined file's `file_id` in `concatenated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// The joined file's duration as ffprobe reads it, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Why it was skipped, or re-encoded: the differing stream parameters, ffmpeg's error, a
    /// failed verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinOutcome {
    /// Joined and verified: listed in `concatenated`.
    Joined,
    /// Not joined: the view's segments are the recording.
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinMethod {
    /// ffmpeg's concat demuxer, streams copied: the segments' own bytes, no quality loss.
    Copy,
    /// Decoded and encoded again (H.264/AAC), because the segments' streams differ.
    Reencode,
}

/// One change Zoom told of a recording already described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// `recording.renamed`, `recording.trashed`, `recording.batch_trashed`, …
    pub event: String,
    /// When Zoom sent it (`event_ts`).
    pub at: DateTime<Utc>,
    /// For a rename: the new topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub index: u32,
    pub start: Option<String>,
    pub end: Option<String>,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub account: String,
    pub account_id: Option<String>,
    pub meeting_uuid: String,
    pub meeting_id: Option<u64>,
    pub topic: String,
    /// `meeting` or `webinar`.
    pub kind: String,
    #[serde(rename = "type")]
    pub meeting_type: Option<u8>,
    pub host_id: Option<String>,
    pub host_email: Option<String>,
    /// Who owns it at the destination (the account's `owner` rule over the host's email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub start_time: Option<String>,
    pub timezone: Option<String>,
    /// Zoom's `duration`, minutes.
    pub duration_minutes: Option<u32>,
    /// Sum of the segments' lengths, seconds.
    pub recorded_seconds: i64,
    pub auto_delete_date: Option<String>,
    pub segments: Vec<Segment>,
    pub transcripts: Vec<ManifestFile>,
    pub captions: Vec<ManifestFile>,
    pub chat: Vec<ManifestFile>,
    pub participant_audio: Vec<ManifestFile>,
    pub other: Vec<ManifestFile>,
    /// One file per view joined from all segments (ffmpeg), when enabled: only joins that
    /// were verified against their segments (docs/media.md).
    pub concatenated: Vec<ManifestFile>,
    /// What became of each view's join: joined (how), or skipped and why. The segments are
    /// archived either way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joins: Vec<Join>,
    /// Files Zoom has that could not be archived, with why. They stay at Zoom.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingFile>,
    /// What happened to the recording at Zoom after it was described: renamed (the new
    /// topic), trashed, recovered, deleted — by Zoom's events, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<Update>,
    /// What the account's `metadata` setting fetched beside the recording: participants,
    /// panelists, past instances, summary, Q&A, and which could not be fetched (and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<crate::metadata::Enrichment>,
    pub total_bytes: u64,
    pub source_events: Vec<String>,
    /// Where this manifest goes, relative to the destination's root: beside the files.
    pub manifest_path: String,
}

impl Manifest {
    /// Every file that must be at the destination, concatenations included.
    pub fn files(&self) -> impl Iterator<Item = &ManifestFile> {
        self.segments
            .iter()
            .flat_map(|segment| segment.files.iter())
            .chain(&self.transcripts)
            .chain(&self.captions)
            .chain(&self.chat)
            .chain(&self.participant_audio)
            .chain(&self.other)
            .chain(&self.concatenated)
    }

    /// What this manifest asks the destination to hold: every file's id, digest and path, and
    /// the manifest's own path. Two manifests with the same digest need one upload.
    pub fn content_digest(&self) -> String {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut files: Vec<&ManifestFile> = self.files().collect();
        files.sort_by(|a, b| a.file_id.cmp(&b.file_id));
        for file in files {
            for part in [&file.file_id, &file.sha256, &file.path] {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
        }
        for missing in &self.missing {
            hasher.update(missing.file_id.as_bytes());
            hasher.update(missing.code.as_bytes());
        }
        for update in &self.updates {
            hasher.update(update.event.as_bytes());
            hasher.update(update.at.to_rfc3339().as_bytes());
        }
        hasher.update(self.manifest_path.as_bytes());
        hasher.update(self.topic.as_bytes());
        hex::encode(hasher.finalize())
    }

    /// Builds the manifest from the latest meeting description, every wanted file and its staged
    /// record, or its failure. The caller checked every wanted file is staged or failed.
    ///
    /// `previous`, the manifest written before for this meeting, pins its files' paths and its
    /// folder: what is at the destination never moves.
    pub fn build(
        account: &AccountSettings,
        templates: &PathTemplates,
        metas: &[MeetingMeta],
        wanted: &[WantedFile],
        staged: &BTreeMap<String, StagedFile>,
        failed: &BTreeMap<String, FailedFile>,
        previous: Option<&Manifest>,
    ) -> Result<(Self, MeetingRecordings), TemplateError> {
        let brings_files = |meta: &&MeetingMeta| {
            EventName::parse(&meta.event)
                .is_some_and(|event| EventName::RECORDINGS.contains(&event))
        };
        let newest = metas.iter().filter(brings_files).max_by_key(|meta| {
            let completed = meta.event == EventName::RecordingCompleted.as_str();
            (completed, meta.event_ts)
        });
        let mut latest = newest.map(|meta| meta.meeting.clone()).unwrap_or_default();
        // What happened to the recording at Zoom since (renamed, trashed, recovered, deleted),
        // oldest first. A rename newer than the description changes the topic, not the paths:
        // what is at the destination never moves.
        let mut changes: Vec<&MeetingMeta> = metas.iter().filter(|m| !brings_files(m)).collect();
        changes.sort_by_key(|meta| (meta.event_ts, meta.event_id.clone()));
        let described_at = newest.map(|meta| meta.event_ts).unwrap_or_default();
        if let Some(renamed) = changes.iter().rev().find(|meta| {
            meta.event == EventName::RecordingRenamed.as_str() && meta.event_ts >= described_at
        }) {
            latest.topic = renamed.meeting.topic.clone();
        }
        let updates: Vec<Update> = changes
            .iter()
            .map(|meta| Update {
                event: meta.event.clone(),
                at: DateTime::from_timestamp_millis(meta.event_ts).unwrap_or_default(),
                topic: (meta.event == EventName::RecordingRenamed.as_str())
                    .then(|| meta.meeting.topic.clone()),
            })
            .collect();
        let mut source_events: Vec<String> =
            metas.iter().map(|meta| meta.event_id.clone()).collect();
        source_events.sort();
        source_events.dedup();
        let files: Vec<(RecordingFile, bool)> = wanted
            .iter()
            .map(|w| (w.file.clone(), w.participant))
            .collect();
        let pinned: std::collections::HashMap<String, String> = previous
            .into_iter()
            .flat_map(|manifest| manifest.files())
            .map(|file| (file.file_id.clone(), file.path.clone()))
            .collect();
        let dir = previous.map(|manifest| {
            manifest
                .manifest_path
                .trim_end_matches("/meeting.json")
                .to_owned()
        });
        let paths = templates.assign(&latest, &files, dir.as_deref(), &pinned)?;
        let segments_of =
            segment_numbers(wanted.iter().filter(|w| !w.participant).map(|w| &w.file));

        let entry = |file: &RecordingFile| -> Option<ManifestFile> {
            let id = file.id.clone()?;
            let record = staged.get(&id)?;
            Some(ManifestFile {
                file_id: id.clone(),
                file_type: file.file_type.as_str().to_owned(),
                view: file.recording_type.clone(),
                file_name: file.file_name.clone(),
                start: file.recording_start.clone(),
                end: file.recording_end.clone(),
                size: record.size,
                sha256: record.sha256.clone(),
                listed_size: file.file_size,
                path: paths.get(&id)?.clone(),
            })
        };
        let mut segments: BTreeMap<u32, Segment> = BTreeMap::new();
        let mut manifest = Manifest {
            account: account.name.clone(),
            account_id: Some(account.account_id.clone()),
            meeting_uuid: latest.uuid.clone(),
            meeting_id: latest.id,
            topic: latest.topic.clone(),
            kind: if latest.is_webinar() {
                "webinar"
            } else {
                "meeting"
            }
            .into(),
            meeting_type: latest.meeting_type,
            host_id: latest.host_id.clone(),
            host_email: latest.host_email.clone(),
            owner: Some(account.owner.owner_of(latest.host_email.as_deref())),
            start_time: latest.start_time.clone(),
            timezone: latest.timezone.clone(),
            duration_minutes: latest.duration,
            recorded_seconds: 0,
            auto_delete_date: latest.auto_delete_date.clone(),
            segments: Vec::new(),
            transcripts: Vec::new(),
            captions: Vec::new(),
            chat: Vec::new(),
            participant_audio: Vec::new(),
            other: Vec::new(),
            concatenated: Vec::new(),
            joins: Vec::new(),
            missing: Vec::new(),
            updates,
            metadata: None,
            total_bytes: 0,
            source_events,
            manifest_path: match &dir {
                Some(dir) => format!("{dir}/meeting.json"),
                None => format!("{}/meeting.json", templates.meeting_dir(&latest)?),
            },
        };
        let mut sorted: Vec<&WantedFile> = wanted.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.file.recording_start, &a.file.recording_type, &a.file.id).cmp(&(
                &b.file.recording_start,
                &b.file.recording_type,
                &b.file.id,
            ))
        });
        for wanted in sorted {
            let Some(entry) = entry(&wanted.file) else {
                let failure = wanted.file.id.as_ref().and_then(|id| failed.get(id));
                if let Some(failure) = failure {
                    manifest.missing.push(MissingFile {
                        file_id: failure.file_id.clone(),
                        file_type: wanted.file.file_type.as_str().to_owned(),
                        view: wanted.file.recording_type.clone(),
                        code: failure.code.clone(),
                        reason: failure.reason.clone(),
                    });
                }
                continue;
            };
            manifest.total_bytes += entry.size;
            if wanted.participant {
                manifest.participant_audio.push(entry);
                continue;
            }
            match wanted.file.file_type {
                FileType::Transcript => manifest.transcripts.push(entry),
                FileType::Cc => manifest.captions.push(entry),
                FileType::Chat | FileType::ChatMessage => manifest.chat.push(entry),
                FileType::Mp4 | FileType::M4a => {
                    let index = wanted
                        .file
                        .id
                        .as_ref()
                        .and_then(|id| segments_of.get(id))
                        .copied()
                        .unwrap_or(1);
                    let segment = segments.entry(index).or_insert_with(|| Segment {
                        index,
                        start: wanted.file.recording_start.clone(),
                        end: wanted.file.recording_end.clone(),
                        files: Vec::new(),
                    });
                    if wanted.file.recording_end > segment.end {
                        segment.end = wanted.file.recording_end.clone();
                    }
                    segment.files.push(entry);
                }
                _ => manifest.other.push(entry),
            }
        }
        let parse = |time: &Option<String>| {
            time.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        };
        manifest.recorded_seconds = segments
            .values()
            .filter_map(|segment| {
                Some((parse(&segment.end)? - parse(&segment.start)?).num_seconds())
            })
            .sum();
        manifest.segments = segments.into_values().collect();
        Ok((manifest, latest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::PathTemplates;
    use zoom_api::model::FileType;

    fn account() -> AccountSettings {
        #[derive(Deserialize)]
        struct Holder {
            accounts: Vec<AccountSettings>,
        }
        let holder: Holder = toml::from_str(
            "[[accounts]]\nname='acme'\naccount_id='A'\nclient_id='c'\nclient_secret='s'\nsecret_tokens=['t']\n",
        )
        .expect("account");
        holder.accounts.into_iter().next().expect("one")
    }

    fn file(id: &str, file_type: FileType, start: &str, end: &str, view: &str) -> WantedFile {
        WantedFile {
            file: RecordingFile {
                id: Some(id.into()),
                file_type,
                recording_start: Some(start.into()),
                recording_end: Some(end.into()),
                recording_type: Some(view.into()),
                file_size: Some(100),
                ..RecordingFile::default()
            },
            participant: false,
        }
    }

    fn staged(ids: &[&str]) -> BTreeMap<String, StagedFile> {
        ids.iter()
            .map(|id| {
                (
                    id.to_string(),
                    StagedFile {
                        file_id: id.to_string(),
                        size: 100,
                        sha256: format!("sha-{id}"),
                        staged_at: Utc::now(),
                    },
                )
            })
            .collect()
    }

    fn meta(event: &str, ts: i64, topic: &str) -> MeetingMeta {
        MeetingMeta {
            event: event.into(),
            event_id: format!("{event}-{ts}"),
            event_ts: ts,
            meeting: MeetingRecordings {
                uuid: "u==".into(),
                topic: topic.into(),
                start_time: Some("2026-03-04T05:00:00Z".into()),
                host_email: Some("h@example.com".into()),
                ..MeetingRecordings::default()
            },
        }
    }

    #[test]
    fn segments_in_order_kinds_sorted_missing_files_said_and_seconds_summed() {
        let account = account();
        let templates = PathTemplates::new(&account).expect("templates");
        let mut audio = file(
            "pa",
            FileType::M4a,
            "2026-03-04T05:00:00Z",
            "2026-03-04T05:20:00Z",
            "audio_only_each_participant",
        );
        audio.participant = true;
        let wanted = vec![
            file(
                "v2",
                FileType::Mp4,
                "2026-03-04T06:00:00Z",
                "2026-03-04T06:10:00Z",
                "gallery_view",
            ),
            file(
                "v1",
                FileType::Mp4,
                "2026-03-04T05:00:00Z",
                "2026-03-04T05:20:00Z",
                "gallery_view",
            ),
            file(
                "t1",
                FileType::Transcript,
                "2026-03-04T05:00:00Z",
                "2026-03-04T05:20:00Z",
                "audio_transcript",
            ),
            file(
                "c1",
                FileType::Chat,
                "2026-03-04T05:00:00Z",
                "2026-03-04T05:20:00Z",
                "chat_file",
            ),
            audio,
        ];
        let failed: BTreeMap<String, FailedFile> = [(
            "c1".to_owned(),
            FailedFile {
                file_id: "c1".into(),
                code: "html_instead_of_file".into(),
                reason: "deleted at Zoom".into(),
                failed_at: Utc::now(),
            },
        )]
        .into();
        let metas = vec![
            meta("recording.transcript_completed", 20, "later topic"),
            meta("recording.completed", 10, "the topic"),
        ];
        let (manifest, _) = Manifest::build(
            &account,
            &templates,
            &metas,
            &wanted,
            &staged(&["v1", "v2", "t1", "pa"]),
            &failed,
            None,
        )
        .expect("manifest");
        assert_eq!(
            manifest.topic, "the topic",
            "recording.completed describes the meeting"
        );
        let segments: Vec<(u32, Vec<&str>)> = manifest
            .segments
            .iter()
            .map(|s| {
                (
                    s.index,
                    s.files.iter().map(|f| f.file_id.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(segments, vec![(1, vec!["v1"]), (2, vec!["v2"])]);
        assert_eq!(manifest.transcripts.len(), 1);
        assert_eq!(manifest.participant_audio.len(), 1);
        assert!(manifest.chat.is_empty());
        assert_eq!(manifest.missing.len(), 1);
        assert_eq!(manifest.missing[0].code, "html_instead_of_file");
        assert_eq!(manifest.recorded_seconds, 20 * 60 + 10 * 60);
        assert_eq!(manifest.total_bytes, 400);
        assert_eq!(manifest.files().count(), 4);
        assert!(manifest.files().all(|f| f.listed_size == Some(100)));
    }

    #[test]
    fn a_previous_manifest_pins_the_folder_and_the_paths_and_changes_the_digest_only_with_content()
    {
        let account = account();
        let templates = PathTemplates::new(&account).expect("templates");
        let one = vec![file(
            "v2",
            FileType::Mp4,
            "2026-03-04T06:00:00Z",
            "2026-03-04T06:10:00Z",
            "gallery_view",
        )];
        let metas = vec![meta("recording.completed", 10, "the topic")];
        let (first, _) = Manifest::build(
            &account,
            &templates,
            &metas,
            &one,
            &staged(&["v2"]),
            &BTreeMap::new(),
            None,
        )
        .expect("manifest");
        let again = Manifest::build(
            &account,
            &templates,
            &metas,
            &one,
            &staged(&["v2"]),
            &BTreeMap::new(),
            None,
        )
        .expect("manifest")
        .0;
        assert_eq!(first.content_digest(), again.content_digest());
        // A renamed topic and an earlier segment arrive later.
        let mut both = one.clone();
        both.push(file(
            "v1",
            FileType::Mp4,
            "2026-03-04T05:00:00Z",
            "2026-03-04T05:20:00Z",
            "gallery_view",
        ));
        let renamed = vec![meta("recording.completed", 30, "renamed")];
        let (later, _) = Manifest::build(
            &account,
            &templates,
            &renamed,
            &both,
            &staged(&["v1", "v2"]),
            &BTreeMap::new(),
            Some(&first),
        )
        .expect("manifest");
        assert_eq!(later.manifest_path, first.manifest_path, "the folder stays");
        let v2 = |m: &Manifest| {
            m.files()
                .find(|f| f.file_id == "v2")
                .map(|f| f.path.clone())
                .expect("v2")
        };
        assert_eq!(v2(&later), v2(&first), "an uploaded file never moves");
        assert_ne!(later.content_digest(), first.content_digest());
    }
}
