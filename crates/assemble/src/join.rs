//! One view's join: its segments into one MP4, verified, recorded once.
//!
//! 1. The join of exactly these segments (by id and SHA-256) may be recorded already
//!    (`concat/{view}.{inputs}.json`): then it is the join, whoever made it, whether its file is
//!    still staged or already uploaded. A redelivery, a later event, a second assembler: all
//!    use it, and no ffmpeg runs.
//! 2. Otherwise the segments are hard-linked into a private directory first. Upload moves or
//!    removes a staged segment as soon as a manifest naming it is uploaded — possibly another
//!    assembler's, while this join runs — and a link keeps the bytes this join reads. A segment
//!    already gone means an upload took it: then the record of its join is looked for again.
//! 3. ffprobe reads every segment's streams. Stream copy only when they match
//!    ([`media::difference`]); otherwise a re-encode when the account allows it, or no join.
//! 4. The joined file counts only once verified against its segments ([`media::verify`]) and
//!    decoded across each join ([`media::junction`]).
//! 5. It is published under its content's digest (`concat/{view}.{sha256}.mp4`), then the
//!    record is created only if absent: of two assemblers finishing together one record wins,
//!    the other removes its own file and uses the winner's. Manifests therefore agree.
//!
//! Nothing here fails the assembly but staging itself failing: a join that cannot be made is
//! [`Outcome::Skipped`], with a reason, and the segments go on alone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use relay_core::failure::{Code, StageError};
use relay_pipeline::manifest::{JoinMethod, ManifestFile};
use relay_pipeline::staging::{MeetingStaging, StagingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tracing::{debug, info};

use crate::media::{self, Deadline, Probe, Probed, RunError, Tools};

/// Distinguishes one process's concurrent joins' working directories.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// How long a join decodes after each junction to see that the next segment plays.
const JUNCTION_SECONDS: f64 = 2.0;

/// The one join of a set of segments, as staging records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRecord {
    pub view: String,
    /// The segments' file ids, in order.
    pub segments: Vec<String>,
    pub method: JoinMethod,
    pub size: u64,
    pub sha256: String,
    pub duration_seconds: f64,
    /// Why the segments were re-encoded rather than copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Joined(JoinRecord),
    /// No join: why, and how it was tried (if it was).
    Skipped {
        method: Option<JoinMethod>,
        reason: String,
    },
    /// Segments are no longer staged (an upload archived them) and no join of them is recorded.
    SegmentsGone,
}

/// Why a join was not made, and how it was tried.
struct Skip {
    method: Option<JoinMethod>,
    reason: String,
}

/// What a join needs: the binaries, the meeting's staging, and the assembly's deadline.
pub struct Joiner<'a> {
    pub tools: &'a Tools,
    pub staging: &'a MeetingStaging<'a>,
    pub deadline: Deadline,
    /// A working directory older than this is left over from a process that died mid-join.
    pub stale_after: Duration,
}

/// A digest of the view and its segments (ids and content, in order): the join's identity.
pub fn inputs_digest(view: &str, parts: &[&ManifestFile]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(view.as_bytes());
    for part in parts {
        hasher.update([0]);
        hasher.update(part.file_id.as_bytes());
        hasher.update([0]);
        hasher.update(part.sha256.as_bytes());
    }
    hex::encode(hasher.finalize())[..32].to_owned()
}

fn storage(error: std::io::Error) -> StageError {
    StageError::from_error(Code::StorageFailed, &error)
}

fn local(path: Option<PathBuf>) -> Result<PathBuf, StageError> {
    path.ok_or_else(|| StageError::new(Code::StorageInvalid, "joins need a file:// staging"))
}

/// A join's private directory, removed with everything in it when the join ends (a process
/// that dies mid-join leaves it to [`Joiner::sweep`]).
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            debug!(%error, "join working directory not removed");
        }
    }
}

fn segment_name(position: usize) -> String {
    format!("segment-{}.mp4", position + 1)
}

const OUTPUT: &str = "joined.mp4";

impl Joiner<'_> {
    /// Joins `parts` (the view's MP4 segments, in order, at least two).
    pub async fn join(
        &self,
        view: &str,
        parts: &[&ManifestFile],
        reencode: bool,
    ) -> Result<Outcome, StageError> {
        let inputs = inputs_digest(view, parts);
        let record_key = self.staging.path(StagingKey::JoinRecord {
            view,
            inputs: &inputs,
        })?;
        let location = self.staging.location();
        if let Some(record) = location.get_json::<JoinRecord>(&record_key).await? {
            return Ok(Outcome::Joined(record));
        }
        let concat_dir = local(self.staging.local_path(StagingKey::ConcatDir))?;
        tokio::fs::create_dir_all(&concat_dir)
            .await
            .map_err(storage)?;
        self.sweep(&concat_dir).await;
        let run = format!(
            "{}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos())
                .unwrap_or_default(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let work = WorkDir(local(
            self.staging.local_path(StagingKey::JoinWork { run: &run }),
        )?);
        tokio::fs::create_dir(&work.0).await.map_err(storage)?;
        if !self.snapshot(parts, &work.0).await? {
            // An upload took them: the join it uploaded, if any, is recorded by now.
            return Ok(match location.get_json::<JoinRecord>(&record_key).await? {
                Some(record) => Outcome::Joined(record),
                None => Outcome::SegmentsGone,
            });
        }
        let started = std::time::Instant::now();
        let made = match self.make(&work.0, parts.len(), reencode).await {
            Ok(made) => made,
            Err(Skip { method, reason }) => return Ok(Outcome::Skipped { method, reason }),
        };
        let (method, duration, reason) = made;
        let output = work.0.join(OUTPUT);
        let (size, sha256) = digest_file(&output).await.map_err(storage)?;
        let published = local(self.staging.local_path(StagingKey::Concat {
            view,
            sha256: &sha256,
        }))?;
        publish_durably(&output, &published)
            .await
            .map_err(storage)?;
        let record = JoinRecord {
            view: view.to_owned(),
            segments: parts.iter().map(|part| part.file_id.clone()).collect(),
            method,
            size,
            sha256,
            duration_seconds: duration,
            reason,
            joined_at: Utc::now(),
        };
        if location.create_json(&record_key, &record).await? {
            info!(
                view,
                method = ?record.method,
                segments = parts.len(),
                bytes = size,
                seconds = started.elapsed().as_secs_f64(),
                "view joined and verified"
            );
            return Ok(Outcome::Joined(record));
        }
        // Another assembler recorded its join of these segments first: theirs is the join.
        let winner: JoinRecord = location.get_json(&record_key).await?.ok_or_else(|| {
            StageError::new(
                Code::StorageFailed,
                "a join record was there and then was not",
            )
        })?;
        if winner.sha256 != record.sha256 {
            // Named by its own content, our file is referenced by nobody.
            let _ = tokio::fs::remove_file(&published).await;
        }
        Ok(Outcome::Joined(winner))
    }

    /// Links every segment into `work` under its position's name; `false` if one is gone.
    async fn snapshot(&self, parts: &[&ManifestFile], work: &Path) -> Result<bool, StageError> {
        for (position, part) in parts.iter().enumerate() {
            let original = local(self.staging.local_path(StagingKey::Data {
                file_id: &part.file_id,
            }))?;
            let link = work.join(segment_name(position));
            match tokio::fs::hard_link(&original, &link).await {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                // A filesystem without hard links: a copy holds the bytes as well, slower.
                Err(error) => {
                    debug!(%error, "hard link refused; copying the segment");
                    match tokio::fs::copy(&original, &link).await {
                        Ok(_) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                            return Ok(false);
                        }
                        Err(error) => return Err(storage(error)),
                    }
                }
            }
        }
        Ok(true)
    }

    /// Probes, joins and verifies the linked segments in `work` into [`OUTPUT`]: how, the
    /// joined duration, and why it was re-encoded; or why there is no join.
    async fn make(
        &self,
        work: &Path,
        count: usize,
        reencode: bool,
    ) -> Result<(JoinMethod, f64, Option<String>), Skip> {
        let skipped = |method: Option<JoinMethod>, reason: String| Skip { method, reason };
        let ran = |method: Option<JoinMethod>, error: RunError| skipped(method, error.to_string());
        let mut segments: Vec<Probe> = Vec::with_capacity(count);
        for position in 0..count {
            let name = segment_name(position);
            let probe = match self.tools.probe(work, &name, self.deadline).await {
                Ok(Probed::Media(probe)) => probe,
                Ok(Probed::Unreadable(why)) => {
                    return Err(skipped(
                        None,
                        format!("segment {} is not readable media: {why}", position + 1),
                    ));
                }
                Err(error) => return Err(ran(None, error)),
            };
            if let Err(why) = media::integrity(&probe) {
                return Err(skipped(
                    None,
                    format!("segment {} is not sound: {why}", position + 1),
                ));
            }
            segments.push(probe);
        }
        let difference = segments
            .iter()
            .enumerate()
            .skip(1)
            .find_map(|(position, segment)| media::difference(&segments[0], segment, position + 1));
        let (method, reason) = match difference {
            None => (JoinMethod::Copy, None),
            Some(why) if reencode => {
                if let Err(layout) = media::reencodable(&segments) {
                    return Err(skipped(Some(JoinMethod::Reencode), layout));
                }
                (JoinMethod::Reencode, Some(why))
            }
            Some(why) => {
                return Err(skipped(
                    Some(JoinMethod::Copy),
                    format!(
                        "the segments cannot be joined by stream copy: {why} (concat_reencode = true would re-encode them)"
                    ),
                ));
            }
        };
        let args = match method {
            JoinMethod::Copy => {
                let list: String = (0..count)
                    .map(|position| format!("file '{}'\n", segment_name(position)))
                    .collect();
                tokio::fs::write(work.join("segments.txt"), list)
                    .await
                    .map_err(|error| skipped(Some(method), error.to_string()))?;
                copy_args()
            }
            JoinMethod::Reencode => reencode_args(&segments),
        };
        let captured = self
            .tools
            .run_ffmpeg(&args, work, self.deadline)
            .await
            .map_err(|error| ran(Some(method), error))?;
        if !captured.status.success() {
            return Err(skipped(
                Some(method),
                format!(
                    "ffmpeg exited with {}: {}",
                    captured.status,
                    if captured.stderr.is_empty() {
                        "no message"
                    } else {
                        &captured.stderr
                    }
                ),
            ));
        }
        let failed = |why: String| skipped(Some(method), format!("verification failed: {why}"));
        let joined = match self.tools.probe(work, OUTPUT, self.deadline).await {
            Ok(Probed::Media(probe)) => probe,
            Ok(Probed::Unreadable(why)) => return Err(failed(why)),
            Err(error) => return Err(ran(Some(method), error)),
        };
        let duration = media::verify(&segments, &joined, method).map_err(failed)?;
        for index in 1..count {
            let start = media::junction_start(&segments, index);
            let window = match self
                .tools
                .decode_window(work, OUTPUT, start, JUNCTION_SECONDS, self.deadline)
                .await
            {
                Ok(Probed::Media(probe)) => probe,
                Ok(Probed::Unreadable(why)) => return Err(failed(why)),
                Err(error) => return Err(ran(Some(method), error)),
            };
            media::junction(&window, index + 1).map_err(failed)?;
        }
        Ok((method, duration, reason))
    }

    /// Removes working directories of joins that cannot still be running: every join ends
    /// within the media timeout.
    async fn sweep(&self, concat_dir: &Path) {
        let Ok(mut entries) = tokio::fs::read_dir(concat_dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let stale = entry
                .metadata()
                .await
                .ok()
                .filter(std::fs::Metadata::is_dir)
                .and_then(|meta| meta.modified().ok())
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > self.stale_after);
            if stale && entry.file_name().to_string_lossy().starts_with("work-") {
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            }
        }
    }
}

impl Tools {
    pub async fn run_ffmpeg(
        &self,
        args: &[String],
        dir: &Path,
        deadline: Deadline,
    ) -> Result<media::Captured, RunError> {
        media::run(&self.ffmpeg, args, dir, deadline).await
    }
}

fn common_args() -> Vec<String> {
    ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        .map(str::to_owned)
        .to_vec()
}

/// The concat demuxer, every audio and video stream copied: the segments' own packets.
fn copy_args() -> Vec<String> {
    let mut args = common_args();
    args.extend(
        [
            "-f",
            "concat",
            "-i",
            "segments.txt",
            "-map",
            "0:v?",
            "-map",
            "0:a?",
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ]
        .map(str::to_owned),
    );
    args.push(format!("file:{OUTPUT}"));
    args
}

/// The concat filter over every segment's first video and audio stream, each picture scaled
/// into the first segment's size (letterboxed, never stretched), encoded as H.264 and AAC;
/// frames keep their own timestamps (`vfr`), so none is invented or dropped.
fn reencode_args(segments: &[Probe]) -> Vec<String> {
    let first = &segments[0];
    let video = first.streams.iter().find(|s| s.kind == "video");
    let audio = first.streams.iter().any(|s| s.kind == "audio");
    let even = |value: Option<u64>, default: u64| (value.unwrap_or(default).max(2) / 2) * 2;
    let (width, height) = (
        even(video.and_then(|v| v.width), 1280),
        even(video.and_then(|v| v.height), 720),
    );
    let mut args = common_args();
    let mut graph = String::new();
    let mut inputs = String::new();
    for position in 0..segments.len() {
        args.push("-i".into());
        args.push(format!("file:{}", segment_name(position)));
        if video.is_some() {
            graph.push_str(&format!(
                "[{position}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1[v{position}];"
            ));
            inputs.push_str(&format!("[v{position}]"));
        }
        if audio {
            inputs.push_str(&format!("[{position}:a:0]"));
        }
    }
    let (v, a) = (u8::from(video.is_some()), u8::from(audio));
    graph.push_str(&format!("{inputs}concat=n={}:v={v}:a={a}", segments.len()));
    if video.is_some() {
        graph.push_str("[v]");
    }
    if audio {
        graph.push_str("[a]");
    }
    args.push("-filter_complex".into());
    args.push(graph);
    if video.is_some() {
        args.extend(
            [
                "-map", "[v]", "-vsync", "vfr", "-c:v", "libx264", "-preset", "veryfast", "-crf",
                "20", "-pix_fmt", "yuv420p",
            ]
            .map(str::to_owned),
        );
    }
    if audio {
        args.extend(["-map", "[a]", "-c:a", "aac", "-b:a", "128k"].map(str::to_owned));
    }
    args.extend(["-movflags", "+faststart", "-f", "mp4"].map(str::to_owned));
    args.push(format!("file:{OUTPUT}"));
    args
}

/// Size and SHA-256 of a local file, read as a stream.
/// Moves ffmpeg's output into place as the staging store writes its own files: on disk, and its
/// name too, before the join record (written next, durably) points at it.
async fn publish_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(from).await?.sync_all().await?;
    tokio::fs::rename(from, to).await?;
    match to.parent() {
        Some(directory) => tokio::fs::File::open(directory).await?.sync_all().await,
        None => Ok(()),
    }
}

async fn digest_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            return Ok((size, hex::encode(hasher.finalize())));
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: &str, sha: &str) -> ManifestFile {
        ManifestFile {
            file_id: id.into(),
            file_type: "MP4".into(),
            view: Some("gallery_view".into()),
            file_name: None,
            start: None,
            end: None,
            size: 1,
            sha256: sha.into(),
            listed_size: None,
            path: "p".into(),
        }
    }

    #[test]
    fn the_inputs_digest_changes_with_any_segment_its_content_or_order() {
        let (a, b, c) = (part("a", "1"), part("b", "2"), part("b", "3"));
        let base = inputs_digest("gallery_view", &[&a, &b]);
        assert_eq!(base, inputs_digest("gallery_view", &[&a, &b]));
        assert_ne!(base, inputs_digest("gallery_view", &[&b, &a]));
        assert_ne!(base, inputs_digest("gallery_view", &[&a, &c]));
        assert_ne!(base, inputs_digest("speaker_view", &[&a, &b]));
        assert_ne!(base, inputs_digest("gallery_view", &[&a]));
    }

    #[test]
    fn a_reencode_scales_every_segment_into_the_first_ones_even_size() {
        let segment = |width, height| Probe {
            streams: vec![
                media::Stream {
                    kind: "video".into(),
                    width: Some(width),
                    height: Some(height),
                    ..Default::default()
                },
                media::Stream {
                    kind: "audio".into(),
                    ..Default::default()
                },
            ],
            duration: Some(1.0),
        };
        let args = reencode_args(&[segment(641, 361), segment(320, 240)]);
        let graph = &args[args
            .iter()
            .position(|a| a == "-filter_complex")
            .expect("graph")
            + 1];
        assert!(graph.contains("[1:v:0]scale=640:360:"), "{graph}");
        assert!(
            graph.ends_with("[v0][0:a:0][v1][1:a:0]concat=n=2:v=1:a=1[v][a]"),
            "{graph}"
        );
        assert_eq!(args.last().map(String::as_str), Some("file:joined.mp4"));
    }
}
