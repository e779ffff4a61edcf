//! The `[notifications]` section. Where each account's notifications go is the account's own
//! (`notification_url`, `notification_secret`).

use std::time::Duration;

use relay_core::settings::InvalidSetting;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// Deliveries of one notification before it is given up (logged and counted).
    pub max_attempts: u32,
    /// First pause after a failed delivery; it doubles, up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// One delivery's whole time: connect, send, answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// One notifier sends across replicas; another takes over this long after it died.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(60),
        }
    }
}

impl NotificationSettings {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.max_attempts == 0 {
            return Err(InvalidSetting::new(
                "notifications.max_attempts",
                "must be at least 1",
            ));
        }
        if self.lease_ttl < Duration::from_secs(3) {
            return Err(InvalidSetting::new(
                "notifications.lease_ttl",
                "must be at least 3s (the lease is renewed every third of it)",
            ));
        }
        if self.timeout.is_zero() || self.backoff.is_zero() || self.max_backoff < self.backoff {
            return Err(InvalidSetting::new(
                "notifications.timeout",
                "timeout and backoff must be positive, max_backoff at least backoff",
            ));
        }
        Ok(())
    }
}
