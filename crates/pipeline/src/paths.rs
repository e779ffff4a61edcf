//! The one place destination paths are built from a recording's identity.
//!
//! Every value that comes from Zoom becomes a key component through
//! [`relay_storage::names`]: UUIDs hold `/` and `+`, topics hold zero-width, bidi and
//! path-hostile characters, and no component may exceed what any store allows. The paths this
//! module returns are the keys written, byte for byte: the manifest records them as they are.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use relay_storage::names::{self, MAX_COMPONENT_BYTES, component, component_within, short_digest};
use zoom_api::model::{FileType, MeetingRecordings, RecordingFile};

use crate::settings::AccountSettings;

/// Longest a single placeholder's value may make a component: several fit in one, and when
/// they do not, the free-text ones (account, host, topic) are cut further — never the uuid.
const MAX_VALUE_BYTES: usize = 120;
/// The shortest a free-text value is cut to.
const MIN_VALUE_BYTES: usize = 8;
/// Longest file extension kept when a name must be cut.
const MAX_EXTENSION_BYTES: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unknown placeholder `{{{0}}}`")]
    Unknown(String),
    #[error("unclosed `{{` in the template")]
    Unclosed,
    #[error("a file template must not make folders (`/`)")]
    FileTemplateWithFolder,
    #[error(
        "path_template must contain `{{meeting_uuid}}`: two meetings must never share a folder"
    )]
    MissingMeetingUuid,
}

/// A Zoom UUID as a path component: base64's `/` and `+` become `_` and `-` (the URL-safe
/// alphabet, so distinct UUIDs stay distinct).
pub fn uuid_component(uuid: &str) -> String {
    component(&uuid.replace('/', "_").replace('+', "-"))
}

fn extension(file: &RecordingFile) -> String {
    if let Some(extension) = file.file_extension.as_deref().filter(|e| !e.is_empty()) {
        return component_within(&extension.to_ascii_lowercase(), MAX_EXTENSION_BYTES);
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

/// Cuts a rendered file name to the component limit, keeping its extension.
fn fit_file_name(name: &str, limit: usize) -> String {
    if name.len() <= limit {
        return name.to_owned();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if ext.len() <= MAX_EXTENSION_BYTES && !stem.is_empty() => {
            let stem = names::truncate(stem, limit - ext.len() - 1).trim_end_matches([' ', '.']);
            format!("{stem}.{ext}")
        }
        _ => names::truncate(name, limit).to_owned(),
    }
}

/// Appends `-{suffix}` before a name's extension.
fn with_suffix(name: &str, suffix: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if ext.len() <= MAX_EXTENSION_BYTES && !stem.is_empty() => {
            format!("{stem}-{suffix}.{ext}")
        }
        _ => format!("{name}-{suffix}"),
    }
}

/// The segment each file belongs to: files sharing a `recording_start` are views of one segment;
/// segments are numbered from 1 in time order.
pub fn segment_numbers<'a>(files: impl Iterator<Item = &'a RecordingFile>) -> HashMap<String, u32> {
    let files: Vec<&RecordingFile> = files.collect();
    let mut starts: Vec<&str> = files
        .iter()
        .filter_map(|file| file.recording_start.as_deref())
        .collect();
    starts.sort();
    starts.dedup();
    files
        .iter()
        .filter_map(|file| {
            let start = file.recording_start.as_deref()?;
            let index = starts.iter().position(|s| *s == start)? as u32 + 1;
            Some((file.id.clone()?, index))
        })
        .collect()
}

/// Templates of one account, checked once at start.
#[derive(Debug, Clone)]
pub struct PathTemplates {
    pub meeting_dir: String,
    pub file_name: String,
    pub account: String,
    pub owner: crate::owner::OwnerSettings,
}

impl PathTemplates {
    pub fn new(account: &AccountSettings) -> Result<Self, TemplateError> {
        if account.file_template.contains('/') {
            return Err(TemplateError::FileTemplateWithFolder);
        }
        if !account.path_template.contains("{meeting_uuid}") {
            return Err(TemplateError::MissingMeetingUuid);
        }
        let templates = Self {
            meeting_dir: account.path_template.clone(),
            file_name: account.file_template.clone(),
            account: account.name.clone(),
            owner: account.owner.clone(),
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

    /// A meeting's placeholders, shared by both templates. `None` for an unknown name.
    fn meeting_value(
        &self,
        meeting: &MeetingRecordings,
        name: &str,
        format: Option<&str>,
        cap: usize,
    ) -> Option<String> {
        let value = |text: &str| component_within(text, cap);
        Some(match name {
            "account" => value(&self.account),
            "host_email" => value(meeting.host_email.as_deref().unwrap_or("unknown-host")),
            "owner" => value(&self.owner.owner_of(meeting.host_email.as_deref())),
            "topic" => value(&meeting.topic),
            "meeting_uuid" => uuid_component(&meeting.uuid),
            "meeting_id" => meeting
                .id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "_".into()),
            "kind" => if meeting.is_webinar() {
                "webinar"
            } else {
                "meeting"
            }
            .into(),
            "start" => {
                let start = meeting
                    .start_time
                    .as_deref()
                    .and_then(|time| DateTime::parse_from_rfc3339(time).ok())
                    .map(|time| time.with_timezone(&Utc));
                let format = format.unwrap_or("%Y-%m-%dT%H%M%SZ");
                let mut rendered = String::new();
                match start {
                    Some(time) => {
                        use std::fmt::Write;
                        // An invalid strftime format is an error of the template, not a panic.
                        if write!(rendered, "{}", time.format(format)).is_err() {
                            return Some("invalid-date-format".into());
                        }
                    }
                    None => rendered.push_str("unknown-date"),
                }
                // A format may make folders (`%Y/%m/%d`): each part on its own, slashes kept.
                rendered
                    .split('/')
                    .map(component)
                    .collect::<Vec<_>>()
                    .join("/")
            }
            _ => return None,
        })
    }

    /// The meeting's folder under the destination. Injective: the uuid is in it, whole, however
    /// long the other values are (they are cut to fit the component limit instead).
    pub fn meeting_dir(&self, meeting: &MeetingRecordings) -> Result<String, TemplateError> {
        let mut parts = Vec::new();
        for piece in split_template(&self.meeting_dir) {
            let mut cap = MAX_VALUE_BYTES;
            let rendered = loop {
                let rendered = render(piece, |name, format| {
                    self.meeting_value(meeting, name, format, cap)
                })?;
                let fits = rendered
                    .split('/')
                    .all(|part| part.len() <= MAX_COMPONENT_BYTES);
                if fits || cap <= MIN_VALUE_BYTES {
                    break rendered;
                }
                cap = (cap / 2).max(MIN_VALUE_BYTES);
            };
            parts.extend(
                rendered
                    .split('/')
                    .filter(|part| !part.is_empty())
                    .map(component),
            );
        }
        Ok(parts.join("/"))
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
        let rendered = render(&self.file_name, |name, format| {
            Some(match name {
                "segment" => segment.to_string(),
                "view" => component_within(&view, MAX_VALUE_BYTES),
                "file_type" => component(&file.file_type.as_str().to_ascii_lowercase()),
                "file_id" => component_within(file.id.as_deref().unwrap_or("unknown"), 64),
                "ext" => extension(file),
                other => return self.meeting_value(meeting, other, format, MAX_VALUE_BYTES),
            })
        })?;
        // Room for a `-{digest}` that tells colliding names apart.
        Ok(fit_file_name(
            &component(&rendered),
            MAX_COMPONENT_BYTES - 17,
        ))
    }

    /// Destination paths (relative to the destination's root) for every file, unique: when two
    /// files would share a name (the same view twice in a segment, say), the later ones by file
    /// id get a digest of their id appended, so distinct files never share a key.
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
        sorted.dedup_by(|a, b| a.0.id == b.0.id);
        let mut taken: HashSet<String> = pinned.values().cloned().collect();
        let mut paths = HashMap::new();
        for (file, participant) in sorted {
            let Some(id) = file.id.clone() else { continue };
            if let Some(path) = pinned.get(&id) {
                paths.insert(id, path.clone());
                continue;
            }
            let segment = segments.get(&id).copied().unwrap_or(1);
            let name = self.file_name(meeting, file, *participant, segment)?;
            let mut path = join(&dir, &name);
            let mut attempt = 0u32;
            while !taken.insert(path.clone()) {
                // A digest of the id tells distinct files apart; the counter only matters if
                // two names and digests ever met.
                let suffix = match attempt {
                    0 => short_digest(&id, 8),
                    n => format!("{}{n}", short_digest(&id, 8)),
                };
                path = join(&dir, &with_suffix(&name, &suffix));
                attempt += 1;
            }
            paths.insert(id, path);
        }
        Ok(paths)
    }
}

/// Splits a template into its path pieces on `/`, but not on one inside a placeholder
/// (`{start:%Y/%m/%d}` stays whole).
fn split_template(template: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, ch) in template.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '/' if depth == 0 => {
                pieces.push(&template[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    pieces.push(&template[start..]);
    pieces
        .into_iter()
        .filter(|piece| !piece.is_empty())
        .collect()
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountSettings {
        toml_account("")
    }

    fn toml_account(extra: &str) -> AccountSettings {
        #[derive(serde::Deserialize)]
        struct Holder {
            accounts: Vec<AccountSettings>,
        }
        let text = format!(
            "[[accounts]]\nname='acme'\naccount_id='a'\nclient_id='c'\nclient_secret='s'\nsecret_tokens=['t']\n{extra}"
        );
        let holder: Holder = toml::from_str(&text).expect("account");
        holder.accounts.into_iter().next().expect("one")
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
        let templates = PathTemplates::new(&account()).expect("valid templates");
        let files = vec![
            (file("f1", "2026-03-04T05:06:07Z", "gallery_view"), false),
            (file("f2", "2026-03-04T06:00:00Z", "gallery_view"), false),
            (file("f3", "2026-03-04T06:00:00Z", "gallery_view"), false),
        ];
        let paths = templates
            .assign(&meeting(), &files, None, &HashMap::new())
            .expect("paths");
        let dir = "Host@Example.com/2026/03/04/Plans_2026_-_ab-cd__ef==";
        assert_eq!(paths["f1"], format!("{dir}/1-gallery_view.mp4"));
        assert_eq!(paths["f2"], format!("{dir}/2-gallery_view.mp4"));
        assert_eq!(
            paths["f3"],
            format!("{dir}/2-gallery_view-{}.mp4", short_digest("f3", 8))
        );
    }

    #[test]
    fn three_same_named_files_and_ids_differing_by_slash_get_distinct_paths() {
        let templates = PathTemplates::new(&toml_account("file_template = '{file_id}.{ext}'"))
            .expect("templates");
        let files: Vec<(RecordingFile, bool)> = ["a/b", "a_b", "a:b", "a?b"]
            .iter()
            .map(|id| (file(id, "2026-03-04T05:06:07Z", "gallery_view"), false))
            .collect();
        let paths = templates
            .assign(&meeting(), &files, None, &HashMap::new())
            .expect("paths");
        let distinct: HashSet<&String> = paths.values().collect();
        assert_eq!(distinct.len(), 4, "{paths:?}");
    }

    #[test]
    fn non_latin_and_very_long_topics_stay_within_every_stores_limit() {
        let templates = PathTemplates::new(&account()).expect("templates");
        for topic in [
            "Unity_4 зум 18:40 [142]".to_owned(),
            "Совещание отдела разработки и планирования".repeat(3),
            "x".repeat(300),
        ] {
            let meeting = MeetingRecordings { topic, ..meeting() };
            let files = vec![(file("f1", "2026-03-04T05:06:07Z", &"v".repeat(300)), false)];
            let paths = templates
                .assign(&meeting, &files, None, &HashMap::new())
                .expect("paths");
            for part in paths["f1"].split('/') {
                assert!(
                    part.len() <= MAX_COMPONENT_BYTES,
                    "{} bytes: {part}",
                    part.len()
                );
                assert!(
                    object_store::path::PathPart::parse(part).is_ok(),
                    "stored as is: {part}"
                );
            }
            assert!(paths["f1"].ends_with(".mp4"), "{}", paths["f1"]);
        }
    }

    #[test]
    fn the_uuid_survives_whole_however_long_the_other_values_are() {
        let templates = PathTemplates::new(&toml_account(
            "path_template = '{account} {host_email} {topic} {meeting_uuid}/{start:%Y/%m}'",
        ))
        .expect("templates");
        let meeting = MeetingRecordings {
            topic: "Совещание".repeat(40),
            host_email: Some(format!("{}@example.com", "h".repeat(150))),
            ..meeting()
        };
        let dir = templates.meeting_dir(&meeting).expect("dir");
        let first = dir.split('/').next().expect("a folder");
        assert!(first.len() <= MAX_COMPONENT_BYTES, "{} bytes", first.len());
        assert!(first.ends_with(&uuid_component(&meeting.uuid)), "{first}");
        assert!(dir.ends_with("/2026/03"), "{dir}");
    }

    #[test]
    fn a_path_template_without_the_uuid_is_refused() {
        assert_eq!(
            PathTemplates::new(&toml_account(
                "path_template = '{host_email}/{start:%Y-%m-%d}'"
            ))
            .err(),
            Some(TemplateError::MissingMeetingUuid)
        );
    }

    #[test]
    fn a_file_listed_twice_gets_one_path() {
        let templates = PathTemplates::new(&account()).expect("templates");
        let twice = vec![
            (file("f1", "2026-03-04T05:06:07Z", "gallery_view"), false),
            (file("f1", "2026-03-04T05:06:07Z", "gallery_view"), false),
        ];
        let paths = templates
            .assign(&meeting(), &twice, None, &HashMap::new())
            .expect("paths");
        assert_eq!(paths.len(), 1);
    }

    #[test]
    fn the_owner_placeholder_follows_the_accounts_owner_rule() {
        let templates = PathTemplates::new(&toml_account(
            "path_template = '{owner}/{kind}/{meeting_uuid}'\nowner = { rule = 'rewrite', domains = { 'example.com' = 'corp.example.org' }, default = 'unassigned' }",
        ))
        .expect("templates");
        let dir = templates.meeting_dir(&meeting()).expect("dir");
        assert!(dir.starts_with("host@corp.example.org/meeting/"), "{dir}");
        let nobody = MeetingRecordings {
            host_email: None,
            ..meeting()
        };
        let dir = templates.meeting_dir(&nobody).expect("dir");
        assert!(dir.starts_with("unassigned/meeting/"), "{dir}");
    }

    #[test]
    fn file_templates_take_the_meetings_placeholders() {
        let templates = PathTemplates::new(&toml_account(
            "file_template = '{start:%Y%m%d}-{host_email}-{meeting_id}-{kind}-{view}.{ext}'",
        ))
        .expect("every placeholder the docs promise");
        let name = templates
            .file_name(
                &meeting(),
                &file("f1", "2026-03-04T05:06:07Z", "gallery_view"),
                false,
                1,
            )
            .expect("name");
        assert_eq!(name, "20260304-Host@Example.com-_-meeting-gallery_view.mp4");
    }

    #[test]
    fn pinned_paths_stay_put_when_a_segment_arrives_later() {
        let templates = PathTemplates::new(&account()).expect("valid templates");
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
        assert_eq!(
            again["f1"],
            format!("{dir}/1-gallery_view-{}.mp4", short_digest("f1", 8))
        );
    }

    #[test]
    fn refuses_unknown_placeholders_and_folders_in_file_names() {
        let templates = PathTemplates {
            meeting_dir: "{nope}-{meeting_uuid}".into(),
            file_name: "{segment}".into(),
            account: "a".into(),
            owner: Default::default(),
        };
        assert_eq!(
            templates.meeting_dir(&meeting()),
            Err(TemplateError::Unknown("nope".into()))
        );
        assert!(matches!(
            PathTemplates::new(&toml_account("file_template = '{view}/{ext}'")),
            Err(TemplateError::FileTemplateWithFolder)
        ));
    }
}
