//! The sections this crate configures: `[amqp]` and `[log]`. The binary assembles the whole tree.
//!
//! Secrets are [`SecretString`]: their `Debug` prints `[REDACTED]`, and they serialise redacted.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// A setting that is wrong, named by its full key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidSetting {
    pub key: String,
    pub reason: String,
}

impl InvalidSetting {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Serialises a secret as `[REDACTED]`: printing the effective configuration never shows one.
pub fn redacted<S: serde::Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("[REDACTED]")
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    /// The broker, or several nodes of one cluster separated by commas: a connection goes to the
    /// first that answers, and a lost one is replaced by the next. Carries the password.
    #[serde(serialize_with = "redacted")]
    pub url: SecretString,
    /// RabbitMQ's HTTP management API (queue depths for status, retention policies). Default:
    /// the first broker's host on port 15672, with its credentials.
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub management_url: Option<SecretString>,
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
    /// How long the archive stream keeps events. Applied as a RabbitMQ policy (`max-age`) through
    /// the management API, so a change takes effect on the existing stream.
    #[serde(with = "humantime_serde")]
    pub archive_max_age: Duration,
}

fn redacted_option<S: serde::Serializer>(
    _: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("[REDACTED]")
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            management_url: None,
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

impl AmqpSettings {
    /// Every broker address configured, in order.
    pub fn urls(&self) -> Vec<SecretString> {
        self.url
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(SecretString::from)
            .collect()
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let urls = self.urls();
        if urls.is_empty()
            || urls
                .iter()
                .any(|url| !url.expose_secret().starts_with("amqp"))
        {
            return Err(InvalidSetting::new(
                "amqp.url",
                "must be one or more amqp:// or amqps:// URLs, separated by commas",
            ));
        }
        if self.publish_channels == 0 {
            return Err(InvalidSetting::new(
                "amqp.publish_channels",
                "must be at least 1",
            ));
        }
        if self.archive_max_age < Duration::from_secs(1) {
            return Err(InvalidSetting::new(
                "amqp.archive_max_age",
                "must be at least one second",
            ));
        }
        if self
            .namespace
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(InvalidSetting::new(
                "amqp.namespace",
                "may hold only letters, digits, `.`, `-` and `_`",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when standard output is not a terminal, human-readable otherwise.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_broker_urls_split_on_commas() {
        let settings = AmqpSettings {
            url: SecretString::from("amqp://a:1@h1:5681/%2f, amqp://a:1@h2:5682/%2f,"),
            ..AmqpSettings::default()
        };
        assert_eq!(settings.urls().len(), 2);
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn namespaces_cannot_smuggle_pattern_characters() {
        let settings = AmqpSettings {
            namespace: "prod.*".into(),
            ..AmqpSettings::default()
        };
        assert_eq!(
            settings.validate().expect_err("refused").key,
            "amqp.namespace"
        );
    }
}
