//! RabbitMQ's HTTP management API: what AMQP 0.9.1 cannot do. Policies (the tunables that must
//! change on existing queues) and queue figures (depth, consumers) for status and alerts.
//!
//! Optional: when the API is unreachable or refuses us, the relay keeps working and says so.

use std::str::FromStr;
use std::time::Duration;

use lapin::uri::AMQPUri;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::topology::Policy;
use crate::settings::AmqpSettings;

#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    #[error("the management URL does not parse")]
    Url,
    #[error(
        "no management URL: set amqp.management_url (the default would send the broker's credentials in clear to a remote host)"
    )]
    Insecure,
    #[error("management API unreachable: {0}")]
    Transport(String),
    #[error("management API answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected answer from the management API: {0}")]
    Decode(String),
}

/// Figures of one queue, as the management API reports them (a few seconds behind).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct QueueFigures {
    pub name: String,
    #[serde(default)]
    pub messages: u64,
    #[serde(default)]
    pub messages_ready: u64,
    #[serde(default)]
    pub messages_unacknowledged: u64,
    #[serde(default)]
    pub consumers: u64,
}

#[derive(Clone)]
pub struct Management {
    http: reqwest::Client,
    /// One per node; tried in turn.
    bases: Vec<String>,
    vhost: String,
    user: String,
    password: SecretString,
}

impl std::fmt::Debug for Management {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Management")
            .field("bases", &self.bases)
            .field("vhost", &self.vhost)
            .finish_non_exhaustive()
    }
}

impl Management {
    /// From `amqp.management_url` (one URL or several, comma-separated), or each broker's host
    /// on port 15672 with the first broker's credentials: https for `amqps://` brokers, plain
    /// http only to loopback (credentials never travel in clear over a network unless the
    /// operator wrote an `http://` management URL).
    pub fn new(settings: &AmqpSettings) -> Result<Self, ManagementError> {
        let urls = settings.urls();
        let first = urls.first().ok_or(ManagementError::Url)?;
        let amqp = AMQPUri::from_str(first.expose_secret()).map_err(|_| ManagementError::Url)?;
        let mut user = amqp.authority.userinfo.username.clone();
        let mut password = amqp.authority.userinfo.password.clone();
        let bases = match &settings.management_url {
            Some(configured) => {
                let mut bases = Vec::new();
                for text in configured.expose_secret().split(',').map(str::trim) {
                    if text.is_empty() {
                        continue;
                    }
                    let mut parsed = url::Url::parse(text).map_err(|_| ManagementError::Url)?;
                    if !parsed.username().is_empty() {
                        user = decode(parsed.username());
                        password = parsed.password().map(decode).unwrap_or_default();
                    }
                    let _ = parsed.set_username("");
                    let _ = parsed.set_password(None);
                    bases.push(parsed.as_str().trim_end_matches('/').to_owned());
                }
                bases
            }
            None => urls
                .iter()
                .filter_map(|url| AMQPUri::from_str(url.expose_secret()).ok())
                .filter_map(|node| {
                    let host = node.authority.host;
                    let loopback = host == "localhost"
                        || host
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback());
                    match node.scheme {
                        lapin::uri::AMQPScheme::AMQPS => Some(format!("https://{host}:15671")),
                        lapin::uri::AMQPScheme::AMQP if loopback => {
                            Some(format!("http://{host}:15672"))
                        }
                        lapin::uri::AMQPScheme::AMQP => None,
                    }
                })
                .collect(),
        };
        if bases.is_empty() {
            return Err(ManagementError::Insecure);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| ManagementError::Transport(error.to_string()))?;
        Ok(Self {
            http,
            bases,
            vhost: amqp.vhost,
            user,
            password: SecretString::from(password),
        })
    }

    fn url(base: &str, path: &str) -> String {
        format!(
            "{}/api/{path}",
            base.trim_end_matches('/').trim_end_matches("/api")
        )
    }

    fn vhost(&self) -> String {
        utf8_percent_encode(&self.vhost, NON_ALPHANUMERIC).to_string()
    }

    /// Sends to each node in turn until one answers.
    async fn send(
        &self,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, ManagementError> {
        let mut last = ManagementError::Url;
        for base in &self.bases {
            let sent = request(&Self::url(base, path))
                .basic_auth(&self.user, Some(self.password.expose_secret()))
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    last = ManagementError::Transport(error.without_url().to_string());
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let body = response.text().await.unwrap_or_default();
            return Err(ManagementError::Status {
                status: status.as_u16(),
                body: body.chars().take(200).collect(),
            });
        }
        Err(last)
    }

    /// Creates or replaces `policy` in our vhost.
    pub async fn apply_policy(&self, policy: &Policy) -> Result<(), ManagementError> {
        let path = format!(
            "policies/{}/{}",
            self.vhost(),
            utf8_percent_encode(&policy.name, NON_ALPHANUMERIC)
        );
        let body = serde_json::json!({
            "pattern": policy.pattern,
            "definition": policy.definition,
            "priority": policy.priority,
            "apply-to": policy.apply_to,
        });
        self.send(|url| self.http.put(url).json(&body), &path)
            .await?;
        Ok(())
    }

    pub async fn delete_policy(&self, name: &str) -> Result<(), ManagementError> {
        let path = format!(
            "policies/{}/{}",
            self.vhost(),
            utf8_percent_encode(name, NON_ALPHANUMERIC)
        );
        match self.send(|url| self.http.delete(url), &path).await {
            Ok(_) | Err(ManagementError::Status { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Figures of every queue in our vhost whose name starts with `prefix`.
    pub async fn queues(&self, prefix: &str) -> Result<Vec<QueueFigures>, ManagementError> {
        let path = format!(
            "queues/{}?columns=name,messages,messages_ready,messages_unacknowledged,consumers",
            self.vhost()
        );
        let response = self.send(|url| self.http.get(url), &path).await?;
        let queues: Vec<QueueFigures> = response
            .json()
            .await
            .map_err(|error| ManagementError::Decode(error.without_url().to_string()))?;
        Ok(queues
            .into_iter()
            .filter(|queue| queue.name.starts_with(prefix))
            .collect())
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_each_brokers_host_and_never_sends_credentials_in_clear_over_a_network() {
        let local = AmqpSettings {
            url: SecretString::from(
                "amqp://relay:p%40ss@127.0.0.1:5681/zoom,amqp://relay:p%40ss@localhost:5682/zoom",
            ),
            ..AmqpSettings::default()
        };
        let management = Management::new(&local).expect("management");
        assert_eq!(
            management.bases,
            ["http://127.0.0.1:15672", "http://localhost:15672"]
        );
        assert_eq!(management.user, "relay");
        assert_eq!(management.password.expose_secret(), "p@ss");
        assert_eq!(management.vhost, "zoom");
        assert_eq!(
            Management::url(&management.bases[0], "queues/x"),
            "http://127.0.0.1:15672/api/queues/x"
        );
        let printed = format!("{management:?}");
        assert!(!printed.contains("p@ss"), "{printed}");
        let tls = AmqpSettings {
            url: SecretString::from("amqps://relay:secret@rabbit.internal:5671/zoom"),
            ..AmqpSettings::default()
        };
        assert_eq!(
            Management::new(&tls).expect("management").bases,
            ["https://rabbit.internal:15671"]
        );
        let remote_plain = AmqpSettings {
            url: SecretString::from("amqp://relay:secret@rabbit.internal:5672/zoom"),
            ..AmqpSettings::default()
        };
        assert!(matches!(
            Management::new(&remote_plain),
            Err(ManagementError::Insecure)
        ));
    }

    #[test]
    fn an_explicit_url_wins_and_keeps_its_own_credentials() {
        let settings = AmqpSettings {
            url: SecretString::from("amqp://relay:secret@127.0.0.1:5672/%2f"),
            management_url: Some(SecretString::from("https://admin:other@mq.example.com/")),
            ..AmqpSettings::default()
        };
        let management = Management::new(&settings).expect("management");
        assert_eq!(management.bases, ["https://mq.example.com"]);
        assert_eq!(management.user, "admin");
        assert_eq!(management.vhost, "/");
        assert_eq!(management.vhost(), "%2F");
    }
}
