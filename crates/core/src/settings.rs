//! The one typed configuration tree, loaded from a TOML file and `ZOOM_RELAY__…` environment overrides.
//!
//! Sections turn themselves into what they configure (see [`crate::broker::Broker::start`]), so raw
//! values never reach business code. Secrets are [`SecretString`]: their `Debug` prints `[REDACTED]`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The file read when `--config` is not given and it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "zoom-relay.toml";
/// Prefix of environment overrides: `ZOOM_RELAY__AMQP__URL` sets `amqp.url`.
pub const ENV_PREFIX: &str = "ZOOM_RELAY";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub amqp: AmqpSettings,
    #[serde(default)]
    pub ingress: IngressSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub zoom: ZoomSettings,
    #[serde(default)]
    pub sim: SimSettings,
    #[serde(default)]
    pub pipeline: PipelineSettings,
    /// One entry per Zoom Server-to-Server OAuth app.
    #[serde(default)]
    pub accounts: Vec<AccountSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    /// Carries the broker password, hence secret.
    pub url: SecretString,
    /// Prepended to every exchange and queue name: lets several deployments (or tests) share a vhost.
    pub namespace: String,
    /// AMQP heartbeat; a dead peer is noticed after about twice this.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Bound on connecting and declaring the topology; a hung attempt is abandoned and retried.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on one publish and its confirm. Below Zoom's 3 s answer deadline so Zoom sees a 503
    /// (and retries) rather than a time-out.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Confirm-mode channels the publisher spreads its in-flight messages over.
    pub publish_channels: usize,
    /// Longest pause between reconnection attempts.
    #[serde(with = "humantime_serde")]
    pub reconnect_max_backoff: Duration,
    /// How long the archive stream keeps events (RabbitMQ `x-max-age`).
    #[serde(with = "humantime_serde")]
    pub archive_max_age: Duration,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            namespace: String::new(),
            heartbeat: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(2),
            publish_channels: 4,
            reconnect_max_backoff: Duration::from_secs(10),
            archive_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Requests whose `x-zm-request-timestamp` is further from now than this are refused (replays).
    pub timestamp_tolerance_secs: u64,
    /// HTTP worker threads; defaults to the number of cores.
    pub workers: Option<usize>,
    /// Drain deadline on shutdown: keep it below the orchestrator's grace period.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for IngressSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            timestamp_tolerance_secs: 300,
            workers: None,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Where and how zoom-relay talks to Zoom. Tests and the demo point the URLs at the simulator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoomSettings {
    pub oauth_url: String,
    pub api_base: String,
    /// Hosts a download URL, and every redirect it takes, may point at. An entry matches the host
    /// itself and its subdomains. Anything else is refused: payload URLs are untrusted input.
    pub download_hosts: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on one API call (not on downloads, which can take hours).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A download that receives nothing for this long is treated as cut and resumed.
    #[serde(with = "humantime_serde")]
    pub download_idle_timeout: Duration,
    /// Access tokens are renewed this long before they expire.
    #[serde(with = "humantime_serde")]
    pub token_refresh_margin: Duration,
    /// Attempts per API call on 429, 5xx and connection errors.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// `Range` resumptions allowed per download after a cut connection.
    pub download_resumes: u32,
    /// Zoom's `file_size` is not always exact: a served size within this fraction, or within
    /// `file_size_tolerance_bytes`, of it is accepted.
    pub file_size_tolerance: f64,
    pub file_size_tolerance_bytes: u64,
    /// `ttl` asked for a fresh `download_access_token`.
    #[serde(with = "humantime_serde")]
    pub download_access_token_ttl: Duration,
    pub rate_limits: RateLimitSettings,
}

impl Default for ZoomSettings {
    fn default() -> Self {
        Self {
            oauth_url: "https://zoom.us/oauth/token".into(),
            api_base: "https://api.zoom.us/v2".into(),
            download_hosts: vec!["zoom.us".into(), "zoomgov.com".into()],
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            download_idle_timeout: Duration::from_secs(60),
            token_refresh_margin: Duration::from_secs(300),
            max_attempts: 6,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            download_resumes: 5,
            file_size_tolerance: 0.02,
            file_size_tolerance_bytes: 64 * 1024,
            download_access_token_ttl: Duration::from_secs(3600),
            rate_limits: RateLimitSettings::default(),
        }
    }
}

/// The Zoom simulator (`zoom-relay sim`): it serves the configured `[[accounts]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSettings {
    pub listen: SocketAddr,
    /// Base URL clients reach the simulator at (download URLs point there); default
    /// `http://{listen}`.
    pub public_url: Option<String>,
    /// Lifetime of the access tokens it issues (Zoom: 1 hour).
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Lifetime of `next_page_token`s (Zoom: 15 minutes).
    #[serde(with = "humantime_serde")]
    pub page_token_ttl: Duration,
    /// Lifetime of the `download_token` in the events it sends.
    #[serde(with = "humantime_serde")]
    pub download_token_ttl: Duration,
    /// Largest page it serves, whatever `page_size` asks (Zoom: 300). Small values exercise paging.
    pub page_size_limit: usize,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            public_url: None,
            token_ttl: Duration::from_secs(3600),
            page_token_ttl: Duration::from_secs(15 * 60),
            download_token_ttl: Duration::from_secs(24 * 3600),
            page_size_limit: 300,
        }
    }
}

/// Zoom's per-account API budget by category. Defaults are the Pro plan's; Business and up:
/// 80 / 60 / 40 per second, 20 per minute, 60,000 a day. Every process of one account shares
/// Zoom's budget, so with N processes configure 1/N of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub light_per_second: u32,
    pub medium_per_second: u32,
    pub heavy_per_second: u32,
    pub resource_intensive_per_minute: u32,
    /// Shared by Heavy and Resource-intensive calls.
    pub heavy_per_day: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            light_per_second: 30,
            medium_per_second: 20,
            heavy_per_second: 10,
            resource_intensive_per_minute: 10,
            heavy_per_day: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when standard output is not a terminal, human-readable otherwise.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

/// A Zoom Server-to-Server OAuth app, as its admin created it on the Zoom App Marketplace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// Our name for the account: appears in logs, metrics and message headers.
    pub name: String,
    pub account_id: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The app's current secret token and, during a rotation, the previous one.
    pub secret_tokens: Vec<SecretString>,
    /// Where this account's recordings go: an object store URL (`file:///srv/recordings`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`).
    #[serde(default = "default_destination")]
    pub destination: String,
    /// Options for the destination store (`aws_endpoint`, `aws_region`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `google_service_account`, …), as `object_store` names them.
    #[serde(default)]
    pub destination_options: std::collections::BTreeMap<String, SecretString>,
    /// A meeting's folder under the destination. Placeholders: `{account}`, `{host_email}`,
    /// `{topic}`, `{meeting_uuid}`, `{meeting_id}`, `{start:STRFTIME}`.
    #[serde(default = "default_path_template")]
    pub path_template: String,
    /// A file's name in that folder. Placeholders: `{segment}`, `{view}`, `{file_type}`,
    /// `{file_id}`, `{ext}`, and the meeting's.
    #[serde(default = "default_file_template")]
    pub file_template: String,
    #[serde(default = "yes")]
    pub meetings: bool,
    #[serde(default = "yes")]
    pub webinars: bool,
    /// Zoom `file_type`s to keep (`MP4`, `M4A`, `TRANSCRIPT`, `CHAT`, `CC`, …); empty keeps all,
    /// participant audio included.
    #[serde(default)]
    pub file_types: Vec<String>,
    /// Only these hosts' recordings (emails, case-insensitive); empty means everyone.
    #[serde(default)]
    pub include_hosts: Vec<String>,
    #[serde(default)]
    pub exclude_hosts: Vec<String>,
    /// Recordings of shorter meetings are skipped.
    #[serde(default)]
    pub min_duration_minutes: u32,
    /// Join the MP4 segments of each view into one file with ffmpeg (stream copy).
    #[serde(default)]
    pub concat_media: bool,
    /// After every file of a meeting is verified at the destination: `off`, `trash` (recoverable
    /// for 30 days at Zoom) or `delete` (permanent).
    #[serde(default)]
    pub delete_after_upload: DeleteAfterUpload,
    /// Wait this many days after the upload before deleting.
    #[serde(default)]
    pub delete_after_days: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteAfterUpload {
    #[default]
    Off,
    Trash,
    Delete,
}

fn yes() -> bool {
    true
}

fn default_destination() -> String {
    "file:///var/lib/zoom-relay/recordings".into()
}

fn default_path_template() -> String {
    "{host_email}/{start:%Y/%m/%d}/{topic}-{meeting_uuid}".into()
}

fn default_file_template() -> String {
    "{segment}-{view}.{ext}".into()
}

/// The consumers: where files are staged, how much each stage takes on, how failures retry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Object store URL for files between download and upload. A local directory by default;
    /// S3-compatible when the stages run on several machines.
    pub staging: String,
    pub staging_options: std::collections::BTreeMap<String, SecretString>,
    /// Delays between attempts, one RabbitMQ TTL queue each; attempts past the last reuse it.
    pub retry_delays: Vec<humantime_serde::Serde<Duration>>,
    /// Attempts before a message goes to its stage's dead-letter queue.
    pub max_attempts: u32,
    /// Redeliveries RabbitMQ allows (consumer crashes) before dead-lettering (`x-delivery-limit`).
    pub delivery_limit: u32,
    /// In-flight work is given this long to finish on shutdown.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Read back and hash every copied file at the destination (otherwise: its size there and
    /// the hash of the bytes sent). A file renamed within one store is checked by size.
    pub verify_readback: bool,
    /// The ffmpeg binary `concat_media` runs.
    pub ffmpeg: String,
    pub plan: StageSettings,
    pub download: StageSettings,
    pub assemble: StageSettings,
    pub upload: StageSettings,
    pub cleanup: StageSettings,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            staging: "file:///var/lib/zoom-relay/staging".into(),
            staging_options: Default::default(),
            retry_delays: [10, 60, 300, 900]
                .into_iter()
                .map(|secs| Duration::from_secs(secs).into())
                .collect(),
            max_attempts: 8,
            delivery_limit: 20,
            drain_timeout: Duration::from_secs(30),
            verify_readback: true,
            ffmpeg: "ffmpeg".into(),
            plan: StageSettings::new(8, 16),
            download: StageSettings::new(4, 4),
            assemble: StageSettings::new(4, 16),
            upload: StageSettings::new(4, 4),
            cleanup: StageSettings::new(2, 8),
        }
    }
}

impl PipelineSettings {
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays.iter().map(|delay| **delay).collect()
    }
}

/// How much one stage process works on at once.
#[derive(Debug, Clone, Copy, Deserialize)]
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

impl Settings {
    /// Loads `file` (or [`DEFAULT_CONFIG_FILE`] when present), then applies environment overrides.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder();
        match file {
            Some(path) => builder = builder.add_source(config::File::from(path).required(true)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                builder = builder.add_source(config::File::with_name(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        let env = env
            .into_iter()
            .filter(|(key, _)| key.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(Some(env)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Parses a TOML document (the example config, tests).
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if !self.amqp.url.expose_secret().starts_with("amqp") {
            return Err(invalid("amqp.url", "must be an amqp:// or amqps:// URL"));
        }
        if self.amqp.publish_channels == 0 {
            return Err(invalid("amqp.publish_channels", "must be at least 1"));
        }
        if self.ingress.max_body_bytes == 0 {
            return Err(invalid("ingress.max_body_bytes", "must be positive"));
        }
        let limits = &self.zoom.rate_limits;
        for (key, value) in [
            ("zoom.rate_limits.light_per_second", limits.light_per_second),
            (
                "zoom.rate_limits.medium_per_second",
                limits.medium_per_second,
            ),
            ("zoom.rate_limits.heavy_per_second", limits.heavy_per_second),
            (
                "zoom.rate_limits.resource_intensive_per_minute",
                limits.resource_intensive_per_minute,
            ),
            ("zoom.rate_limits.heavy_per_day", limits.heavy_per_day),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        for (key, url) in [
            ("zoom.oauth_url", &self.zoom.oauth_url),
            ("zoom.api_base", &self.zoom.api_base),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(key, "must be an http(s) URL"));
            }
        }
        if self.pipeline.retry_delays.is_empty() {
            return Err(invalid("pipeline.retry_delays", "needs at least one delay"));
        }
        if self.pipeline.max_attempts == 0 {
            return Err(invalid("pipeline.max_attempts", "must be at least 1"));
        }
        for (key, stage) in [
            ("pipeline.plan", &self.pipeline.plan),
            ("pipeline.download", &self.pipeline.download),
            ("pipeline.assemble", &self.pipeline.assemble),
            ("pipeline.upload", &self.pipeline.upload),
            ("pipeline.cleanup", &self.pipeline.cleanup),
        ] {
            if stage.concurrency == 0 || stage.prefetch == 0 {
                return Err(invalid(key, "concurrency and prefetch must be at least 1"));
            }
        }
        if self.zoom.max_attempts == 0 {
            return Err(invalid("zoom.max_attempts", "must be at least 1"));
        }
        let mut names = std::collections::HashSet::new();
        for (index, account) in self.accounts.iter().enumerate() {
            let key = |field: &str| format!("accounts[{index}].{field}");
            if account.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if !names.insert(account.name.as_str()) {
                return Err(invalid(
                    key("name"),
                    format!("`{}` is used twice", account.name),
                ));
            }
            if !account.destination.contains("://") {
                return Err(invalid(
                    key("destination"),
                    "must be an object store URL (file:///…, s3://…, gs://…, az://…)",
                ));
            }
            if account.delete_after_upload == DeleteAfterUpload::Off
                && account.delete_after_days > 0
            {
                return Err(invalid(
                    key("delete_after_days"),
                    "needs delete_after_upload = \"trash\" or \"delete\"",
                ));
            }
            if account.account_id.trim().is_empty() {
                return Err(invalid(key("account_id"), "must not be empty"));
            }
            if account.secret_tokens.is_empty()
                || account
                    .secret_tokens
                    .iter()
                    .any(|token| token.expose_secret().is_empty())
            {
                return Err(invalid(
                    key("secret_tokens"),
                    "must hold at least one non-empty token",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let settings = Settings::load_from(None, env(&[])).expect("defaults load");
        assert_eq!(settings.ingress.max_body_bytes, 1024 * 1024);
        assert_eq!(settings.ingress.timestamp_tolerance_secs, 300);
        assert_eq!(settings.amqp.namespace, "");
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let settings = Settings::load_from(
            None,
            env(&[
                ("ZOOM_RELAY__INGRESS__LISTEN", "0.0.0.0:9000"),
                ("ZOOM_RELAY__AMQP__URL", "amqp://u:p@broker:5672/prod"),
                ("ZOOM_RELAY__AMQP__PUBLISH_TIMEOUT", "1500ms"),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("overrides load");
        assert_eq!(settings.ingress.listen.port(), 9000);
        assert_eq!(
            settings.amqp.url.expose_secret(),
            "amqp://u:p@broker:5672/prod"
        );
        assert_eq!(settings.amqp.publish_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn unknown_key_is_named() {
        let error = Settings::from_toml("[ingress]\nlisten_port = 1\n").expect_err("unknown key");
        assert!(error.to_string().contains("listen_port"), "{error}");
    }

    #[test]
    fn account_without_secret_token_is_refused() {
        let error = Settings::from_toml(
            r#"
            [[accounts]]
            name = "acme"
            account_id = "A"
            client_id = "C"
            client_secret = "S"
            secret_tokens = []
            "#,
        )
        .expect_err("no token");
        assert!(
            error.to_string().contains("accounts[0].secret_tokens"),
            "{error}"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let settings = Settings::from_toml(
            r#"
            [amqp]
            url = "amqp://user:hunter2@host/%2f"
            [[accounts]]
            name = "acme"
            account_id = "A"
            client_id = "C"
            client_secret = "very-secret"
            secret_tokens = ["token-one"]
            "#,
        )
        .expect("valid");
        let printed = format!("{settings:?}");
        for secret in ["hunter2", "very-secret", "token-one"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
    }
}

#[cfg(test)]
mod example {
    use super::Settings;

    #[test]
    fn example_configuration_parses() {
        let text = include_str!("../../../deploy/zoom-relay.example.toml");
        let settings = Settings::from_toml(text).expect("deploy/zoom-relay.example.toml is valid");
        assert_eq!(settings.accounts.len(), 1);
        assert_eq!(settings.accounts[0].secret_tokens.len(), 2);
    }
}
