//! How zoom-relay talks to Zoom: the `[zoom]` section, and one account's app credentials.
//!
//! Tests and the demo point the URLs at the simulator. Credentials travel only as
//! [`SecretString`]s and over https: plain http is accepted for loopback hosts alone (the
//! simulator), so a mistyped URL can never send a client secret or a token in clear.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// One Zoom app's credentials: a Server-to-Server OAuth app's, or a user-managed OAuth app's
/// with its refresh token.
#[derive(Clone)]
pub struct Credentials {
    /// Zoom's account id.
    pub account_id: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// A user-managed app's refresh token as configured: it seeds the chain in `grant_store`.
    pub refresh_token: Option<SecretString>,
    /// Where a user-managed app's rotating refresh token lives, shared by every process.
    pub grant_store: Option<Arc<dyn crate::client::grant::GrantStore>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account_id", &self.account_id)
            .field("client_id", &self.client_id)
            .field("user_managed", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// The OAuth grant a token is asked with. Server-to-Server OAuth API calls use
/// `account_credentials`; Zoom's WebSocket event delivery is documented (and sampled by Zoom)
/// with `client_credentials` today and was with `account_credentials` before, hence a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    #[default]
    AccountCredentials,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountCredentials => "account_credentials",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// Zoom's per-account API budget by category. Defaults are the Pro plan's; Business and up:
/// 80 / 60 / 40 per second, 20 per minute, 60,000 a day. Every process of one account shares
/// Zoom's budget, so with N processes configure 1/N of it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub light_per_second: u32,
    pub medium_per_second: u32,
    pub heavy_per_second: u32,
    pub resource_intensive_per_minute: u32,
    /// Shared by Heavy and Resource-intensive calls.
    pub heavy_per_day: u32,
    /// The share of each budget background work (reconciliation's listings) may use; the live
    /// pipeline keeps the rest.
    pub background_share: f64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            light_per_second: 30,
            medium_per_second: 20,
            heavy_per_second: 10,
            resource_intensive_per_minute: 10,
            heavy_per_day: 30_000,
            background_share: 0.5,
        }
    }
}

/// A setting that is wrong, named by its key below `[zoom]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zoom.{key}: {reason}")]
pub struct InvalidSetting {
    pub key: &'static str,
    pub reason: String,
}

impl ZoomSettings {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let invalid = |key: &'static str, reason: &str| InvalidSetting {
            key,
            reason: reason.to_owned(),
        };
        for (key, url) in [("oauth_url", &self.oauth_url), ("api_base", &self.api_base)] {
            let parsed = url::Url::parse(url).map_err(|_| invalid(key, "is not a URL"))?;
            if !secure_transport(&parsed) {
                return Err(invalid(
                    key,
                    "must be https:// (plain http only to a loopback host, such as the simulator)",
                ));
            }
        }
        let limits = &self.rate_limits;
        for (key, value) in [
            ("rate_limits.light_per_second", limits.light_per_second),
            ("rate_limits.medium_per_second", limits.medium_per_second),
            ("rate_limits.heavy_per_second", limits.heavy_per_second),
            (
                "rate_limits.resource_intensive_per_minute",
                limits.resource_intensive_per_minute,
            ),
            ("rate_limits.heavy_per_day", limits.heavy_per_day),
            ("max_attempts", self.max_attempts),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self
            .download_hosts
            .iter()
            .any(|host| host.trim().is_empty())
        {
            return Err(invalid("download_hosts", "holds an empty entry"));
        }
        Ok(())
    }
}

/// https, or http to a loopback host. Credentials and tokens are sent only over such URLs.
pub fn secure_transport(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => is_loopback(url),
        _ => false,
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        let secure = |url: &str| secure_transport(&url::Url::parse(url).expect("url"));
        assert!(secure("https://zoom.us/oauth/token"));
        assert!(secure("http://127.0.0.1:9090/oauth/token"));
        assert!(secure("http://localhost:9090/v2"));
        assert!(secure("http://[::1]:9090/v2"));
        assert!(!secure("http://zoom.us/oauth/token"));
        assert!(!secure("http://10.0.0.5/oauth/token"));
        assert!(!secure("ftp://127.0.0.1/x"));
    }

    #[test]
    fn refuses_plain_http_to_a_remote_oauth_url() {
        let settings = ZoomSettings {
            oauth_url: "http://zoom.us/oauth/token".into(),
            ..ZoomSettings::default()
        };
        let error = settings.validate().expect_err("refused");
        assert_eq!(error.key, "oauth_url");
    }
}
