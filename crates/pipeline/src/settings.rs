//! The sections the pipeline owns: `[pipeline]` (staging, retries, each stage's capacity) and
//! `[[accounts]]` (each Zoom account: its app, its destination, what to archive).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use relay_core::consumer::LoopSettings;
use relay_core::settings::{InvalidSetting, redacted};
use relay_storage::StoreUrl;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zoom_api::Credentials;

/// Most connections one file is fetched over.
const MAX_DOWNLOAD_RANGES: usize = 16;

/// The consumers: where files are staged, how much each stage takes on, how failures retry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Object store URL for files between download and upload. A local directory by default;
    /// S3-compatible when the stages run on several machines.
    pub staging: StoreUrl,
    /// Options for the staging store, as `object_store` names them.
    #[serde(serialize_with = "redacted_map")]
    pub staging_options: BTreeMap<String, SecretString>,
    /// Delays between attempts, one RabbitMQ TTL queue each; attempts past the last reuse it.
    pub retry_delays: Vec<humantime_serde::Serde<Duration>>,
    /// Attempts before a message goes to its stage's dead-letter queue.
    pub max_attempts: u32,
    /// Deliveries allowed (consumers that crashed or were killed holding the message) before it
    /// is dead-lettered with `delivery_limit`. Enforced by the consumers: change it any time.
    pub delivery_limit: u32,
    /// In-flight work is given this long to finish on shutdown.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How long a file may stay `processing` at Zoom before the meeting fails with
    /// `file_processing_timeout`. Waiting spends no attempts.
    #[serde(with = "humantime_serde")]
    pub processing_deadline: Duration,
    /// How long one download may hold its delivery: past it the bytes so far are kept as a
    /// part in staging and the task continues from there in a new delivery, so no unit of work
    /// grows with the file (RabbitMQ cancels a consumer holding a delivery past its
    /// `consumer_timeout`, 30 min by default). Keep it well below that timeout.
    #[serde(with = "humantime_serde")]
    pub download_hold_limit: Duration,
    /// Connections one large file is fetched over at once, each a `Range` of it written as its
    /// own part; the parts are joined and hashed as a whole once all are in (a second write of
    /// the file in staging). Worth it where one connection to Zoom is slower than the link.
    pub download_ranges: usize,
    /// A file is split into ranges no shorter than this: smaller files, and the last part of
    /// one, go over one connection.
    pub download_range_min_bytes: u64,
    /// Read back and hash every copied file at the destination (otherwise: its size there and
    /// the hash of the bytes sent). A file renamed within one store is checked by size.
    pub verify_readback: bool,
    /// The ffmpeg binary `concat_media` runs.
    pub ffmpeg: String,
    /// The ffprobe binary that checks media: the segments before a join, the joined file, and
    /// every MP4/M4A of accounts with `verify_media` (docs/media.md).
    pub ffprobe: String,
    /// How long one assembly may spend in ffmpeg and ffprobe altogether. A join still running
    /// then is stopped and skipped (its segments are archived as they are): one delivery must
    /// stay below RabbitMQ's 30-minute ack timeout.
    #[serde(with = "humantime_serde")]
    pub media_timeout: Duration,
    pub plan: StageSettings,
    pub download: StageSettings,
    pub assemble: StageSettings,
    pub upload: StageSettings,
    pub cleanup: StageSettings,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            staging: StoreUrl::new("file:///var/lib/zoom-relay/staging"),
            staging_options: BTreeMap::new(),
            retry_delays: [10, 60, 300, 900]
                .into_iter()
                .map(|secs| Duration::from_secs(secs).into())
                .collect(),
            max_attempts: 8,
            delivery_limit: 20,
            drain_timeout: Duration::from_secs(30),
            processing_deadline: Duration::from_secs(24 * 3600),
            download_hold_limit: Duration::from_secs(10 * 60),
            download_ranges: 1,
            download_range_min_bytes: 64 * 1024 * 1024,
            verify_readback: true,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            media_timeout: Duration::from_secs(20 * 60),
            plan: StageSettings::new(8, 16),
            download: StageSettings::new(4, 4),
            assemble: StageSettings::new(4, 16),
            upload: StageSettings::new(4, 4),
            cleanup: StageSettings::new(2, 8),
        }
    }
}

/// How much one stage process works on at once.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageSettings {
    /// Messages handled concurrently.
    pub concurrency: usize,
    /// Messages the broker sends ahead (quorum queues cap it at 2,000).
    pub prefetch: u16,
}

impl StageSettings {
    pub const fn new(concurrency: usize, prefetch: u16) -> Self {
        Self {
            concurrency,
            prefetch,
        }
    }
}

pub(crate) fn redacted_map<S: serde::Serializer>(
    map: &BTreeMap<String, SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut out = serializer.serialize_map(Some(map.len()))?;
    for key in map.keys() {
        out.serialize_entry(key, "[REDACTED]")?;
    }
    out.end()
}

impl PipelineSettings {
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays.iter().map(|delay| **delay).collect()
    }

    /// The consumer loop's settings for one stage.
    pub fn loop_settings(&self, stage: StageSettings) -> LoopSettings {
        LoopSettings {
            concurrency: stage.concurrency,
            prefetch: stage.prefetch,
            max_attempts: self.max_attempts,
            delivery_limit: self.delivery_limit,
            drain_timeout: self.drain_timeout,
        }
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.retry_delays.is_empty() {
            return Err(InvalidSetting::new(
                "pipeline.retry_delays",
                "needs at least one delay",
            ));
        }
        if self.retry_delays().iter().any(Duration::is_zero) {
            return Err(InvalidSetting::new(
                "pipeline.retry_delays",
                "delays must be positive",
            ));
        }
        if self.max_attempts == 0 {
            return Err(InvalidSetting::new(
                "pipeline.max_attempts",
                "must be at least 1",
            ));
        }
        if self.delivery_limit == 0 {
            return Err(InvalidSetting::new(
                "pipeline.delivery_limit",
                "must be at least 1",
            ));
        }
        // Each connection holds its own part writer (up to 15 MiB on S3 staging).
        if !(1..=MAX_DOWNLOAD_RANGES).contains(&self.download_ranges) {
            return Err(InvalidSetting::new(
                "pipeline.download_ranges",
                format!("must be 1 to {MAX_DOWNLOAD_RANGES}"),
            ));
        }
        if self.media_timeout.is_zero() {
            return Err(InvalidSetting::new(
                "pipeline.media_timeout",
                "must be positive",
            ));
        }
        if !self.staging.expose().contains("://") {
            return Err(InvalidSetting::new(
                "pipeline.staging",
                "must be an object store URL (file:///…, s3://…, gs://…, az://…)",
            ));
        }
        for (key, stage) in [
            ("pipeline.plan", &self.plan),
            ("pipeline.download", &self.download),
            ("pipeline.assemble", &self.assemble),
            ("pipeline.upload", &self.upload),
            ("pipeline.cleanup", &self.cleanup),
        ] {
            if stage.concurrency == 0 || stage.prefetch == 0 {
                return Err(InvalidSetting::new(
                    key,
                    "concurrency and prefetch must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteAfterUpload {
    #[default]
    Off,
    Trash,
    Delete,
}

/// A Zoom Server-to-Server OAuth app, as its admin created it on the Zoom App Marketplace, and
/// what zoom-relay does with the account's recordings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// Our name for the account: appears in logs, metrics, message headers and paths.
    pub name: String,
    /// Zoom's id of the account. An event is acted on only for the account whose secret token
    /// signed it, and only if it names this id.
    pub account_id: String,
    /// The Server-to-Server OAuth app's client id (leave out with `user_oauth`).
    #[serde(default)]
    pub client_id: String,
    #[serde(default = "empty_secret", serialize_with = "redacted")]
    pub client_secret: SecretString,
    /// A user-managed OAuth app instead of a Server-to-Server one: exactly one of the two.
    #[serde(default)]
    pub user_oauth: Option<UserOAuthSettings>,
    /// The app's current secret token and, during a rotation, the previous one.
    #[serde(serialize_with = "redacted_list")]
    pub secret_tokens: Vec<SecretString>,
    /// Where this account's recordings go: an object store URL (`file:///srv/recordings`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`).
    #[serde(default = "default_destination")]
    pub destination: StoreUrl,
    /// Where this account's webinars go instead, when they go elsewhere (a platform's webinar
    /// category, another bucket): same form and `destination_options` as `destination`.
    #[serde(default)]
    pub webinar_destination: Option<StoreUrl>,
    /// Options for the destination store (`aws_endpoint`, `aws_region`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `google_service_account`, …), as `object_store` names them.
    #[serde(default, serialize_with = "redacted_map")]
    pub destination_options: BTreeMap<String, SecretString>,
    /// A meeting's folder under the destination. Placeholders: `{account}`, `{host_email}`,
    /// `{topic}`, `{meeting_uuid}`, `{meeting_id}`, `{kind}`, `{start:STRFTIME}`.
    #[serde(default = "default_path_template")]
    pub path_template: String,
    /// A file's name in that folder. Placeholders: `{segment}`, `{view}`, `{file_type}`,
    /// `{file_id}`, `{ext}`, and every placeholder of `path_template`.
    #[serde(default = "default_file_template")]
    pub file_template: String,
    /// Who owns each recording, from its host's email: `{owner}` in the templates and
    /// `owner` in the manifest.
    #[serde(default)]
    pub owner: crate::owner::OwnerSettings,
    #[serde(default = "yes")]
    pub meetings: bool,
    #[serde(default = "yes")]
    pub webinars: bool,
    /// Zoom `file_type`s to keep (`MP4`, `M4A`, `TRANSCRIPT`, `CHAT`, `CC`, …); empty keeps all,
    /// participant audio included.
    #[serde(default)]
    pub file_types: Vec<String>,
    /// Whether the account takes new work. `false` keeps its configuration (and the ingress
    /// still accepts and archives its events, so nothing is lost) but plan skips its events
    /// and reconciliation leaves it alone until it is switched on again, then catches up.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Only recordings whose topic matches this regular expression (Rust `regex` syntax,
    /// `(?i)` for case-insensitive; matched anywhere in the topic unless anchored).
    #[serde(default)]
    pub include_topic: Option<String>,
    /// Recordings whose topic matches this regular expression are skipped.
    #[serde(default)]
    pub exclude_topic: Option<String>,
    /// Only these hosts' recordings (emails, case-insensitive); empty means everyone.
    #[serde(default)]
    pub include_hosts: Vec<String>,
    #[serde(default)]
    pub exclude_hosts: Vec<String>,
    /// Recordings of shorter meetings are skipped.
    #[serde(default)]
    pub min_duration_minutes: u32,
    /// Join the MP4 segments of each view into one file with ffmpeg: by stream copy when the
    /// segments' streams match, else per `concat_reencode` (docs/media.md).
    #[serde(default)]
    pub concat_media: bool,
    /// Segments whose codecs or parameters differ are re-encoded (H.264/AAC) into the joined
    /// file; otherwise that join is skipped, with the reason in the manifest. Costs CPU time of
    /// the order of the recording's length.
    #[serde(default)]
    pub concat_reencode: bool,
    /// Every MP4 and M4A must pass an ffprobe check (readable container, every indexed packet
    /// present) before it counts as archived; a broken one is retried, then left at Zoom and
    /// listed as missing with `media_broken` while the rest of the meeting goes on.
    #[serde(default)]
    pub verify_media: bool,
    /// After every file of a meeting is verified at the destination: `off`, `trash` (recoverable
    /// for 30 days at Zoom) or `delete` (permanent).
    #[serde(default)]
    pub delete_after_upload: DeleteAfterUpload,
    /// Richer metadata written into `meeting.json`, each behind its own optional scope:
    /// `participants` (and webinar panelists), `instances` (a recurring meeting's past
    /// occurrences), `summary` (AI Companion), `qa` (webinar Q&A). A scope the app lacks
    /// disables that one, with a log line and a `zoom-relay check` entry.
    #[serde(default)]
    pub metadata: Vec<Metadata>,
    /// Wait this many days after the upload before deleting.
    #[serde(default)]
    pub delete_after_days: u32,
    /// Where `zoom-relay notifications` POSTs when a meeting landed or failed for good
    /// (docs/notifications.md). With `notification_secret`, or not at all.
    #[serde(default)]
    pub notification_url: Option<String>,
    /// The Standard Webhooks signing secret shared with the receiver: `whsec_` + base64.
    #[serde(default, serialize_with = "redacted_option")]
    pub notification_secret: Option<SecretString>,
}

fn redacted_option<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_some("[REDACTED]"),
        None => serializer.serialize_none(),
    }
}

/// Optional metadata an account fetches into the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metadata {
    Participants,
    Instances,
    Summary,
    Qa,
    /// The meeting's (or webinar's) alternative hosts, each through the account's `owner` rule.
    CoOwners,
}

/// A user-managed OAuth app, authorized once by a user of the account: its refresh token seeds
/// the chain of rotated tokens kept in staging (docs/zoom-apps.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserOAuthSettings {
    pub client_id: String,
    #[serde(serialize_with = "redacted")]
    pub client_secret: SecretString,
    /// The refresh token from the authorization. Used once, the first time: Zoom replaces it
    /// on every use, and the current one lives in staging. A token put here later (after the
    /// app was authorized again) replaces the stored chain at the next start.
    #[serde(serialize_with = "redacted")]
    pub refresh_token: SecretString,
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

fn redacted_list<S: serde::Serializer>(
    list: &[SecretString],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut out = serializer.serialize_seq(Some(list.len()))?;
    for _ in list {
        out.serialize_element("[REDACTED]")?;
    }
    out.end()
}

/// A topic filter's pattern, compiled. Bounded: the `regex` crate matches in linear time (no
/// backtracking), and a pattern whose program would exceed 1 MiB is refused.
pub fn topic_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|error| format!("is not a regular expression: {error}"))
}

fn yes() -> bool {
    true
}

fn default_destination() -> StoreUrl {
    StoreUrl::new("file:///var/lib/zoom-relay/recordings")
}

fn default_path_template() -> String {
    "{host_email}/{start:%Y/%m/%d}/{topic}-{meeting_uuid}".into()
}

fn default_file_template() -> String {
    "{segment}-{view}.{ext}".into()
}

impl AccountSettings {
    pub fn credentials(&self) -> Credentials {
        match &self.user_oauth {
            Some(app) => Credentials {
                account_id: self.account_id.clone(),
                client_id: app.client_id.clone(),
                client_secret: app.client_secret.clone(),
                refresh_token: Some(app.refresh_token.clone()),
                grant_store: None,
            },
            None => Credentials {
                account_id: self.account_id.clone(),
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.clone(),
                refresh_token: None,
                grant_store: None,
            },
        }
    }

    pub fn deletes(&self) -> bool {
        self.delete_after_upload != DeleteAfterUpload::Off
    }
}

/// Checks every account on its own and all of them together: two accounts must never share a
/// name, a Zoom account id or a secret token, or one's event could act for the other.
pub fn validate_accounts(accounts: &[AccountSettings]) -> Result<(), InvalidSetting> {
    let mut names = HashMap::new();
    let mut ids = HashMap::new();
    let mut tokens: HashMap<&str, String> = HashMap::new();
    for (index, account) in accounts.iter().enumerate() {
        let key = |field: &str| format!("accounts[{index}].{field}");
        let blank = |value: &str| value.trim().is_empty();
        if blank(&account.name) {
            return Err(InvalidSetting::new(key("name"), "must not be empty"));
        }
        if account.name.contains(['/', '\\']) || account.name.chars().any(char::is_control) {
            return Err(InvalidSetting::new(
                key("name"),
                "must not hold `/`, `\\` or control characters",
            ));
        }
        if let Some(first) = names.insert(account.name.as_str(), index) {
            return Err(InvalidSetting::new(
                key("name"),
                format!("`{}` is also accounts[{first}].name", account.name),
            ));
        }
        if blank(&account.account_id) {
            return Err(InvalidSetting::new(key("account_id"), "must not be empty"));
        }
        if let Some(first) = ids.insert(account.account_id.as_str(), index) {
            return Err(InvalidSetting::new(
                key("account_id"),
                format!("is also accounts[{first}].account_id: one Zoom account, one entry"),
            ));
        }
        if let Some(app) = &account.user_oauth {
            let s2s_keys: Vec<String> = [
                (!account.client_id.is_empty()).then(|| key("client_id")),
                (!account.client_secret.expose_secret().is_empty()).then(|| key("client_secret")),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !s2s_keys.is_empty() {
                return Err(InvalidSetting::new(
                    key("user_oauth"),
                    format!(
                        "an account has exactly one kind of credential: remove {} (Server-to-Server) or {} (user-managed)",
                        s2s_keys.join(" and "),
                        key("user_oauth")
                    ),
                ));
            }
            for (field, value) in [
                ("user_oauth.client_id", app.client_id.as_str()),
                (
                    "user_oauth.client_secret",
                    app.client_secret.expose_secret(),
                ),
                (
                    "user_oauth.refresh_token",
                    app.refresh_token.expose_secret(),
                ),
            ] {
                if blank(value) {
                    return Err(InvalidSetting::new(
                        key(field),
                        "must not be empty or blank",
                    ));
                }
            }
        } else if blank(&account.client_id) {
            return Err(InvalidSetting::new(
                key("client_id"),
                "must not be empty (or configure user_oauth instead)",
            ));
        } else if blank(account.client_secret.expose_secret()) {
            return Err(InvalidSetting::new(
                key("client_secret"),
                "must not be empty or blank",
            ));
        }
        if account.secret_tokens.is_empty() {
            return Err(InvalidSetting::new(
                key("secret_tokens"),
                "must hold at least one token",
            ));
        }
        for (position, token) in account.secret_tokens.iter().enumerate() {
            let token_key = key(&format!("secret_tokens[{position}]"));
            if blank(token.expose_secret()) {
                return Err(InvalidSetting::new(token_key, "must not be empty or blank"));
            }
            if let Some(first) = tokens.insert(token.expose_secret(), token_key.clone()) {
                return Err(InvalidSetting::new(
                    token_key,
                    format!(
                        "is the same secret token as {first}: a delivery it signs could act for either account"
                    ),
                ));
            }
        }
        for (field, url) in [
            ("destination", Some(&account.destination)),
            ("webinar_destination", account.webinar_destination.as_ref()),
        ] {
            if url.is_some_and(|url| !url.expose().contains("://")) {
                return Err(InvalidSetting::new(
                    key(field),
                    "must be an object store URL (file:///…, s3://…, gs://…, az://…)",
                ));
            }
        }
        if account.delete_after_days > 3650 {
            return Err(InvalidSetting::new(
                key("delete_after_days"),
                "must be at most 3650 (ten years)",
            ));
        }
        for (field, pattern) in [
            ("include_topic", &account.include_topic),
            ("exclude_topic", &account.exclude_topic),
        ] {
            if let Some(pattern) = pattern {
                topic_regex(pattern).map_err(|why| InvalidSetting::new(key(field), why))?;
            }
        }
        if account.notification_url.is_some() != account.notification_secret.is_some() {
            return Err(InvalidSetting::new(
                key(if account.notification_url.is_some() {
                    "notification_secret"
                } else {
                    "notification_url"
                }),
                "notification_url and notification_secret go together: a receiver must be able to verify what it gets",
            ));
        }
        if account.concat_reencode && !account.concat_media {
            return Err(InvalidSetting::new(
                key("concat_reencode"),
                "needs concat_media = true",
            ));
        }
        if !account.deletes() && account.delete_after_days > 0 {
            return Err(InvalidSetting::new(
                key("delete_after_days"),
                "needs delete_after_upload = \"trash\" or \"delete\"",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, id: &str, tokens: &[&str]) -> AccountSettings {
        AccountSettings {
            name: name.into(),
            account_id: id.into(),
            client_id: "client".into(),
            client_secret: SecretString::from("secret"),
            user_oauth: None,
            secret_tokens: tokens.iter().map(|t| SecretString::from(*t)).collect(),
            destination: default_destination(),
            webinar_destination: None,
            destination_options: BTreeMap::new(),
            path_template: default_path_template(),
            file_template: default_file_template(),
            meetings: true,
            webinars: true,
            file_types: vec![],
            owner: Default::default(),
            enabled: true,
            include_topic: None,
            exclude_topic: None,
            include_hosts: vec![],
            exclude_hosts: vec![],
            min_duration_minutes: 0,
            concat_media: false,
            concat_reencode: false,
            verify_media: false,
            delete_after_upload: DeleteAfterUpload::Off,
            metadata: vec![],
            delete_after_days: 0,
            notification_url: None,
            notification_secret: None,
        }
    }

    #[test]
    fn one_secret_token_in_two_accounts_is_refused_naming_both_keys() {
        let error = validate_accounts(&[
            account("acme", "A", &["shared"]),
            account("globex", "B", &["other", "shared"]),
        ])
        .expect_err("refused");
        assert_eq!(error.key, "accounts[1].secret_tokens[1]");
        assert!(
            error.reason.contains("accounts[0].secret_tokens[0]"),
            "{error}"
        );
        assert!(
            !error.to_string().contains("shared"),
            "never print the token"
        );
    }

    #[test]
    fn one_zoom_account_twice_is_refused() {
        let error = validate_accounts(&[
            account("acme", "A", &["t1"]),
            account("acme-too", "A", &["t2"]),
        ])
        .expect_err("refused");
        assert_eq!(error.key, "accounts[1].account_id");
    }

    #[test]
    fn blank_secrets_are_refused() {
        let error = validate_accounts(&[account("acme", "A", &["  "])]).expect_err("refused");
        assert_eq!(error.key, "accounts[0].secret_tokens[0]");
        let mut blank_secret = account("acme", "A", &["t"]);
        blank_secret.client_secret = SecretString::from(" \t");
        let error = validate_accounts(&[blank_secret]).expect_err("refused");
        assert_eq!(error.key, "accounts[0].client_secret");
    }

    #[test]
    fn a_topic_filter_that_is_not_a_regular_expression_is_refused_naming_its_key() {
        let mut broken = account("acme", "A", &["t"]);
        broken.exclude_topic = Some("(unclosed".into());
        let error = validate_accounts(&[broken]).expect_err("refused");
        assert_eq!(error.key, "accounts[0].exclude_topic");
        let mut huge = account("acme", "A", &["t"]);
        huge.include_topic = Some("\\w{1000}{1000}".into());
        let error = validate_accounts(&[huge]).expect_err("refused");
        assert_eq!(error.key, "accounts[0].include_topic");
    }

    #[test]
    fn distinct_accounts_pass() {
        assert!(
            validate_accounts(&[
                account("acme", "A", &["t1", "t0"]),
                account("globex", "B", &["t2"]),
            ])
            .is_ok()
        );
    }
}
