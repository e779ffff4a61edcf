//! Joins and checks with real MP4s made by ffmpeg (Debian's `ffmpeg` package, which brings
//! ffprobe): H.264 and MPEG-4 segments of a few seconds, made in a temp directory per test.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use relay_assemble::join::{Joiner, Outcome};
use relay_assemble::media::{self, Deadline, Probe, Probed, Tools};
use relay_pipeline::manifest::{JoinMethod, ManifestFile};
use relay_pipeline::staging::{Staging, StagingKey};
use relay_storage::StoreUrl;
use sha2::Digest;

const VIEW: &str = "gallery_view";

fn tools() -> Tools {
    Tools {
        ffmpeg: "ffmpeg".into(),
        ffprobe: "ffprobe".into(),
    }
}

/// `seconds` of a test picture (`source`: testsrc, testsrc2) at 25 fps and a tone, in `codec`.
fn mp4(dir: &Path, name: &str, codec: &str, source: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("{source}=size=320x240:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ))
        .args([
            "-c:v",
            codec,
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (Debian: apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg made {name}");
    path
}

/// Decodes every frame of `path`: (video frames decoded, video packets, duration).
fn decode_all(path: &Path) -> (u64, u64, f64) {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "quiet",
            "-count_frames",
            "-count_packets",
            "-select_streams",
            "v:0",
        ])
        .args([
            "-show_entries",
            "stream=nb_read_frames,nb_read_packets:format=duration",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let probe = Probe::parse(&output.stdout).expect("json");
    let video = &probe.streams[0];
    (
        video.frames.unwrap_or_default(),
        video.packets.unwrap_or_default(),
        probe.duration.unwrap_or_default(),
    )
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A meeting's staging in a temp directory, with its segments staged as download leaves them.
struct Staged {
    _dir: tempfile::TempDir,
    staging: Staging,
    parts: Vec<ManifestFile>,
}

impl Staged {
    fn new(segments: &[PathBuf]) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let staging = Staging::new(
            &StoreUrl::new(format!("file://{}", dir.path().display())),
            &BTreeMap::new(),
        )
        .expect("staging");
        let meeting = staging.meeting("acme", "meeting==");
        let parts = segments
            .iter()
            .enumerate()
            .map(|(index, source)| {
                let file_id = format!("segment-{index}");
                let bytes = std::fs::read(source).expect("segment");
                let staged = meeting
                    .local_path(StagingKey::Data { file_id: &file_id })
                    .expect("local");
                std::fs::create_dir_all(staged.parent().expect("parent")).expect("files dir");
                std::fs::write(&staged, &bytes).expect("staged");
                ManifestFile {
                    file_id,
                    file_type: "MP4".into(),
                    view: Some(VIEW.into()),
                    file_name: None,
                    start: None,
                    end: None,
                    size: bytes.len() as u64,
                    sha256: sha256(&bytes),
                    listed_size: None,
                    path: format!("{index}-{VIEW}.mp4"),
                }
            })
            .collect();
        Self {
            _dir: dir,
            staging,
            parts,
        }
    }

    async fn join_with(&self, tools: &Tools, reencode: bool) -> Outcome {
        let meeting = self.staging.meeting("acme", "meeting==");
        let joiner = Joiner {
            tools,
            staging: &meeting,
            deadline: Deadline::after(Duration::from_secs(120)),
            stale_after: Duration::from_secs(240),
        };
        let parts: Vec<&ManifestFile> = self.parts.iter().collect();
        joiner
            .join(VIEW, &parts, reencode)
            .await
            .expect("staging works")
    }

    fn published(&self, sha256: &str) -> PathBuf {
        self.staging
            .meeting("acme", "meeting==")
            .local_path(StagingKey::Concat { view: VIEW, sha256 })
            .expect("local")
    }

    /// Every file under the meeting's `concat/` (records, joins, leftovers).
    fn concat_entries(&self) -> Vec<String> {
        let dir = self
            .staging
            .meeting("acme", "meeting==")
            .local_path(StagingKey::ConcatDir)
            .expect("local");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn segments_staged(&self) -> bool {
        let meeting = self.staging.meeting("acme", "meeting==");
        self.parts.iter().all(|part| {
            meeting
                .local_path(StagingKey::Data {
                    file_id: &part.file_id,
                })
                .is_some_and(|path| path.exists())
        })
    }
}

/// An ffmpeg that runs `before` (a shell snippet) and then the real ffmpeg, and counts its runs
/// in `runs`.
fn wrapped_ffmpeg(dir: &Path, before: &str) -> (Tools, PathBuf) {
    let runs = dir.join("runs");
    let script = dir.join("ffmpeg");
    std::fs::write(
        &script,
        format!(
            "#!/usr/bin/env bash\nset -euo pipefail\necho run >>'{}'\n{before}\nexec ffmpeg \"$@\"\n",
            runs.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("mode");
    (
        Tools {
            ffmpeg: script.display().to_string(),
            ffprobe: "ffprobe".into(),
        },
        runs,
    )
}

fn count_runs(runs: &Path) -> usize {
    std::fs::read_to_string(runs)
        .map(|text| text.lines().count())
        .unwrap_or_default()
}

#[tokio::test]
async fn same_codec_segments_are_joined_by_stream_copy_and_every_frame_plays() {
    let media = tempfile::tempdir().expect("dir");
    let staged = Staged::new(&[
        mp4(media.path(), "a.mp4", "libx264", "testsrc", 5),
        mp4(media.path(), "b.mp4", "libx264", "testsrc2", 5),
    ]);
    let (counted, runs) = wrapped_ffmpeg(media.path(), ":");
    let started = std::time::Instant::now();
    let outcome = staged.join_with(&counted, false).await;
    let Outcome::Joined(record) = outcome else {
        panic!("joined: {outcome:?}");
    };
    eprintln!("stream-copy join of 2 × 5 s: {:?}", started.elapsed());
    // Assembled again (a redelivery, a later transcript), segments still staged: the same
    // join, not a second one.
    let Outcome::Joined(again) = staged.join_with(&counted, false).await else {
        panic!("joined");
    };
    assert_eq!(again, record);
    assert_eq!(count_runs(&runs), 1, "ffmpeg ran once");
    assert_eq!(record.method, JoinMethod::Copy);
    assert_eq!(record.reason, None);
    assert_eq!(record.segments, vec!["segment-0", "segment-1"]);
    let published = staged.published(&record.sha256);
    let bytes = std::fs::read(&published).expect("published under its digest");
    assert_eq!(sha256(&bytes), record.sha256);
    assert_eq!(bytes.len() as u64, record.size);
    let (frames, packets, duration) = decode_all(&published);
    assert_eq!(
        (frames, packets),
        (250, 250),
        "every frame of both segments decodes"
    );
    assert!((duration - 10.0).abs() < 0.1, "{duration}");
    assert!((record.duration_seconds - 10.0).abs() < 0.1);
    // Nothing left behind but the join and its record.
    let entries = staged.concat_entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.iter().all(|name| !name.starts_with("work-")));
}

#[tokio::test]
async fn differing_codecs_are_skipped_with_the_reason_or_re_encoded_when_allowed() {
    let media = tempfile::tempdir().expect("dir");
    let staged = Staged::new(&[
        mp4(media.path(), "a.mp4", "libx264", "testsrc", 5),
        mp4(media.path(), "c.mp4", "mpeg4", "testsrc2", 5),
    ]);
    let Outcome::Skipped { method, reason } = staged.join_with(&tools(), false).await else {
        panic!("skipped");
    };
    assert_eq!(method, Some(JoinMethod::Copy));
    assert!(
        reason.contains("segment 2's video stream 0 (mpeg4) has codec mpeg4, not segment 1's h264"),
        "{reason}"
    );
    assert!(reason.contains("concat_reencode"), "{reason}");
    assert!(staged.concat_entries().is_empty(), "no join, no record");

    let started = std::time::Instant::now();
    let Outcome::Joined(record) = staged.join_with(&tools(), true).await else {
        panic!("re-encoded");
    };
    eprintln!("re-encoding join of 2 × 5 s: {:?}", started.elapsed());
    assert_eq!(record.method, JoinMethod::Reencode);
    assert!(
        record
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("mpeg4"))
    );
    let (frames, packets, duration) = decode_all(&staged.published(&record.sha256));
    assert_eq!(frames, packets, "every frame decodes");
    assert!(packets >= 248, "{packets} frames");
    assert!((duration - 10.0).abs() < 0.2, "{duration}");
}

#[tokio::test]
async fn a_join_survives_upload_removing_its_segments_midway_and_is_made_once() {
    let media = tempfile::tempdir().expect("dir");
    let staged = Staged::new(&[
        mp4(media.path(), "a.mp4", "libx264", "testsrc", 3),
        mp4(media.path(), "b.mp4", "libx264", "testsrc2", 3),
    ]);
    // Upload archives the segments (another assembler's manifest) just as ffmpeg starts.
    let files = staged
        .staging
        .meeting("acme", "meeting==")
        .local_path(StagingKey::FilesDir)
        .expect("local");
    let (racing, runs) = wrapped_ffmpeg(
        media.path(),
        &format!("find '{}' -type f -delete", files.display()),
    );
    let Outcome::Joined(first) = staged.join_with(&racing, false).await else {
        panic!("joined though the segments went");
    };
    assert_eq!(count_runs(&runs), 1);
    let (frames, _, _) = decode_all(&staged.published(&first.sha256));
    assert_eq!(frames, 150);
    // A redelivery, or a second assembler late: the recorded join, no ffmpeg.
    let Outcome::Joined(again) = staged.join_with(&racing, false).await else {
        panic!("the recorded join");
    };
    assert_eq!(again, first);
    assert_eq!(count_runs(&runs), 1, "ffmpeg ran once");
}

#[tokio::test]
async fn two_assemblers_joining_at_once_agree_on_one_file() {
    let media = tempfile::tempdir().expect("dir");
    let staged = Staged::new(&[
        mp4(media.path(), "a.mp4", "libx264", "testsrc", 3),
        mp4(media.path(), "b.mp4", "libx264", "testsrc2", 3),
    ]);
    // Each ffmpeg writes something of its own into the file (its run number as a title), so
    // the two joins differ: only the record decides.
    let (tools, _) = wrapped_ffmpeg(
        media.path(),
        "set -- \"${@:1:$#-1}\" -metadata \"title=$RANDOM$RANDOM\" \"${@: -1}\"",
    );
    let (one, two) = tokio::join!(
        staged.join_with(&tools, false),
        staged.join_with(&tools, false)
    );
    let (Outcome::Joined(one), Outcome::Joined(two)) = (one, two) else {
        panic!("both joined");
    };
    assert_eq!(one, two, "one record wins");
    let entries = staged.concat_entries();
    let mp4s: Vec<&String> = entries.iter().filter(|n| n.ends_with(".mp4")).collect();
    assert_eq!(mp4s.len(), 1, "the loser's file is removed: {entries:?}");
    assert!(staged.published(&one.sha256).exists());
}

#[tokio::test]
async fn an_ffmpeg_failure_is_a_skip_quoting_it_without_staging_paths() {
    let media = tempfile::tempdir().expect("dir");
    let staged = Staged::new(&[
        mp4(media.path(), "a.mp4", "libx264", "testsrc", 2),
        mp4(media.path(), "b.mp4", "libx264", "testsrc2", 2),
    ]);
    let (failing, _) = wrapped_ffmpeg(
        media.path(),
        "echo \"[mp4 @ 0x55d0c1e2f200] $PWD/joined.mp4: No space left on device\" >&2; exit 1",
    );
    let Outcome::Skipped { method, reason } = staged.join_with(&failing, false).await else {
        panic!("skipped");
    };
    assert_eq!(method, Some(JoinMethod::Copy));
    assert!(
        reason.contains("[mp4] joined.mp4: No space left on device"),
        "{reason}"
    );
    let root = staged._dir.path().display().to_string();
    assert!(!reason.contains(&root), "{reason}");
    assert!(!reason.contains("/tmp"), "{reason}");
    assert!(
        staged.concat_entries().is_empty(),
        "no record, no leftovers"
    );
    assert!(staged.segments_staged(), "the segments go on");
}

#[tokio::test]
async fn a_copy_join_over_differing_codecs_fails_verification_at_the_junction() {
    // What ffmpeg's concat demuxer makes of H.264 then MPEG-4, exit status 0: the safety net
    // beneath the parameter check.
    let media = tempfile::tempdir().expect("dir");
    let dir = media.path();
    mp4(dir, "segment-1.mp4", "libx264", "testsrc", 5);
    mp4(dir, "segment-2.mp4", "mpeg4", "testsrc2", 5);
    std::fs::write(
        dir.join("list.txt"),
        "file 'segment-1.mp4'\nfile 'segment-2.mp4'\n",
    )
    .expect("list");
    let status = Command::new("ffmpeg")
        .current_dir(dir)
        .args([
            "-nostdin", "-v", "quiet", "-y", "-f", "concat", "-i", "list.txt",
        ])
        .args(["-c", "copy", "broken.mp4"])
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg says nothing is wrong");
    let deadline = Deadline::after(Duration::from_secs(60));
    let probe = |name: &'static str| async move {
        match tools().probe(dir, name, deadline).await.expect("ffprobe") {
            Probed::Media(probe) => probe,
            Probed::Unreadable(why) => panic!("{why}"),
        }
    };
    let segments = [probe("segment-1.mp4").await, probe("segment-2.mp4").await];
    let joined = probe("broken.mp4").await;
    // Its packets and duration add up: only decoding shows it.
    assert!(media::verify(&segments, &joined, JoinMethod::Copy).is_ok());
    let start = media::junction_start(&segments, 1);
    let Probed::Media(window) = tools()
        .decode_window(dir, "broken.mp4", start, 2.0, deadline)
        .await
        .expect("ffprobe")
    else {
        panic!("readable");
    };
    let why = media::junction(&window, 2).expect_err("does not play");
    assert!(why.contains("segment 2 does not play"), "{why}");
}

#[tokio::test]
async fn the_integrity_check_refuses_files_cut_short_with_or_without_their_index() {
    let media = tempfile::tempdir().expect("dir");
    let dir = media.path();
    let whole = mp4(dir, "whole.mp4", "libx264", "testsrc", 3);
    let bytes = std::fs::read(&whole).expect("mp4");
    // ffmpeg writes the index (moov) last: cut, the file has none.
    std::fs::write(dir.join("no-index.mp4"), &bytes[..bytes.len() / 2]).expect("cut");
    let status = Command::new("ffmpeg")
        .current_dir(dir)
        .args([
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            "whole.mp4",
            "-c",
            "copy",
        ])
        .args(["-movflags", "+faststart", "indexed.mp4"])
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let indexed = std::fs::read(dir.join("indexed.mp4")).expect("mp4");
    std::fs::write(dir.join("cut.mp4"), &indexed[..indexed.len() * 2 / 3]).expect("cut");
    let deadline = Deadline::after(Duration::from_secs(60));
    let check = |name: &'static str| async move {
        match tools().probe(dir, name, deadline).await.expect("ffprobe") {
            Probed::Media(probe) => media::integrity(&probe),
            Probed::Unreadable(why) => Err(why),
        }
    };
    assert_eq!(check("whole.mp4").await, Ok(()));
    assert_eq!(check("indexed.mp4").await, Ok(()));
    let why = check("no-index.mp4").await.expect_err("no index");
    assert!(why.contains("moov atom not found"), "{why}");
    assert!(!why.contains(&dir.display().to_string()), "{why}");
    let why = check("cut.mp4").await.expect_err("cut short");
    assert!(why.contains("the file is cut short"), "{why}");
}
