//! The envelope shared by every Zoom event notification.
//!
//! Only what routing needs is typed here; the payload stays raw JSON so an event we do not model
//! still reaches the broker intact (the raw bytes are published, never a re-serialisation).

use serde::Deserialize;

/// The outer fields of an event body.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub event: String,
    /// Milliseconds since the epoch, when Zoom produced the event.
    #[serde(default)]
    pub event_ts: Option<i64>,
    #[serde(default)]
    pub payload: serde_json::Value,
}

impl Envelope {
    /// `payload.plainToken` of an `endpoint.url_validation` event.
    pub fn plain_token(&self) -> Option<&str> {
        self.payload.get("plainToken")?.as_str()
    }

    /// `payload.account_id`: the Zoom account the event is about.
    pub fn account_id(&self) -> Option<&str> {
        self.payload.get("account_id")?.as_str()
    }
}
