//! The `[reconcile]` section.

use std::time::Duration;

use relay_core::settings::InvalidSetting;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSettings {
    /// Between passes of `zoom-relay reconcile` (continuous).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Each pass starts this long before the account's watermark: Zoom lists late, and a window
    /// too narrow is how other tools lost recordings.
    #[serde(with = "humantime_serde")]
    pub overlap: Duration,
    /// The first pass of an account (no watermark yet) reaches this far back.
    #[serde(with = "humantime_serde")]
    pub initial_lookback: Duration,
    /// A meeting the pipeline touched this recently is in flight, not handed over again.
    #[serde(with = "humantime_serde")]
    pub in_flight_grace: Duration,
    /// One reconciler per account across replicas holds the account this long per pass.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Listings of a window when Zoom keeps answering 429 or 5xx, before the pass gives up
    /// (the watermark stays: the next pass redoes the window).
    pub listing_attempts: u32,
    /// First pause between those listings; it doubles.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            overlap: Duration::from_secs(48 * 3600),
            initial_lookback: Duration::from_secs(30 * 24 * 3600),
            in_flight_grace: Duration::from_secs(2 * 3600),
            lease_ttl: Duration::from_secs(30 * 60),
            listing_attempts: 5,
            backoff: Duration::from_secs(10),
        }
    }
}

impl ReconcileSettings {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.interval < Duration::from_secs(1) {
            return Err(InvalidSetting::new(
                "reconcile.interval",
                "must be at least 1s",
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(InvalidSetting::new(
                "reconcile.lease_ttl",
                "must be at least 1s",
            ));
        }
        if self.listing_attempts == 0 {
            return Err(InvalidSetting::new(
                "reconcile.listing_attempts",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
