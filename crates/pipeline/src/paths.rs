//! The one place object paths are built from a recording's identity.
//!
//! Every value that comes from Zoom is sanitised before it becomes part of a path: UUIDs hold `/`
//! and `+`, topics hold zero-width and path-hostile characters, and any component must be valid
//! on every filesystem and object store.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use zoom_api::model::{FileType, MeetingRecordings, RecordingFile};

/// Longest component we write, in bytes (filesystems allow 255).
const MAX_COMPONENT: usize = 120;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unknown placeholder `{{{0}}}`")]
    Unknown(String),
    #[error("unclosed `{{` in the template")]
    Unclosed,
}

/// A path component safe everywhere: no separators, no control or invisible characters, none of
/// `\ : * ? " < > |`, no leading or trailing dots or spaces, never empty, `.` or `..`.
pub fn sanitize(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut last_was_space = false;
    for ch in value.chars() {
        let invisible = ch.is_control()
            || matches!(ch, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}');
        if invisible {
            continue;
        }
        let mapped = match ch {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' | '%' | '#' => '_',
            ch if ch.is_whitespace() => ' ',
            ch => ch,
        };
        if mapped == ' ' {
            if last_was_space {
                continue;
            }
            last_was_space = true;
        } else {
            last_was_space = false;
        }
        if out.len() + mapped.len_utf8() > MAX_COMPONENT {
            break;
        }
        out.push(mapped);
    }
    let trimmed = out.trim_matches(|c: char| c == '.' || c == ' ');
    if trimmed.is_empty() {
        "_".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// A Zoom UUID as a path component: base64's `/` and `+` become `_` and `-` (the URL-safe
/// alphabet, so distinct UUIDs stay distinct).
pub fn uuid_component(uuid: &str) -> String {
    sanitize(&uuid.replace('/', "_").replace('+', "-"))
}

/// Staging's folder for a meeting: the readable UUID plus a digest, so that UUIDs differing only
/// in case stay apart on case-insensitive filesystems.
pub fn meeting_key(uuid: &str) -> String {
    let digest = hex::encode(Sha256::digest(uuid.as_bytes()));
    format!("{}-{}", uuid_component(uuid), &digest[..8])
}

fn extension(file: &RecordingFile) -> String {
    if let Some(extension) = file.file_extension.as_deref().filter(|e| !e.is_empty()) {
        return sanitize(&extension.to_ascii_lowercase());
    }
    match file.file_type {
        FileType::Mp4 => "mp4",
        FileType::M4a => "m4a",
        FileType::Transcript | FileType::Cc => "vtt",
        FileType::Chat => "txt",
        FileType::Csv => "csv",
        FileType::Timeline | FileType::Summary | FileType::ChatMessage => "json",
        _ => "bin",
    }
    .to_owned()
}

/// Renders `{name}` / `{name:format}` placeholders with `lookup`.
fn render(
    template: &str,
    mut lookup: impl FnMut(&str, Option<&str>) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').ok_or(TemplateError::Unclosed)? + open;
        let placeholder = &rest[open + 1..close];
        let (name, format) = match placeholder.split_once(':') {
            Some((name, format)) => (name, Some(format)),
            None => (placeholder, None),
        };
        let value = lookup(name, format).ok_or_else(|| TemplateError::Unknown(name.to_owned()))?;
        out.push_str(&value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Templates of one account, checked once at start.
#[derive(Debug, Clone)]
pub struct PathTemplates {
    pub meeting_dir: String,
    pub file_name: String,
    pub account: String,
}

/// The segment each file belongs to: files sharing a `recording_start` are views of one segment;
/// segments are numbered from 1 in time order.
pub fn segment_numbers<'a>(files: impl Iterator<Item = &'a RecordingFile>) -> HashMap<String, u32> {
    let mut starts: Vec<&str> = Vec::new();
    let files: Vec<&RecordingFile> = files.collect();
    for file in &files {
        if let Some(start) = file.recording_start.as_deref()
            && !starts.contains(&start)
        {
            starts.push(start);
        }
    }
    starts.sort();
    files
        .iter()
        .filter_map(|file| {
            let start = file.recording_start.as_deref()?;
            let index = starts.iter().position(|s| *s == start)? as u32 + 1;
            Some((file.id.clone()?, index))
        })
        .collect()
}

impl PathTemplates {
    pub fn new(account: &relay_core::settings::AccountSettings) -> Result<Self, TemplateError> {
        let templates = Self {
            meeting_dir: account.path_template.clone(),
            file_name: account.file_template.clone(),
            account: account.name.clone(),
        };
        let sample = MeetingRecordings {
            uuid: "sample==".into(),
            start_time: Some("2026-01-01T00:00:00Z".into()),
            ..MeetingRecordings::default()
        };
        let file = RecordingFile {
            id: Some("f".into()),
            ..RecordingFile::default()
        };
        templates.meeting_dir(&sample)?;
        templates.file_name(&sample, &file, false, 1)?;
        Ok(templates)
    }

    /// The meeting's folder under the destination.
    pub fn meeting_dir(&self, meeting: &MeetingRecordings) -> Result<String, TemplateError> {
        let start = meeting
            .start_time
            .as_deref()
            .and_then(|time| DateTime::parse_from_rfc3339(time).ok())
            .map(|time| time.with_timezone(&Utc));
        render(&self.meeting_dir, |name, format| {
            Some(match name {
                "account" => sanitize(&self.account),
                "host_email" => sanitize(meeting.host_email.as_deref().unwrap_or("unknown-host")),
                "topic" => sanitize(&meeting.topic),
                "meeting_uuid" => uuid_component(&meeting.uuid),
                "meeting_id" => meeting
                    .id
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "_".into()),
                "start" => {
                    let format = format.unwrap_or("%Y-%m-%dT%H%M%SZ");
                    let rendered = start
                        .map(|t| t.format(format).to_string())
                        .unwrap_or_else(|| "unknown-date".into());
                    // A format may make folders (`%Y/%m/%d`): sanitise each part, keep the slashes.
                    rendered
                        .split('/')
                        .map(sanitize)
                        .collect::<Vec<_>>()
                        .join("/")
                }
                _ => return None,
            })
        })
    }

    /// A file's name inside the meeting's folder.
    pub fn file_name(
        &self,
        meeting: &MeetingRecordings,
        file: &RecordingFile,
        participant: bool,
        segment: u32,
    ) -> Result<String, TemplateError> {
        let view = if participant {
            format!(
                "participant-{}",
                file.file_name.as_deref().unwrap_or("unknown")
            )
        } else {
            file.recording_type
                .clone()
                .unwrap_or_else(|| file.file_type.as_str().to_ascii_lowercase())
        };
        let rendered = render(&self.file_name, |name, _| {
            Some(match name {
                "segment" => segment.to_string(),
                "view" => sanitize(&view),
                "file_type" => sanitize(&file.file_type.as_str().to_ascii_lowercase()),
                "file_id" => sanitize(file.id.as_deref().unwrap_or("unknown")),
                "ext" => extension(file),
                "meeting_uuid" => uuid_component(&meeting.uuid),
                "topic" => sanitize(&meeting.topic),
                "account" => sanitize(&self.account),
                _ => return None,
            })
        })?;
        Ok(sanitize(&rendered))
    }

    /// Destination paths (relative to the destination's root) for every file, unique: when two
    /// files would share a name (same view twice in a segment, say), the later ones by file id get
    /// the id's start appended.
    ///
    /// `pinned` paths (those an earlier manifest gave, already at the destination) are kept as
    /// they are, and `dir` (the earlier manifest's folder) replaces the template's: a later event
    /// that adds a segment or renames the topic never moves or overwrites what was uploaded.
    pub fn assign(
        &self,
        meeting: &MeetingRecordings,
        files: &[(RecordingFile, bool)],
        dir: Option<&str>,
        pinned: &HashMap<String, String>,
    ) -> Result<HashMap<String, String>, TemplateError> {
        let dir = match dir {
            Some(dir) => dir.to_owned(),
            None => self.meeting_dir(meeting)?,
        };
        let segments = segment_numbers(files.iter().map(|(file, _)| file));
        let mut sorted: Vec<&(RecordingFile, bool)> = files.iter().collect();
        sorted.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let mut taken: std::collections::HashSet<String> = pinned.values().cloned().collect();
        let mut paths = HashMap::new();
        for (file, participant) in sorted {
            let Some(id) = file.id.clone() else { continue };
            if let Some(path) = pinned.get(&id) {
                paths.insert(id, path.clone());
                continue;
            }
            let segment = segments.get(&id).copied().unwrap_or(1);
            let name = self.file_name(meeting, file, *participant, segment)?;
            let mut path = format!("{dir}/{name}");
            if !taken.insert(path.clone()) {
                let short: String = sanitize(&id).chars().take(8).collect();
                path = match name.rsplit_once('.') {
                    Some((stem, ext)) => format!("{dir}/{stem}-{short}.{ext}"),
                    None => format!("{dir}/{name}-{short}"),
                };
                taken.insert(path.clone());
            }
            paths.insert(id, path);
        }
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitises_hostile_topics() {
        assert_eq!(
            sanitize("Quarterly review\u{200b}: plans/risks? <draft>"),
            "Quarterly review_ plans_risks_ _draft_"
        );
        assert_eq!(sanitize("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(sanitize(".."), "_");
        assert_eq!(sanitize("   "), "_");
        assert_eq!(sanitize("a\u{0}b\nc"), "abc");
        assert!(sanitize(&"é".repeat(200)).len() <= MAX_COMPONENT);
    }

    #[test]
    fn uuids_stay_distinct_and_flat() {
        assert_eq!(uuid_component("ab/c+d=="), "ab_c-d==");
        assert_ne!(uuid_component("a/b"), uuid_component("a+b"));
        assert_ne!(meeting_key("abc=="), meeting_key("ABC=="));
    }

    fn meeting() -> MeetingRecordings {
        MeetingRecordings {
            uuid: "/ab+cd//ef==".into(),
            topic: "Plans\u{200b}/2026?".into(),
            host_email: Some("Host@Example.com".into()),
            start_time: Some("2026-03-04T05:06:07Z".into()),
            ..MeetingRecordings::default()
        }
    }

    fn file(id: &str, start: &str, view: &str) -> RecordingFile {
        RecordingFile {
            id: Some(id.into()),
            recording_start: Some(start.into()),
            recording_type: Some(view.into()),
            file_type: FileType::Mp4,
            file_extension: Some("MP4".into()),
            ..RecordingFile::default()
        }
    }

    #[test]
    fn renders_the_default_templates() {
        let account = relay_core::Settings::from_toml(
            "[[accounts]]\nname='acme'\naccount_id='a'\nclient_id='c'\nclient_secret='s'\nsecret_tokens=['t']\n",
        )
        .expect("settings")
        .accounts
        .remove(0);
        let templates = PathTemplates::new(&account).expect("valid templates");
        let files = vec![
            (file("f1", "2026-03-04T05:06:07Z", "gallery_view"), false),
            (file("f2", "2026-03-04T06:00:00Z", "gallery_view"), false),
            (file("f3", "2026-03-04T06:00:00Z", "gallery_view"), false),
        ];
        let paths = templates
            .assign(&meeting(), &files, None, &HashMap::new())
            .expect("paths");
        assert_eq!(
            paths["f1"],
            "Host@Example.com/2026/03/04/Plans_2026_-_ab-cd__ef==/1-gallery_view.mp4"
        );
        assert_eq!(
            paths["f2"],
            "Host@Example.com/2026/03/04/Plans_2026_-_ab-cd__ef==/2-gallery_view.mp4"
        );
        assert_eq!(
            paths["f3"],
            "Host@Example.com/2026/03/04/Plans_2026_-_ab-cd__ef==/2-gallery_view-f3.mp4"
        );
    }

    #[test]
    fn pinned_paths_stay_put_when_a_segment_arrives_later() {
        let account = relay_core::Settings::from_toml(
            "[[accounts]]\nname='acme'\naccount_id='a'\nclient_id='c'\nclient_secret='s'\nsecret_tokens=['t']\n",
        )
        .expect("settings")
        .accounts
        .remove(0);
        let templates = PathTemplates::new(&account).expect("valid templates");
        let later = vec![(file("f2", "2026-03-04T06:00:00Z", "gallery_view"), false)];
        let first = templates
            .assign(&meeting(), &later, None, &HashMap::new())
            .expect("paths");
        assert!(first["f2"].ends_with("/1-gallery_view.mp4"));
        // The earlier segment shows up afterwards: f2 keeps its name, f1 does not take it.
        let both = vec![
            (file("f1", "2026-03-04T05:06:07Z", "gallery_view"), false),
            (file("f2", "2026-03-04T06:00:00Z", "gallery_view"), false),
        ];
        let dir = first["f2"]
            .trim_end_matches("/1-gallery_view.mp4")
            .to_owned();
        let again = templates
            .assign(&meeting(), &both, Some(&dir), &first)
            .expect("paths");
        assert_eq!(again["f2"], first["f2"]);
        assert_eq!(again["f1"], format!("{dir}/1-gallery_view-f1.mp4"));
    }

    #[test]
    fn refuses_unknown_placeholders() {
        let templates = PathTemplates {
            meeting_dir: "{nope}".into(),
            file_name: "{segment}".into(),
            account: "a".into(),
        };
        assert_eq!(
            templates.meeting_dir(&meeting()),
            Err(TemplateError::Unknown("nope".into()))
        );
    }
}
