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
    base: String,
    vhost: String,
    user: String,
    password: SecretString,
}

impl std::fmt::Debug for Management {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Management")
            .field("base", &self.base)
            .field("vhost", &self.vhost)
            .finish_non_exhaustive()
    }
}

impl Management {
    /// From `amqp.management_url`, or the first broker's host on port 15672 with its
    /// credentials and vhost.
    pub fn new(settings: &AmqpSettings) -> Result<Self, ManagementError> {
        let urls = settings.urls();
        let first = urls.first().ok_or(ManagementError::Url)?;
        let amqp = AMQPUri::from_str(first.expose_secret()).map_err(|_| ManagementError::Url)?;
        let (base, user, password) = match &settings.management_url {
            Some(url) => {
                let parsed =
                    url::Url::parse(url.expose_secret()).map_err(|_| ManagementError::Url)?;
                let user = if parsed.username().is_empty() {
                    amqp.authority.userinfo.username.clone()
                } else {
                    decode(parsed.username())
                };
                let password = parsed
                    .password()
                    .map(decode)
                    .unwrap_or_else(|| amqp.authority.userinfo.password.clone());
                let mut base = parsed.clone();
                let _ = base.set_username("");
                let _ = base.set_password(None);
                (
                    base.as_str().trim_end_matches('/').to_owned(),
                    user,
                    password,
                )
            }
            None => (
                format!("http://{}:15672", amqp.authority.host),
                amqp.authority.userinfo.username.clone(),
                amqp.authority.userinfo.password.clone(),
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| ManagementError::Transport(error.to_string()))?;
        Ok(Self {
            http,
            base,
            vhost: amqp.vhost,
            user,
            password: SecretString::from(password),
        })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/api/{path}",
            self.base.trim_end_matches('/').trim_end_matches("/api")
        )
    }

    fn vhost(&self) -> String {
        utf8_percent_encode(&self.vhost, NON_ALPHANUMERIC).to_string()
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ManagementError> {
        let response = request
            .basic_auth(&self.user, Some(self.password.expose_secret()))
            .send()
            .await
            .map_err(|error| ManagementError::Transport(error.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(ManagementError::Status {
            status: status.as_u16(),
            body: body.chars().take(200).collect(),
        })
    }

    /// Creates or replaces `policy` in our vhost.
    pub async fn apply_policy(&self, policy: &Policy) -> Result<(), ManagementError> {
        let url = self.url(&format!(
            "policies/{}/{}",
            self.vhost(),
            utf8_percent_encode(&policy.name, NON_ALPHANUMERIC)
        ));
        let body = serde_json::json!({
            "pattern": policy.pattern,
            "definition": policy.definition,
            "priority": policy.priority,
            "apply-to": policy.apply_to,
        });
        self.send(self.http.put(url).json(&body)).await?;
        Ok(())
    }

    pub async fn delete_policy(&self, name: &str) -> Result<(), ManagementError> {
        let url = self.url(&format!(
            "policies/{}/{}",
            self.vhost(),
            utf8_percent_encode(name, NON_ALPHANUMERIC)
        ));
        match self.send(self.http.delete(url)).await {
            Ok(_) | Err(ManagementError::Status { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Figures of every queue in our vhost whose name starts with `prefix`.
    pub async fn queues(&self, prefix: &str) -> Result<Vec<QueueFigures>, ManagementError> {
        let url = self.url(&format!(
            "queues/{}?columns=name,messages,messages_ready,messages_unacknowledged,consumers",
            self.vhost()
        ));
        let response = self.send(self.http.get(url)).await?;
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
    fn defaults_to_the_brokers_host_and_credentials() {
        let settings = AmqpSettings {
            url: SecretString::from("amqp://relay:p%40ss@rabbit.internal:5672/zoom"),
            ..AmqpSettings::default()
        };
        let management = Management::new(&settings).expect("management");
        assert_eq!(management.base, "http://rabbit.internal:15672");
        assert_eq!(management.user, "relay");
        assert_eq!(management.password.expose_secret(), "p@ss");
        assert_eq!(management.vhost, "zoom");
        assert_eq!(
            management.url("queues/x"),
            "http://rabbit.internal:15672/api/queues/x"
        );
        let printed = format!("{management:?}");
        assert!(!printed.contains("p@ss"), "{printed}");
    }

    #[test]
    fn an_explicit_url_wins_and_keeps_its_own_credentials() {
        let settings = AmqpSettings {
            url: SecretString::from("amqp://relay:secret@127.0.0.1:5672/%2f"),
            management_url: Some(SecretString::from("https://admin:other@mq.example.com/")),
            ..AmqpSettings::default()
        };
        let management = Management::new(&settings).expect("management");
        assert_eq!(management.base, "https://mq.example.com");
        assert_eq!(management.user, "admin");
        assert_eq!(management.vhost, "/");
        assert_eq!(management.vhost(), "%2F");
    }
}
