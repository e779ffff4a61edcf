//! The `[status]` section: where the page and the API listen, who may read them, and how the
//! status stream is fed and folded.

use std::net::SocketAddr;
use std::time::Duration;

use relay_core::settings::InvalidSetting;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSettings {
    /// Where `zoom-relay status` (and `run`) serve the page and the JSON API. Loopback by
    /// default: topics and host emails are personal data, so listening elsewhere requires
    /// `bearer_token` or `username` and `password`.
    pub listen: SocketAddr,
    /// Scripts send `Authorization: Bearer …`. When set, required on every request.
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub bearer_token: Option<SecretString>,
    /// HTTP basic authentication, for browsers. When set, required on every request (with
    /// `bearer_token` too, either is accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub password: Option<SecretString>,
    /// How often every process holding Zoom clients looks at them and publishes what changed
    /// to the status stream (an unchanged report is repeated every 15 minutes).
    #[serde(with = "humantime_serde")]
    pub report_interval: Duration,
    /// How often the status process asks RabbitMQ's management API for queue figures.
    #[serde(with = "humantime_serde")]
    pub queue_poll_interval: Duration,
    /// Meetings kept in memory; past it, those updated longest ago are forgotten (their history
    /// stays in the stream and in the manifests at the destination).
    pub max_meetings: usize,
    /// Recordings Zoom deletes within this long and that are not archived are "at risk".
    #[serde(with = "humantime_serde")]
    pub auto_delete_window: Duration,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            bearer_token: None,
            username: None,
            password: None,
            report_interval: Duration::from_secs(60),
            queue_poll_interval: Duration::from_secs(10),
            max_meetings: 100_000,
            auto_delete_window: Duration::from_secs(3 * 86_400),
        }
    }
}

fn redacted_option<S: serde::Serializer>(
    _: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("[REDACTED]")
}

impl StatusSettings {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let blank = |secret: &Option<SecretString>| {
            secret
                .as_ref()
                .is_some_and(|secret| secret.expose_secret().trim().is_empty())
        };
        if blank(&self.bearer_token) {
            return Err(InvalidSetting::new(
                "status.bearer_token",
                "must not be blank (remove it instead)",
            ));
        }
        if blank(&self.password) {
            return Err(InvalidSetting::new(
                "status.password",
                "must not be blank (remove it instead)",
            ));
        }
        match (&self.username, &self.password) {
            (Some(user), _) if user.trim().is_empty() || user.contains(':') => {
                return Err(InvalidSetting::new(
                    "status.username",
                    "must not be blank nor contain `:`",
                ));
            }
            (Some(_), None) => {
                return Err(InvalidSetting::new(
                    "status.password",
                    "status.username is set: set the password too",
                ));
            }
            (None, Some(_)) => {
                return Err(InvalidSetting::new(
                    "status.username",
                    "status.password is set: set the user name too",
                ));
            }
            _ => {}
        }
        for (key, value) in [
            ("status.report_interval", self.report_interval),
            ("status.queue_poll_interval", self.queue_poll_interval),
        ] {
            if value < Duration::from_secs(1) {
                return Err(InvalidSetting::new(key, "must be at least one second"));
            }
        }
        if self.max_meetings < 100 {
            return Err(InvalidSetting::new(
                "status.max_meetings",
                "must be at least 100",
            ));
        }
        Ok(())
    }

    /// Whether any credential is configured: then every request must carry one.
    pub fn has_auth(&self) -> bool {
        self.bearer_token.is_some() || self.username.is_some()
    }

    /// Serving on a non-loopback address without credentials would publish topics and host
    /// emails to whoever reaches the port: refused, naming the key to set.
    pub fn check_exposure(&self) -> Result<(), InvalidSetting> {
        if self.listen.ip().is_loopback() || self.has_auth() {
            return Ok(());
        }
        Err(InvalidSetting::new(
            "status.bearer_token",
            format!(
                "status.listen = {} is not a loopback address: set status.bearer_token (or \
                 status.username and status.password), since meeting topics and host emails are \
                 personal data",
                self.listen
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_beyond_loopback_needs_a_credential_and_names_the_key() {
        let mut settings = StatusSettings {
            listen: "0.0.0.0:8090".parse().expect("address"),
            ..StatusSettings::default()
        };
        let refused = settings.check_exposure().expect_err("refused");
        assert_eq!(refused.key, "status.bearer_token");
        settings.bearer_token = Some("t0ken".into());
        assert!(settings.check_exposure().is_ok());
        assert!(StatusSettings::default().check_exposure().is_ok());
    }

    #[test]
    fn basic_auth_needs_both_halves() {
        let settings = StatusSettings {
            username: Some("ops".into()),
            ..StatusSettings::default()
        };
        assert_eq!(
            settings.validate().expect_err("refused").key,
            "status.password"
        );
        let settings = StatusSettings {
            bearer_token: Some(" ".into()),
            ..StatusSettings::default()
        };
        assert_eq!(
            settings.validate().expect_err("refused").key,
            "status.bearer_token"
        );
    }
}
