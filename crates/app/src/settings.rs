//! The one typed configuration tree, assembled from the sections each crate owns, loaded from a
//! TOML file then `ZOOM_RELAY__…` environment overrides.
//!
//! Unknown keys are an error naming the key; every section validates itself, and the accounts
//! are validated together (no shared name, Zoom id or secret token). Secrets are
//! `SecretString`s: `Debug` prints `[REDACTED]`, and so does serialising the tree
//! (`zoom-relay config`), store URLs without their credentials.

use std::net::SocketAddr;
use std::path::Path;

use relay_core::settings::{AmqpSettings, InvalidSetting, LogSettings};
use relay_ingress::IngressSettings;
use relay_pipeline::settings::{AccountSettings, PipelineSettings, validate_accounts};
use serde::{Deserialize, Serialize};
use zoom_api::ZoomSettings;
use zoom_sim::SimSettings;

/// The file read when `--config` is not given and it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "zoom-relay.toml";
/// Prefix of environment overrides: `ZOOM_RELAY__AMQP__URL` sets `amqp.url`.
pub const ENV_PREFIX: &str = "ZOOM_RELAY";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] InvalidSetting),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub amqp: AmqpSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub ingress: IngressSettings,
    #[serde(default)]
    pub zoom: ZoomSettings,
    #[serde(default)]
    pub sim: SimSettings,
    #[serde(default)]
    pub pipeline: PipelineSettings,
    #[serde(default)]
    pub reconcile: relay_reconcile::ReconcileSettings,
    #[serde(default)]
    pub status: relay_status::StatusSettings,
    #[serde(default)]
    pub notifications: relay_notifications::NotificationSettings,
    /// Zoom's WebSocket event delivery (`zoom-relay websocket`), per subscription.
    #[serde(default)]
    pub websocket: relay_websocket::WebsocketSettings,
    /// One entry per Zoom account (its Server-to-Server OAuth app).
    #[serde(default)]
    pub accounts: Vec<AccountSettings>,
}

/// Every process's own listener: `/healthz`, `/readyz` and `/metrics`, apart from the webhook.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Where to listen. Processes sharing a host need distinct ports (port 0: any free one).
    pub listen: SocketAddr,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
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

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.amqp.validate()?;
        self.ingress.validate()?;
        self.zoom
            .validate()
            .map_err(|error| InvalidSetting::new(format!("zoom.{}", error.key), error.reason))?;
        self.pipeline.validate()?;
        self.reconcile.validate()?;
        self.notifications.validate()?;
        self.status.validate()?;
        let names: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
        self.websocket.validate(&names)?;
        validate_accounts(&self.accounts)
    }

    /// The effective configuration as TOML, secrets and credentials redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# not printable: {error}\n"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use secrecy::ExposeSecret;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ACCOUNT: &str = r#"
        [[accounts]]
        name = "acme"
        account_id = "A"
        client_id = "C"
        client_secret = "very-secret"
        secret_tokens = ["token-one"]
        destination = "s3://key:s3cr3t@bucket/prefix?sig=SAS"
        destination_options = { aws_secret_access_key = "aws-secret" }
    "#;

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
    fn secrets_are_redacted_in_debug_and_in_the_printed_configuration() {
        let settings = Settings::from_toml(&format!(
            "[amqp]\nurl = \"amqp://user:hunter2@host/%2f\"\n{ACCOUNT}"
        ))
        .expect("valid");
        for printed in [format!("{settings:?}"), settings.to_redacted_toml()] {
            for secret in [
                "hunter2",
                "very-secret",
                "token-one",
                "s3cr3t",
                "SAS",
                "aws-secret",
            ] {
                assert!(!printed.contains(secret), "{secret} leaked: {printed}");
            }
        }
        assert!(settings.to_redacted_toml().contains("s3://bucket/prefix"));
    }

    #[test]
    fn plain_http_to_a_remote_zoom_is_refused() {
        let error = Settings::from_toml("[zoom]\noauth_url = \"http://zoom.us/oauth/token\"\n")
            .expect_err("refused");
        assert!(error.to_string().contains("zoom.oauth_url"), "{error}");
    }

    /// Every key of a table, recursively, as dotted paths (arrays of tables by all their items:
    /// an account with a user-managed app shows keys the first does not have).
    fn keys(value: &toml::Value, prefix: &str, into: &mut BTreeSet<String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, child) in table {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    // Maps whose keys are the operator's (store options) are one key.
                    if key.ends_with("_options") {
                        into.insert(path);
                        continue;
                    }
                    into.insert(path.clone());
                    keys(child, &path, into);
                }
            }
            toml::Value::Array(items) => {
                for item in items.iter().filter(|item| item.is_table()) {
                    keys(item, prefix, into);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_example_configuration_holds_every_key_and_parses() {
        let text = include_str!("../../../deploy/zoom-relay.example.toml");
        let settings = Settings::from_toml(text).expect("deploy/zoom-relay.example.toml is valid");
        assert!(!settings.accounts.is_empty());
        let example: toml::Value = toml::from_str(text).expect("TOML");
        let mut documented = BTreeSet::new();
        keys(&example, "", &mut documented);
        // Every key the settings types know, from a tree with every optional value set.
        let mut full = Settings::from_toml(ACCOUNT).expect("full");
        full.amqp.management_url = Some("http://127.0.0.1:15672".into());
        full.ingress.workers = Some(2);
        full.sim.public_url = Some("http://127.0.0.1:9090".into());
        full.status.bearer_token = Some("token".into());
        full.status.username = Some("ops".into());
        full.status.password = Some("password".into());
        full.accounts[0].user_oauth = Some(relay_pipeline::settings::UserOAuthSettings {
            client_id: "user-app".into(),
            client_secret: "secret".into(),
            refresh_token: "refresh".into(),
        });
        // A map's entries are examples, not keys: the example's own entry stands for them.
        full.accounts[0]
            .owner
            .domains
            .insert("zoom.example.com".into(), "example.com".into());
        full.accounts[0].include_topic = Some("board".into());
        full.accounts[0].exclude_topic = Some("private".into());
        full.accounts[0].webinar_destination = Some(full.accounts[0].destination.clone());
        full.accounts[0].notification_url = Some("https://example.com/hooks".into());
        full.accounts[0].notification_secret = Some("whsec_secret".into());
        full.websocket.subscriptions = vec![relay_websocket::Subscription {
            account: "acme".into(),
            subscription_id: "subscription".into(),
            grant_type: zoom_api::GrantType::ClientCredentials,
        }];
        let known: toml::Value =
            toml::from_str(&full.to_redacted_toml()).expect("settings print as TOML");
        let mut expected = BTreeSet::new();
        keys(&known, "", &mut expected);
        let missing: Vec<&String> = expected.difference(&documented).collect();
        assert!(missing.is_empty(), "the example config lacks {missing:?}");
        let unknown: Vec<&String> = documented.difference(&expected).collect();
        assert!(
            unknown.is_empty(),
            "the example config has unknown keys {unknown:?}"
        );
    }
}
