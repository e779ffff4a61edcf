//! Real media through the whole pipeline: MP4s made by ffmpeg (Debian's `ffmpeg` package, with
//! ffprobe) in the test, served by the simulator (`PUT /_sim/files/{id}/content`), joined and
//! checked by assemble with the real ffmpeg and ffprobe (docs/media.md).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lapin::types::AMQPValue;
use relay_app::{App, Component};
use relay_core::broker::StageName;
use relay_pipeline::manifest::{JoinMethod, JoinOutcome, Manifest};
use serde_json::{Value, json};
use zoom_sim::{CreatedMeeting, MeetingSpec, ServedFile};

use crate::helpers::*;
use crate::pipeline::{TestPipeline, WAIT, find_files, pipeline_settings};

const VIEW: &str = "gallery_view";

/// `seconds` of a test picture (`source`: testsrc, testsrc2) at 25 fps with a tone, in `codec`.
fn mp4(dir: &Path, name: &str, codec: &str, source: &str, seconds: u32) -> Vec<u8> {
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
    std::fs::read(&path).expect("made")
}

/// Decodes every video frame of `path`: (frames decoded, packets, duration in seconds).
fn decode_all(path: &Path) -> (u64, u64, f64) {
    let output = Command::new("ffprobe")
        .args(["-v", "quiet", "-count_frames", "-count_packets"])
        .args(["-select_streams", "v:0", "-of", "json"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,nb_read_packets:format=duration",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let value: Value = serde_json::from_slice(&output.stdout).expect("json");
    let number = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let stream = &value["streams"][0];
    (
        number(&stream["nb_read_frames"]) as u64,
        number(&stream["nb_read_packets"]) as u64,
        number(&value["format"]["duration"]),
    )
}

/// A meeting of one view in two segments, whose MP4s the simulator serves with `contents`, in
/// segment order. Answers the meeting and each segment's id with what is served.
async fn meeting_of(
    pipeline: &TestPipeline,
    contents: [Vec<u8>; 2],
) -> (CreatedMeeting, Vec<(String, ServedFile)>) {
    let created = pipeline
        .create(&MeetingSpec {
            segments: 2,
            views: vec![VIEW.into()],
            audio: false,
            chat: false,
            transcript: false,
            transcript_later: false,
            media_size: 1024,
            ..MeetingSpec::default()
        })
        .await;
    let mut files: Vec<(String, String)> =
        created.recording_completed["payload"]["object"]["recording_files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|file| {
                (
                    file["recording_start"].as_str().expect("start").to_owned(),
                    file["id"].as_str().expect("id").to_owned(),
                )
            })
            .collect();
    files.sort();
    let mut served = Vec::new();
    for ((_, id), bytes) in files.into_iter().zip(contents) {
        let response = pipeline
            .http
            .put(format!("{}/_sim/files/{id}/content", pipeline.sim))
            .body(bytes)
            .send()
            .await
            .expect("sim");
        assert_eq!(response.status(), 200);
        served.push((id, response.json().await.expect("served")));
    }
    (created, served)
}

/// Each segment is at the destination, byte for byte what was served.
fn assert_segments_delivered(
    pipeline: &TestPipeline,
    manifest: &Manifest,
    served: &[(String, ServedFile)],
) {
    let root = pipeline.destination.path().join(&manifest.account);
    for (id, file) in served {
        let listed = manifest
            .files()
            .find(|listed| listed.file_id == *id)
            .unwrap_or_else(|| panic!("{id} listed"));
        let bytes = std::fs::read(root.join(&listed.path)).expect("at the destination");
        use sha2::Digest;
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), file.sha256);
        assert_eq!(listed.sha256, file.sha256);
    }
}

fn joined_path(pipeline: &TestPipeline, manifest: &Manifest) -> PathBuf {
    let joined = manifest.concatenated.first().expect("a joined file");
    pipeline
        .destination
        .path()
        .join(&manifest.account)
        .join(&joined.path)
}

async fn dead_letter_count(pipeline: &TestPipeline, stage: StageName) -> u32 {
    queue_length(&pipeline.dead_letters(stage)).await
}

/// Whether nothing is in flight and nothing was dead-lettered by assemble or upload.
async fn settled_without_dead_letters(pipeline: &TestPipeline) {
    assert!(
        eventually(WAIT, || pipeline.quiet()).await,
        "the pipeline settles"
    );
    for stage in [StageName::Assemble, StageName::Upload] {
        let dead = peek_queue(&pipeline.dead_letters(stage)).await;
        let codes: Vec<_> = dead
            .iter()
            .map(|message| {
                message
                    .delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("x-error").cloned())
            })
            .collect();
        assert!(dead.is_empty(), "{stage:?} dead-lettered {codes:?}");
    }
}

#[tokio::test]
async fn same_codec_segments_are_joined_by_stream_copy_and_play_for_their_summed_duration() {
    let media = tempfile::tempdir().expect("dir");
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].concat_media = true;
    })
    .await;
    let (created, served) = meeting_of(
        &pipeline,
        [
            mp4(media.path(), "a.mp4", "libx264", "testsrc", 5),
            mp4(media.path(), "b.mp4", "libx264", "testsrc2", 5),
        ],
    )
    .await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| !m.concatenated.is_empty())
        .await;
    assert_segments_delivered(&pipeline, &manifest, &served);
    assert_eq!(manifest.joins.len(), 1);
    let join = &manifest.joins[0];
    assert_eq!(join.outcome, JoinOutcome::Joined);
    assert_eq!(join.method, Some(JoinMethod::Copy));
    assert_eq!(
        join.segments,
        served.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()
    );
    let joined = &manifest.concatenated[0];
    assert!(
        joined.path.ends_with("/gallery_view-full.mp4"),
        "{}",
        joined.path
    );
    let path = joined_path(&pipeline, &manifest);
    let bytes = std::fs::read(&path).expect("joined file");
    use sha2::Digest;
    assert_eq!(joined.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
    let (frames, packets, duration) = decode_all(&path);
    assert_eq!(
        (frames, packets),
        (250, 250),
        "every frame of both segments plays"
    );
    assert!((duration - 10.0).abs() < 0.1, "plays {duration} s");
    settled_without_dead_letters(&pipeline).await;
}

#[tokio::test]
async fn segments_of_differing_codecs_are_uploaded_and_the_join_skipped_with_its_reason() {
    let media = tempfile::tempdir().expect("dir");
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].concat_media = true;
    })
    .await;
    let (created, served) = meeting_of(
        &pipeline,
        [
            mp4(media.path(), "a.mp4", "libx264", "testsrc", 5),
            mp4(media.path(), "c.mp4", "mpeg4", "testsrc2", 5),
        ],
    )
    .await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| !m.joins.is_empty())
        .await;
    assert_segments_delivered(&pipeline, &manifest, &served);
    assert!(manifest.concatenated.is_empty(), "no broken join listed");
    let join = &manifest.joins[0];
    assert_eq!(join.outcome, JoinOutcome::Skipped);
    let reason = join.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("codec mpeg4, not segment 1's h264"),
        "{reason}"
    );
    // Nothing joined was uploaded beside the segments.
    let dir = pipeline.meeting_dir(&created.uuid).expect("folder");
    let mp4s = find_files(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
        .count();
    assert_eq!(mp4s, 2);
    settled_without_dead_letters(&pipeline).await;
}

#[tokio::test]
async fn segments_of_differing_codecs_are_re_encoded_into_a_join_that_plays_when_allowed() {
    let media = tempfile::tempdir().expect("dir");
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].concat_media = true;
        settings.accounts[0].concat_reencode = true;
    })
    .await;
    let (created, served) = meeting_of(
        &pipeline,
        [
            mp4(media.path(), "a.mp4", "libx264", "testsrc", 5),
            mp4(media.path(), "c.mp4", "mpeg4", "testsrc2", 5),
        ],
    )
    .await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| !m.concatenated.is_empty())
        .await;
    assert_segments_delivered(&pipeline, &manifest, &served);
    let join = &manifest.joins[0];
    assert_eq!(join.outcome, JoinOutcome::Joined);
    assert_eq!(join.method, Some(JoinMethod::Reencode));
    assert!(
        join.reason.as_deref().is_some_and(|r| r.contains("mpeg4")),
        "{join:?}"
    );
    let (frames, packets, duration) = decode_all(&joined_path(&pipeline, &manifest));
    assert_eq!(frames, packets, "every frame plays");
    assert!(packets >= 248, "{packets} frames");
    assert!((duration - 10.0).abs() < 0.2, "plays {duration} s");
    settled_without_dead_letters(&pipeline).await;
}

/// The first half of an MP4 whose index ffmpeg wrote at its end: no index, no media.
fn cut_short(bytes: Vec<u8>) -> Vec<u8> {
    bytes[..bytes.len() / 2].to_vec()
}

#[tokio::test]
async fn a_broken_mp4_is_retried_then_dead_lettered_media_broken_and_the_rest_lands() {
    let media = tempfile::tempdir().expect("dir");
    let pipeline = TestPipeline::start(|settings| {
        settings.pipeline.max_attempts = 3;
        settings.accounts[0].verify_media = true;
    })
    .await;
    let (created, served) = meeting_of(
        &pipeline,
        [
            mp4(media.path(), "a.mp4", "libx264", "testsrc", 3),
            cut_short(mp4(media.path(), "b.mp4", "libx264", "testsrc2", 3)),
        ],
    )
    .await;
    let broken = served[1].0.clone();
    pipeline.send(&created.recording_completed).await;
    let dead = wait_for_messages(&pipeline.dead_letters(StageName::Assemble), 1, WAIT).await;
    // Two downloads finishing together may each see the meeting complete and tell assemble:
    // then each of those tasks is dead-lettered, all for the same reason.
    assert!(
        dead.iter().all(|message| message
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-error-code").cloned())
            == Some(AMQPValue::LongString("media_broken".into()))),
        "every dead letter is media_broken"
    );
    let headers = dead[0]
        .delivery
        .properties
        .headers()
        .clone()
        .expect("headers");
    let get = |key: &str| headers.inner().get(key).cloned();
    assert_eq!(
        get("x-error-code"),
        Some(AMQPValue::LongString("media_broken".into()))
    );
    assert_eq!(get("x-attempt"), Some(AMQPValue::LongLongInt(3)), "retried");
    let Some(AMQPValue::LongString(reason)) = get("x-error") else {
        panic!("a reason");
    };
    let reason = String::from_utf8_lossy(reason.as_bytes()).into_owned();
    assert!(
        reason.contains(&broken) && reason.contains("moov atom not found"),
        "{reason}"
    );
    assert!(
        !reason.contains(&pipeline.staging.path().display().to_string()),
        "{reason}"
    );
    // The rest of the meeting lands; the broken file stays at Zoom, said missing.
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| !m.missing.is_empty())
        .await;
    assert_segments_delivered(&pipeline, &manifest, &served[..1]);
    assert!(manifest.files().all(|file| file.file_id != broken));
    assert_eq!(manifest.missing.len(), 1);
    assert_eq!(manifest.missing[0].file_id, broken);
    assert_eq!(manifest.missing[0].code, "media_broken");
    assert!(
        eventually(WAIT, || pipeline.quiet()).await,
        "the pipeline settles"
    );
    assert_eq!(dead_letter_count(&pipeline, StageName::Upload).await, 0);
}

#[tokio::test]
async fn a_broken_mp4_is_archived_as_is_when_the_check_is_off() {
    let media = tempfile::tempdir().expect("dir");
    let pipeline = TestPipeline::start(|_| {}).await;
    let (created, served) = meeting_of(
        &pipeline,
        [
            mp4(media.path(), "a.mp4", "libx264", "testsrc", 3),
            cut_short(mp4(media.path(), "b.mp4", "libx264", "testsrc2", 3)),
        ],
    )
    .await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == 2)
        .await;
    assert_segments_delivered(&pipeline, &manifest, &served);
    assert!(manifest.missing.is_empty());
    settled_without_dead_letters(&pipeline).await;
}

/// An ffmpeg that makes two joins overlap upload: the first waits until a second assembler is
/// joining too; the second waits until upload has archived (and removed from staging) the
/// segments the first one's manifest named, then reads them. Flags in `flags` say what
/// happened.
fn racing_ffmpeg(dir: &Path, staging: &str) -> String {
    let flags = dir.join("flags");
    std::fs::create_dir_all(&flags).expect("flags");
    let script = dir.join("ffmpeg");
    std::fs::write(
        &script,
        format!(
            r#"#!/usr/bin/env bash
set -euo pipefail
if [ "${{1:-}}" = "-version" ]; then exec ffmpeg "$@"; fi
flags='{flags}'
staging='{staging}'
# Polls a condition for up to 20 s.
wait_for() {{ for _ in $(seq 200); do if eval "$1"; then return 0; fi; sleep 0.1; done; return 1; }}
if mkdir "$flags/first" 2>/dev/null; then
  wait_for '[ -d "$flags/second" ]' || true
else
  mkdir -p "$flags/second"
  if wait_for '[ -z "$(find "$staging" -path "*/files/*" -type f ! -name "*.json" -print -quit)" ]'; then
    touch "$flags/segments-gone-before-the-second-join"
  fi
fi
exec ffmpeg "$@"
"#,
            flags = flags.display(),
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("mode");
    script.display().to_string()
}

#[tokio::test]
async fn a_second_assembler_joining_while_upload_archives_the_segments_uses_the_one_join() {
    let media = tempfile::tempdir().expect("dir");
    let dir = media.path().to_path_buf();
    let pipeline = TestPipeline::start(|settings| {
        let staging = settings
            .pipeline
            .staging
            .expose()
            .trim_start_matches("file://")
            .to_owned();
        settings.pipeline.ffmpeg = racing_ffmpeg(&dir, &staging);
        settings.accounts[0].concat_media = true;
    })
    .await;
    let (created, _) = meeting_of(
        &pipeline,
        [
            mp4(media.path(), "a.mp4", "libx264", "testsrc", 3),
            mp4(media.path(), "b.mp4", "libx264", "testsrc2", 3),
        ],
    )
    .await;
    pipeline.send(&created.recording_completed).await;
    // Once both segments are staged, a second assembler is told (as when both downloads
    // finish together).
    let staged = eventually(WAIT, || async {
        find_files(pipeline.staging.path())
            .iter()
            .filter(|path| path.to_string_lossy().ends_with(".done.json"))
            .count()
            == 2
    })
    .await;
    assert!(staged, "segments staged");
    let headers = relay_core::Binding::new("acme", "acme-account-id", relay_core::Origin::Webhook)
        .to_headers();
    pipeline
        .publish_by_hand(
            StageName::Assemble,
            &json!({ "meeting_uuid": created.uuid, "staged_file": "again" }),
            headers,
        )
        .await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| !m.concatenated.is_empty())
        .await;
    settled_without_dead_letters(&pipeline).await;
    let flags = dir.join("flags");
    assert!(flags.join("second").exists(), "two joins overlapped");
    assert!(
        flags.join("segments-gone-before-the-second-join").exists(),
        "upload had removed the segments when the second join started"
    );
    let (frames, _, _) = decode_all(&joined_path(&pipeline, &manifest));
    assert_eq!(frames, 150);
    // What staging holds for later assemblies says the same: one join, made.
    let staged_manifest = find_files(pipeline.staging.path())
        .into_iter()
        .find(|path| path.ends_with("manifest.json"))
        .expect("staging manifest");
    let staged_manifest: Manifest =
        serde_json::from_slice(&std::fs::read(staged_manifest).expect("read")).expect("manifest");
    assert_eq!(staged_manifest.content_digest(), manifest.content_digest());
    assert_eq!(staged_manifest.joins, manifest.joins);
    assert_eq!(manifest.joins[0].outcome, JoinOutcome::Joined);
    // Nothing joined is left behind in staging.
    let leftovers: Vec<PathBuf> = find_files(pipeline.staging.path())
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "mp4"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn assemble_refuses_to_start_when_verify_media_is_on_and_ffprobe_is_missing() {
    let staging = tempfile::tempdir().expect("dir");
    let destination = tempfile::tempdir().expect("dir");
    let mut settings = pipeline_settings(staging.path(), destination.path());
    settings.accounts[0].verify_media = true;
    settings.pipeline.ffprobe = "/nonexistent/ffprobe".into();
    let error = App::build(settings, &[Component::Assemble])
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(
        message.contains("acme") && message.contains("verify_media") && message.contains("ffprobe"),
        "{message}"
    );
}
