//! The `[sim]` section: the Zoom simulator (`zoom-relay sim`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSettings {
    pub listen: SocketAddr,
    /// Base URL clients reach the simulator at (download URLs point there); default
    /// `http://{listen}`.
    pub public_url: Option<String>,
    /// Lifetime of the access tokens it issues (Zoom: 1 hour).
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Lifetime of `next_page_token`s (Zoom: 15 minutes).
    #[serde(with = "humantime_serde")]
    pub page_token_ttl: Duration,
    /// Lifetime of the `download_token` in the events it sends.
    #[serde(with = "humantime_serde")]
    pub download_token_ttl: Duration,
    /// Largest page it serves, whatever `page_size` asks (Zoom: 300). Small values exercise paging.
    pub page_size_limit: usize,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            public_url: None,
            token_ttl: Duration::from_secs(3600),
            page_token_ttl: Duration::from_secs(15 * 60),
            download_token_ttl: Duration::from_secs(24 * 3600),
            page_size_limit: 300,
        }
    }
}
