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
