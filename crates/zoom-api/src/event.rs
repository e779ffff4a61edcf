//! The envelope shared by every Zoom event notification.
//!
//! Only what routing needs is read here; the rest of the body is skipped, not built, and the raw
//! bytes are published, never a re-serialisation, so an event we do not model arrives intact.

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
    pub payload: PayloadHead,
}

/// The payload field the ingress reads; every other field is skipped while parsing.
#[derive(Debug, Default, Deserialize)]
pub struct PayloadHead {
    /// Of an `endpoint.url_validation` challenge.
    #[serde(default, rename = "plainToken")]
    pub plain_token: Option<String>,
}

impl Envelope {
    pub fn plain_token(&self) -> Option<&str> {
        self.payload.plain_token.as_deref()
    }
}
