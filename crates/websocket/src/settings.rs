//! The `[websocket]` section: Zoom's endpoint, the timings every subscription shares, and one
//! `[[websocket.subscriptions]]` entry per account that receives its events over a socket.

use std::net::IpAddr;
use std::time::Duration;

use relay_core::settings::InvalidSetting;
use serde::{Deserialize, Serialize};
use zoom_api::GrantType;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketSettings {
    /// Zoom's endpoint; `subscriptionId` and `access_token` are added to it. wss:// (ws:// only
    /// to a loopback host, the simulator): the token travels in the URL.
    pub url: String,
    /// How often `{"module":"heartbeat"}` is sent (Zoom asks for every 30 s).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A socket that brings no frame at all, not even a heartbeat's answer, for this long is
    /// dead though still open (a middlebox forgot it): it is closed and replaced.
    #[serde(with = "humantime_serde")]
    pub silence_timeout: Duration,
    /// Bound on the token request's and handshake's wait for Zoom.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// First pause before connecting again after a close, an error or a refused credential;
    /// it doubles (with jitter) up to `backoff_max`, and starts over once a socket stayed up.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// One process holds a subscription across replicas; it renews this lease every third of
    /// it, and a replica that died gives the subscription up after it.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Zoom buffers nothing while a socket is down. After each (re)connection, the account's
    /// recordings are listed from this long before the disconnection: a meeting that ended
    /// during the gap may have started well before it.
    #[serde(with = "humantime_serde")]
    pub gap_lookback: Duration,
    pub subscriptions: Vec<Subscription>,
}

/// One account's event subscription (Marketplace: the app's Event Subscription with the
/// WebSocket method; docs/websocket.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// The `[[accounts]]` entry whose app owns the subscription: its credentials get the token,
    /// and every event received is bound to it.
    pub account: String,
    /// The subscription's id, shown in the Marketplace once the WebSocket method is chosen.
    pub subscription_id: String,
    /// The grant the token is asked with: Zoom's current docs and sample use
    /// `client_credentials`, older docs `account_credentials`.
    #[serde(default = "client_credentials")]
    pub grant_type: GrantType,
}

fn client_credentials() -> GrantType {
    GrantType::ClientCredentials
}

impl Default for WebsocketSettings {
    fn default() -> Self {
        Self {
            url: "wss://ws.zoom.us/ws".into(),
            heartbeat_interval: Duration::from_secs(30),
            silence_timeout: Duration::from_secs(75),
            connect_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(30),
            gap_lookback: Duration::from_secs(24 * 3600),
            subscriptions: Vec::new(),
        }
    }
}

impl WebsocketSettings {
    /// Checks the section; `accounts` are the configured account names.
    pub fn validate(&self, accounts: &[&str]) -> Result<(), InvalidSetting> {
        let invalid =
            |key: &str, reason: &str| Err(InvalidSetting::new(format!("websocket.{key}"), reason));
        match url::Url::parse(&self.url) {
            Ok(url) if secure_socket(&url) => {}
            Ok(_) => {
                return invalid(
                    "url",
                    "must be wss:// (ws:// only to a loopback host, such as the simulator)",
                );
            }
            Err(_) => return invalid("url", "is not a URL"),
        }
        for (key, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("connect_timeout", self.connect_timeout),
            ("backoff_initial", self.backoff_initial),
        ] {
            if value.is_zero() {
                return invalid(key, "must be positive");
            }
        }
        if self.silence_timeout <= self.heartbeat_interval {
            return invalid(
                "silence_timeout",
                "must be longer than heartbeat_interval, or every socket looks silent",
            );
        }
        if self.backoff_max < self.backoff_initial {
            return invalid("backoff_max", "must be at least backoff_initial");
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return invalid("lease_ttl", "must be at least 1s");
        }
        let mut seen = Vec::new();
        for subscription in &self.subscriptions {
            if !accounts.contains(&subscription.account.as_str()) {
                return invalid(
                    "subscriptions.account",
                    &format!("`{}` is not a configured account", subscription.account),
                );
            }
            if subscription.subscription_id.trim().is_empty() {
                return invalid("subscriptions.subscription_id", "must not be empty");
            }
            // Zoom holds one socket per subscription, and an account needs one subscription.
            if seen.contains(&subscription.account.as_str()) {
                return invalid(
                    "subscriptions.account",
                    &format!("`{}` has more than one subscription", subscription.account),
                );
            }
            seen.push(subscription.account.as_str());
        }
        Ok(())
    }
}

/// wss://, or ws:// to a loopback host: the access token is part of the URL.
fn secure_socket(url: &url::Url) -> bool {
    match url.scheme() {
        "wss" => true,
        "ws" => match url.host() {
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(subscriptions: Vec<Subscription>) -> WebsocketSettings {
        WebsocketSettings {
            subscriptions,
            ..WebsocketSettings::default()
        }
    }

    fn subscription(account: &str) -> Subscription {
        Subscription {
            account: account.into(),
            subscription_id: "sub".into(),
            grant_type: GrantType::ClientCredentials,
        }
    }

    #[test]
    fn the_token_never_travels_in_clear_beyond_loopback() {
        let url = |url: &str| WebsocketSettings {
            url: url.into(),
            ..WebsocketSettings::default()
        };
        assert!(url("wss://ws.zoom.us/ws").validate(&[]).is_ok());
        assert!(url("ws://127.0.0.1:9090/ws").validate(&[]).is_ok());
        let refused = url("ws://ws.zoom.us/ws").validate(&[]).expect_err("clear");
        assert_eq!(refused.key, "websocket.url");
    }

    #[test]
    fn a_subscription_names_one_configured_account_once() {
        assert!(with(vec![subscription("acme")]).validate(&["acme"]).is_ok());
        assert!(
            with(vec![subscription("other")])
                .validate(&["acme"])
                .is_err()
        );
        assert!(
            with(vec![subscription("acme"), subscription("acme")])
                .validate(&["acme"])
                .is_err()
        );
        let timing = WebsocketSettings {
            silence_timeout: Duration::from_secs(30),
            ..WebsocketSettings::default()
        };
        assert_eq!(
            timing.validate(&[]).expect_err("too short").key,
            "websocket.silence_timeout"
        );
    }
}
