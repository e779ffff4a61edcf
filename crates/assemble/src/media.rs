//! ffmpeg and ffprobe as assemble uses them, and what their answers mean.
//!
//! Every run is bounded by the assembly's [`Deadline`] (killed past it, and on cancellation),
//! reads no standard input, and has its output captured: nothing ffmpeg prints reaches the log
//! stream, and what is kept of it ([`excerpt`]) is short, free of the process's pointers and of
//! staging paths (runs get relative names in their own directory), so two assemblers that meet
//! the same failure write the same reason.
//!
//! The decisions are pure functions of [`Probe`]s, tested without ffmpeg:
//! - [`integrity`]: a file is archivable media (readable, every indexed packet present);
//! - [`difference`]: why two segments cannot be joined by stream copy;
//! - [`verify`] and [`junction`]: a joined file holds its segments and decodes across each join.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use relay_pipeline::manifest::JoinMethod;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::Instant;

/// At most this much of a run's standard output is read (ffprobe's JSON is a few KiB).
const STDOUT_CAP: usize = 1 << 20;
/// At most this much of its standard error is kept: a broken stream makes ffmpeg print a line
/// per frame.
const STDERR_CAP: usize = 64 << 10;
/// What a reason quotes of ffmpeg's error output.
const EXCERPT_LINES: usize = 4;
const EXCERPT_CHARS: usize = 600;

/// The binaries, as configured (`pipeline.ffmpeg`, `pipeline.ffprobe`).
#[derive(Debug, Clone)]
pub struct Tools {
    pub ffmpeg: String,
    pub ffprobe: String,
}

/// When every ffmpeg and ffprobe run of one assembly must have finished.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("`{program}` could not be started: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program}` did not finish within pipeline.media_timeout")]
    TimedOut { program: String },
    #[error("reading `{program}`'s output: {source}")]
    Output {
        program: String,
        source: std::io::Error,
    },
}

/// What a finished run left.
#[derive(Debug)]
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// [`excerpt`] of its standard error.
    pub stderr: String,
}

/// Runs `program` with `args` in `dir` until it exits or `deadline` passes (then it is killed).
pub async fn run(
    program: &str,
    args: &[String],
    dir: &Path,
    deadline: Deadline,
) -> Result<Captured, RunError> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A timed-out or cancelled assembly leaves no ffmpeg behind.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RunError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished = async {
        let (out, err) = tokio::join!(
            read_capped(stdout, STDOUT_CAP),
            read_capped(stderr, STDERR_CAP)
        );
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out?, err?))
    };
    match tokio::time::timeout_at(deadline.0, finished).await {
        Err(_) => Err(RunError::TimedOut {
            program: program.to_owned(),
        }),
        Ok(Err(source)) => Err(RunError::Output {
            program: program.to_owned(),
            source,
        }),
        Ok(Ok((status, stdout, stderr))) => Ok(Captured {
            status,
            stdout,
            stderr: excerpt(&String::from_utf8_lossy(&stderr), dir),
        }),
    }
}

/// Reads `reader` to its end (so the process never blocks on a full pipe), keeping `cap` bytes.
async fn read_capped(
    reader: Option<impl AsyncRead + Unpin>,
    cap: usize,
) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let Some(mut reader) = reader else {
        return Ok(kept);
    };
    let mut buffer = [0u8; 8192];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            return Ok(kept);
        }
        let room = cap.saturating_sub(kept.len()).min(read);
        kept.extend_from_slice(&buffer[..room]);
    }
}

/// A few distinct lines of ffmpeg's error output, in order, each with how often it came:
/// `[h264 @ 0x55d…]` becomes `[h264]`, and `dir` (the run's directory) is removed, so the text
/// is the same for every process and never holds a staging path.
pub fn excerpt(stderr: &str, dir: &Path) -> String {
    let dir = dir.display().to_string();
    let mut lines: Vec<(String, usize)> = Vec::new();
    for line in stderr.lines() {
        let mut line = strip_pointers(line.trim());
        if !dir.is_empty() {
            line = line.replace(&format!("{dir}/"), "").replace(&dir, ".");
        }
        if line.is_empty() {
            continue;
        }
        match lines.iter_mut().find(|(seen, _)| *seen == line) {
            Some((_, count)) => *count += 1,
            None => lines.push((line, 1)),
        }
    }
    let shown = lines.len().min(EXCERPT_LINES);
    let mut text = lines[..shown]
        .iter()
        .map(|(line, count)| match count {
            1 => line.clone(),
            n => format!("{line} (×{n})"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if lines.len() > shown {
        text.push_str(&format!("; and {} other messages", lines.len() - shown));
    }
    if text.chars().count() > EXCERPT_CHARS {
        text = text.chars().take(EXCERPT_CHARS).collect::<String>() + "…";
    }
    text
}

/// `[h264 @ 0x55d0c1e2f200] no frame!` → `[h264] no frame!`.
fn strip_pointers(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(" @ 0x") {
        out.push_str(&rest[..at]);
        rest = rest[at + 5..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

/// One stream as ffprobe describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stream {
    pub index: u64,
    /// `video`, `audio`, `data`, …
    pub kind: String,
    pub codec: String,
    /// The container's codec tag (`avc1`, `avc3`, `mp4a`): how parameters travel.
    pub tag: String,
    pub profile: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub pix_fmt: Option<String>,
    pub sample_rate: Option<u64>,
    pub channels: Option<u64>,
    pub layout: Option<String>,
    /// Digest of the codec's configuration (H.264's SPS/PPS, AAC's AudioSpecificConfig): the
    /// concat demuxer keeps only the first segment's.
    pub extradata: Option<String>,
    /// Packets the container's index lists.
    pub indexed: Option<u64>,
    /// Packets actually read.
    pub packets: Option<u64>,
    /// Frames decoded (only when asked).
    pub frames: Option<u64>,
}

impl Stream {
    pub fn is_media(&self) -> bool {
        self.kind == "video" || self.kind == "audio"
    }

    fn describe(&self) -> String {
        format!("{} stream {} ({})", self.kind, self.index, self.codec)
    }
}

/// What ffprobe says of one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    pub streams: Vec<Stream>,
    /// The container's duration, seconds.
    pub duration: Option<f64>,
}

impl Probe {
    /// Audio and video streams, in order: what a join carries.
    pub fn media(&self) -> impl Iterator<Item = &Stream> {
        self.streams.iter().filter(|stream| stream.is_media())
    }

    fn first(&self, kind: &str) -> Option<&Stream> {
        self.streams.iter().find(|stream| stream.kind == kind)
    }

    /// Parses ffprobe's `-of json` answer.
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|error| format!("ffprobe's answer is not JSON: {error}"))?;
        let text = |v: &Value, key: &str| -> Option<String> {
            match v.get(key)? {
                Value::String(s) if s != "N/A" && !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let number = |v: &Value, key: &str| text(v, key)?.parse::<u64>().ok();
        let seconds = |v: &Value, key: &str| text(v, key)?.parse::<f64>().ok();
        let streams = value
            .get("streams")
            .and_then(Value::as_array)
            .map(|streams| {
                streams
                    .iter()
                    .map(|s| Stream {
                        index: number(s, "index").unwrap_or_default(),
                        kind: text(s, "codec_type").unwrap_or_default(),
                        codec: text(s, "codec_name").unwrap_or_default(),
                        tag: text(s, "codec_tag_string").unwrap_or_default(),
                        profile: text(s, "profile"),
                        width: number(s, "width"),
                        height: number(s, "height"),
                        pix_fmt: text(s, "pix_fmt"),
                        sample_rate: number(s, "sample_rate"),
                        channels: number(s, "channels"),
                        layout: text(s, "channel_layout"),
                        extradata: text(s, "extradata_hash"),
                        indexed: number(s, "nb_frames"),
                        packets: number(s, "nb_read_packets"),
                        frames: number(s, "nb_read_frames"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let duration = value.get("format").and_then(|f| seconds(f, "duration"));
        Ok(Self { streams, duration })
    }
}

/// What probing a file found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probed {
    Media(Probe),
    /// ffprobe could not read it as media, with its words.
    Unreadable(String),
}

const STREAM_ENTRIES: &str = "stream=index,codec_type,codec_name,codec_tag_string,profile,width,height,pix_fmt,sample_rate,channels,channel_layout,extradata_hash,nb_frames,nb_read_packets,nb_read_frames";

fn probed(captured: Captured) -> Probed {
    if !captured.status.success() {
        let why = if captured.stderr.is_empty() {
            format!("ffprobe exited with {}", captured.status)
        } else {
            captured.stderr
        };
        return Probed::Unreadable(why);
    }
    match Probe::parse(&captured.stdout) {
        Ok(probe) => Probed::Media(probe),
        Err(why) => Probed::Unreadable(why),
    }
}

impl Tools {
    /// Every stream's parameters, and its packets counted by reading the whole file (a demux,
    /// no decoding: about as costly as reading the file once).
    pub async fn probe(
        &self,
        dir: &Path,
        name: &str,
        deadline: Deadline,
    ) -> Result<Probed, RunError> {
        let args = [
            "-v",
            "error",
            "-hide_banner",
            "-show_data_hash",
            "sha256",
            "-count_packets",
            "-show_entries",
            &format!("{STREAM_ENTRIES}:format=duration"),
            "-of",
            "json",
            &format!("file:{name}"),
        ]
        .map(str::to_owned);
        Ok(probed(run(&self.ffprobe, &args, dir, deadline).await?))
    }

    /// Decodes `seconds` of every stream from `start` on, counting packets read and frames
    /// decoded.
    pub async fn decode_window(
        &self,
        dir: &Path,
        name: &str,
        start: f64,
        seconds: f64,
        deadline: Deadline,
    ) -> Result<Probed, RunError> {
        let args = [
            "-v",
            "error",
            "-hide_banner",
            "-read_intervals",
            &format!("{start:.3}%+{seconds:.3}"),
            "-count_packets",
            "-count_frames",
            "-show_entries",
            STREAM_ENTRIES,
            "-of",
            "json",
            &format!("file:{name}"),
        ]
        .map(str::to_owned);
        Ok(probed(run(&self.ffprobe, &args, dir, deadline).await?))
    }
}

/// Whether `probe` is archivable media: at least one audio or video stream, a duration, and
/// every packet the container's index lists actually there (a cut-short file lacks the last
/// ones; one without its index does not open at all). Compressed data is not decoded: damage
/// inside a frame goes unseen, as it would cost a full decode.
pub fn integrity(probe: &Probe) -> Result<(), String> {
    if probe.media().next().is_none() {
        return Err("no audio or video stream".into());
    }
    if !probe.duration.is_some_and(|seconds| seconds > 0.0) {
        return Err("no duration".into());
    }
    for stream in probe.media() {
        match (stream.packets, stream.indexed) {
            (Some(0) | None, _) => {
                return Err(format!("{} has no readable packet", stream.describe()));
            }
            (Some(read), Some(indexed)) if read < indexed => {
                return Err(format!(
                    "{}: {read} of the {indexed} packets its index lists are readable: the file is cut short",
                    stream.describe()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Why `other` (segment `number`, from 1) cannot follow `first` in a stream-copy join, if it
/// cannot: its audio and video streams must match in kind, codec, codec tag, profile, picture
/// size and format, sample rate, channels, and codec configuration. The concat demuxer checks
/// none of it and exits 0 over a file whose later segments do not decode.
pub fn difference(first: &Probe, other: &Probe, number: usize) -> Option<String> {
    let kinds = |probe: &Probe| -> Vec<String> {
        probe
            .media()
            .map(|s| format!("{} {}", s.kind, s.codec))
            .collect()
    };
    let (ours, theirs): (Vec<&Stream>, Vec<&Stream>) =
        (first.media().collect(), other.media().collect());
    let kinds_differ =
        ours.len() != theirs.len() || ours.iter().zip(&theirs).any(|(a, b)| a.kind != b.kind);
    if kinds_differ {
        return Some(format!(
            "segment {number} has streams [{}], segment 1 [{}]",
            kinds(other).join(", "),
            kinds(first).join(", ")
        ));
    }
    fn show<T: std::fmt::Display>(value: &Option<T>) -> String {
        value
            .as_ref()
            .map_or_else(|| "none".to_owned(), ToString::to_string)
    }
    for (a, b) in ours.iter().zip(&theirs) {
        let fields: [(&str, String, String); 9] = [
            ("codec", a.codec.clone(), b.codec.clone()),
            ("codec tag", a.tag.clone(), b.tag.clone()),
            ("profile", show(&a.profile), show(&b.profile)),
            (
                "picture size",
                format!("{}x{}", show(&a.width), show(&a.height)),
                format!("{}x{}", show(&b.width), show(&b.height)),
            ),
            ("pixel format", show(&a.pix_fmt), show(&b.pix_fmt)),
            ("sample rate", show(&a.sample_rate), show(&b.sample_rate)),
            ("channels", show(&a.channels), show(&b.channels)),
            ("channel layout", show(&a.layout), show(&b.layout)),
            (
                "codec configuration",
                show(&a.extradata),
                show(&b.extradata),
            ),
        ];
        if let Some((field, ours, theirs)) = fields.iter().find(|(_, x, y)| x != y) {
            return Some(if *field == "codec configuration" {
                // Digests say only that they differ.
                format!(
                    "segment {number}'s {} has another codec configuration than segment 1's",
                    b.describe()
                )
            } else {
                format!(
                    "segment {number}'s {} has {field} {theirs}, not segment 1's {ours}",
                    b.describe()
                )
            });
        }
    }
    None
}

/// Why the segments cannot even be re-encoded into one file, if they cannot: each must have
/// the same kinds of stream (video, audio) as the first.
pub fn reencodable(segments: &[Probe]) -> Result<(), String> {
    let layout = |probe: &Probe| {
        (
            probe.first("video").is_some(),
            probe.first("audio").is_some(),
        )
    };
    let Some(first) = segments.first() else {
        return Err("no segment".into());
    };
    let name = |(video, audio): (bool, bool)| match (video, audio) {
        (true, true) => "video and audio",
        (true, false) => "video only",
        (false, true) => "audio only",
        (false, false) => "neither video nor audio",
    };
    for (number, segment) in segments.iter().enumerate().skip(1) {
        if layout(segment) != layout(first) {
            return Err(format!(
                "segment {} has {}, segment 1 {}",
                number + 1,
                name(layout(segment)),
                name(layout(first))
            ));
        }
    }
    Ok(())
}

/// How far a joined file's duration may be from its segments' sum: each join may round to an
/// audio frame or a video frame, never more than this per segment.
pub fn duration_tolerance(segments: usize) -> f64 {
    0.25 + 0.25 * segments as f64
}

/// Whether `joined` holds its `segments`: readable and complete ([`integrity`]); the segments'
/// kinds of stream; their summed duration (within [`duration_tolerance`]); and their packets —
/// a stream copy exactly each stream's sum, a re-encode the sum of the video frames (one per
/// segment may be dropped or doubled at a join). Decoding across the joins is [`junction`]'s.
pub fn verify(segments: &[Probe], joined: &Probe, method: JoinMethod) -> Result<f64, String> {
    integrity(joined).map_err(|why| format!("the joined file is not sound: {why}"))?;
    let first = segments.first().ok_or("no segment")?;
    let expected: f64 = segments.iter().filter_map(|s| s.duration).sum();
    let duration = joined.duration.unwrap_or_default();
    if (duration - expected).abs() > duration_tolerance(segments.len()) {
        return Err(format!(
            "the joined file lasts {duration:.3} s, its segments {expected:.3} s together"
        ));
    }
    let sum =
        |pick: &dyn Fn(&Probe) -> Option<u64>| -> u64 { segments.iter().filter_map(pick).sum() };
    match method {
        JoinMethod::Copy => {
            let wanted: Vec<&Stream> = first.media().collect();
            let got: Vec<&Stream> = joined.media().collect();
            if wanted.len() != got.len()
                || wanted
                    .iter()
                    .zip(&got)
                    .any(|(a, b)| a.kind != b.kind || a.codec != b.codec)
            {
                let describe = |streams: &[&Stream]| {
                    streams
                        .iter()
                        .map(|stream| format!("{} {}", stream.kind, stream.codec))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(format!(
                    "the joined file's streams ({}) are not its segments' ({})",
                    describe(&got),
                    describe(&wanted)
                ));
            }
            for (position, stream) in got.iter().enumerate() {
                let expected = sum(&|segment: &Probe| segment.media().nth(position)?.packets);
                let read = stream.packets.unwrap_or_default();
                if read != expected {
                    return Err(format!(
                        "the joined file's {} has {read} packets, its segments {expected}",
                        stream.describe()
                    ));
                }
            }
        }
        JoinMethod::Reencode => {
            for kind in ["video", "audio"] {
                if first.first(kind).is_some() != joined.first(kind).is_some() {
                    return Err(format!("the joined file's {kind} is not its segments'"));
                }
            }
            if let Some(video) = joined.first("video") {
                let expected = sum(&|segment: &Probe| segment.first("video")?.packets);
                let read = video.packets.unwrap_or_default();
                if read.abs_diff(expected) > segments.len() as u64 {
                    return Err(format!(
                        "the joined file has {read} video frames, its segments {expected}"
                    ));
                }
            }
        }
    }
    Ok(duration)
}

/// Where to look at the join before segment `index` (from 0; never 0): a moment into that
/// segment, so that seeking lands on its own first keyframe, not the previous segment's.
pub fn junction_start(segments: &[Probe], index: usize) -> f64 {
    let before: f64 = segments[..index].iter().filter_map(|s| s.duration).sum();
    let own = segments[index].duration.unwrap_or_default();
    before + (own / 2.0).min(0.5)
}

/// Whether a decoded window (see [`Tools::decode_window`]) after a join played: every packet of
/// every audio and video stream read there decoded to a frame, but for a couple lost to the
/// decoder's start-up. A segment whose codec is not the first one's decodes to nothing.
pub fn junction(window: &Probe, number: usize) -> Result<(), String> {
    for stream in window.media() {
        let packets = stream.packets.unwrap_or_default();
        let frames = stream.frames.unwrap_or_default();
        if packets > 0 && frames + 2 < packets {
            return Err(format!(
                "segment {number} does not play after the join: {frames} of {packets} {} packets decode",
                stream.kind
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(codec: &str, packets: u64) -> Stream {
        Stream {
            index: 0,
            kind: "video".into(),
            codec: codec.into(),
            tag: if codec == "h264" { "avc1" } else { "mp4v" }.into(),
            profile: Some("High".into()),
            width: Some(320),
            height: Some(240),
            pix_fmt: Some("yuv420p".into()),
            extradata: Some(format!("SHA256:{codec}")),
            indexed: Some(packets),
            packets: Some(packets),
            ..Stream::default()
        }
    }

    fn audio(packets: u64) -> Stream {
        Stream {
            index: 1,
            kind: "audio".into(),
            codec: "aac".into(),
            tag: "mp4a".into(),
            profile: Some("LC".into()),
            sample_rate: Some(48_000),
            channels: Some(1),
            layout: Some("mono".into()),
            extradata: Some("SHA256:aac".into()),
            indexed: Some(packets),
            packets: Some(packets),
            ..Stream::default()
        }
    }

    fn segment(codec: &str, seconds: f64) -> Probe {
        Probe {
            streams: vec![video(codec, 125), audio(236)],
            duration: Some(seconds),
        }
    }

    #[test]
    fn parses_ffprobes_answer_with_numbers_as_strings_and_missing_counts() {
        let json = br#"{"streams": [
            {"index": 0, "codec_name": "h264", "codec_type": "video", "codec_tag_string": "avc1",
             "width": 320, "height": 240, "nb_frames": "125", "nb_read_packets": "125",
             "nb_read_frames": "N/A", "extradata_hash": "SHA256:ab"},
            {"index": 1, "codec_name": "aac", "codec_type": "audio", "sample_rate": "48000",
             "channels": 1, "channel_layout": "mono"}],
            "format": {"duration": "5.000000"}}"#;
        let probe = Probe::parse(json).expect("parsed");
        assert_eq!(probe.duration, Some(5.0));
        assert_eq!(probe.streams[0].packets, Some(125));
        assert_eq!(probe.streams[0].frames, None);
        assert_eq!(probe.streams[1].sample_rate, Some(48_000));
        assert!(Probe::parse(b"not json").is_err());
    }

    #[test]
    fn integrity_refuses_cut_short_streamless_and_durationless_files() {
        let sound = segment("h264", 5.0);
        assert_eq!(integrity(&sound), Ok(()));
        let mut cut = sound.clone();
        cut.streams[1].packets = Some(113);
        let why = integrity(&cut).expect_err("cut short");
        assert!(why.contains("113 of the 236"), "{why}");
        let mut empty = sound.clone();
        empty.streams[0].packets = Some(0);
        assert!(integrity(&empty).is_err());
        let data_only = Probe {
            streams: vec![Stream {
                kind: "data".into(),
                ..Stream::default()
            }],
            duration: Some(5.0),
        };
        assert!(integrity(&data_only).is_err());
        let mut timeless = sound;
        timeless.duration = None;
        assert!(integrity(&timeless).is_err());
    }

    #[test]
    fn stream_copy_needs_the_same_codec_parameters_and_configuration() {
        let first = segment("h264", 5.0);
        assert_eq!(difference(&first, &segment("h264", 4.0), 2), None);
        let why = difference(&first, &segment("mpeg4", 5.0), 2).expect("differs");
        assert!(
            why.contains("segment 2's video stream 0 (mpeg4) has codec mpeg4"),
            "{why}"
        );
        let mut bigger = segment("h264", 5.0);
        bigger.streams[0].width = Some(640);
        let why = difference(&first, &bigger, 3).expect("differs");
        assert!(why.contains("picture size 640x240"), "{why}");
        let mut other_sps = segment("h264", 5.0);
        other_sps.streams[0].extradata = Some("SHA256:other".into());
        let why = difference(&first, &other_sps, 2).expect("differs");
        assert!(why.contains("codec configuration"), "{why}");
        let mut stereo = segment("h264", 5.0);
        stereo.streams[1].channels = Some(2);
        assert!(difference(&first, &stereo, 2).is_some());
        let mut silent = segment("h264", 5.0);
        silent.streams.pop();
        let why = difference(&first, &silent, 2).expect("differs");
        assert!(why.contains("[video h264]"), "{why}");
        assert!(reencodable(&[first.clone(), segment("mpeg4", 5.0)]).is_ok());
        assert!(reencodable(&[first, silent]).is_err());
    }

    #[test]
    fn a_copy_join_must_hold_every_packet_and_the_summed_duration() {
        let segments = [segment("h264", 5.0), segment("h264", 5.0)];
        let mut joined = segment("h264", 10.022);
        joined.streams[0].packets = Some(250);
        joined.streams[0].indexed = Some(250);
        joined.streams[1].packets = Some(472);
        joined.streams[1].indexed = Some(472);
        assert_eq!(verify(&segments, &joined, JoinMethod::Copy), Ok(10.022));
        let mut short = joined.clone();
        short.duration = Some(5.0);
        assert!(verify(&segments, &short, JoinMethod::Copy).is_err());
        let mut lost = joined.clone();
        lost.streams[0].packets = Some(249);
        lost.streams[0].indexed = Some(249);
        let why = verify(&segments, &lost, JoinMethod::Copy).expect_err("a packet lost");
        assert!(why.contains("249 packets, its segments 250"), "{why}");
        let mut silent = joined.clone();
        silent.streams.pop();
        assert!(verify(&segments, &silent, JoinMethod::Copy).is_err());
        // A re-encode counts video frames, with a frame of slack per join.
        let mut reencoded = joined;
        reencoded.streams[0].packets = Some(249);
        reencoded.streams[0].indexed = Some(249);
        reencoded.streams[1].packets = Some(430);
        reencoded.streams[1].indexed = Some(430);
        assert!(verify(&segments, &reencoded, JoinMethod::Reencode).is_ok());
        reencoded.streams[0].packets = Some(200);
        reencoded.streams[0].indexed = Some(200);
        assert!(verify(&segments, &reencoded, JoinMethod::Reencode).is_err());
    }

    #[test]
    fn a_window_after_a_join_must_decode() {
        let mut window = segment("h264", 2.0);
        window.streams[0].packets = Some(50);
        window.streams[0].frames = Some(50);
        window.streams[1].packets = Some(86);
        window.streams[1].frames = Some(85);
        assert_eq!(junction(&window, 2), Ok(()));
        window.streams[0].frames = None;
        let why = junction(&window, 2).expect_err("nothing decodes");
        assert!(why.contains("0 of 50 video packets"), "{why}");
        let segments = [
            segment("h264", 5.0),
            segment("h264", 4.0),
            segment("h264", 0.4),
        ];
        assert_eq!(junction_start(&segments, 1), 5.5);
        assert_eq!(junction_start(&segments, 2), 9.2);
    }

    #[test]
    fn excerpts_are_short_stable_and_free_of_paths() {
        let dir = Path::new("/var/lib/zoom-relay/staging/acme/m/concat/work-1");
        let stderr = "[h264 @ 0x563aedddc200] no frame!\n[h264 @ 0x563aeddd0000] no frame!\n\
                      /var/lib/zoom-relay/staging/acme/m/concat/work-1/segment-2.mp4: Invalid data\n";
        let text = excerpt(stderr, dir);
        assert_eq!(text, "[h264] no frame! (×2); segment-2.mp4: Invalid data");
        let many: String = (0..20).map(|i| format!("error {i}\n")).collect();
        let text = excerpt(&many, dir);
        assert!(text.ends_with("and 16 other messages"), "{text}");
        assert!(excerpt(&"x".repeat(5000), dir).chars().count() <= EXCERPT_CHARS + 1);
    }
}
