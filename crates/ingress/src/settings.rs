//! The `[ingress]` section, and what the ingress needs of each account: its name, its Zoom id
//! and its secret tokens — never its client secret or its destination.

use std::net::SocketAddr;
use std::time::Duration;

use relay_core::settings::InvalidSetting;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressSettings {
    pub listen: SocketAddr,
    /// Bodies larger than this are refused (413) before they are held.
    pub max_body_bytes: usize,
    /// A body not fully received within this is refused (408) and the connection closed:
    /// unauthenticated slow senders cannot hold memory or connections for long.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Bytes of request bodies the ingress holds at once, over every connection. Past it, a
    /// request is answered 503 `ingress_busy` (Zoom retries): unauthenticated senders cannot
    /// make it hold more memory than this, whatever they promise or send.
    pub max_pending_body_bytes: usize,
    /// Requests whose `x-zm-request-timestamp` is further from now than this are refused
    /// (replays), and a delivery seen within it is not stored twice.
    pub timestamp_tolerance_secs: u64,
    /// HTTP worker threads; defaults to the number of cores.
    pub workers: Option<usize>,
    /// Open connections per worker; more wait in the kernel's accept queue. Each costs the
    /// HTTP stack's buffers (~160 KiB while data flows), beyond what bodies hold.
    pub max_connections: usize,
    /// Drain deadline on shutdown: keep it below the orchestrator's grace period.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Also serve `/metrics` on the webhook listener (it is always on the admin listener).
    pub serve_metrics: bool,
}

impl Default for IngressSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            body_timeout: Duration::from_secs(5),
            max_pending_body_bytes: 64 * 1024 * 1024,
            timestamp_tolerance_secs: 300,
            workers: None,
            max_connections: 2048,
            shutdown_timeout: Duration::from_secs(10),
            serve_metrics: false,
        }
    }
}

impl IngressSettings {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.max_body_bytes == 0 {
            return Err(InvalidSetting::new(
                "ingress.max_body_bytes",
                "must be positive",
            ));
        }
        if self.max_pending_body_bytes < self.max_body_bytes {
            return Err(InvalidSetting::new(
                "ingress.max_pending_body_bytes",
                "must hold at least one body of ingress.max_body_bytes",
            ));
        }
        if self.body_timeout.is_zero() {
            return Err(InvalidSetting::new(
                "ingress.body_timeout",
                "must be positive",
            ));
        }
        if self.max_connections == 0 {
            return Err(InvalidSetting::new(
                "ingress.max_connections",
                "must be at least 1",
            ));
        }
        if self.workers == Some(0) {
            return Err(InvalidSetting::new(
                "ingress.workers",
                "must be at least 1 when set",
            ));
        }
        Ok(())
    }
}

/// One account as the ingress sees it.
#[derive(Debug, Clone)]
pub struct WebhookAccount {
    /// Our name: also the path of its own endpoint, `POST /zoom/webhook/{name}`.
    pub name: String,
    /// Zoom's id: every account id an event names must be this one.
    pub account_id: String,
    /// Current and, during a rotation, previous secret token.
    pub secret_tokens: Vec<SecretString>,
}
