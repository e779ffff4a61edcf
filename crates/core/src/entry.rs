//! Where a Zoom event enters the relay, whichever way it came (a signed webhook, the account's
//! WebSocket subscription): the checks every entry makes on the event's envelope, and the one way
//! it is published to the events exchange (and so to the archive stream).
//!
//! The raw bytes are published, never a re-serialisation. The [`Binding`] is the entry's own
//! knowledge of the account (the secret token that verified a webhook, the subscription a socket
//! belongs to), never read from the body: the body may only name that same account.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use zoom_api::event::Envelope;

use crate::binding::{self, Binding, header};
use crate::broker::stream::FILTER_VALUE_HEADER;
use crate::broker::{Outgoing, PublishError, Publisher};

/// AMQP routing keys are short strings.
pub const MAX_EVENT_NAME: usize = 255;
/// Zoom's meeting uuids are 24 characters; anything far longer is not one, and would travel in
/// a header (frames are limited: an oversized header closes the broker connection for all).
pub const MAX_MEETING_UUID: usize = 128;

/// Why an event is not taken in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the body is not JSON")]
    InvalidJson,
    #[error("the body has no usable `event` field")]
    MissingEvent,
    #[error("the event names Zoom account `{named}`, but it came in for another account")]
    AccountMismatch { named: String },
    #[error("the event's meeting uuid is not one Zoom would send")]
    InvalidMeetingUuid,
}

/// An event whose envelope passed every entry check, for the account `account_id`.
#[derive(Debug)]
pub struct Checked<'a> {
    pub envelope: Envelope,
    pub body: &'a [u8],
}

impl<'a> Checked<'a> {
    /// Parses the envelope of `body` and checks it: an event name, only `account_id` named, a
    /// meeting uuid of a plausible size.
    pub fn parse(body: &'a [u8], account_id: &str) -> Result<Self, EntryError> {
        let envelope: Envelope =
            serde_json::from_slice(body).map_err(|_| EntryError::InvalidJson)?;
        if envelope.event.is_empty() || envelope.event.len() > MAX_EVENT_NAME {
            return Err(EntryError::MissingEvent);
        }
        // Taken in for one account, it may act only for that account.
        if let Some(named) = envelope.account_ids().find(|id| *id != account_id) {
            return Err(EntryError::AccountMismatch {
                named: named.to_owned(),
            });
        }
        if envelope.meeting_uuid().unwrap_or_default().len() > MAX_MEETING_UUID {
            return Err(EntryError::InvalidMeetingUuid);
        }
        Ok(Self { envelope, body })
    }

    pub fn event(&self) -> &str {
        &self.envelope.event
    }

    pub fn meeting_uuid(&self) -> &str {
        self.envelope.meeting_uuid().unwrap_or_default()
    }

    /// A message id from the body itself, for entries without a delivery id of Zoom's.
    pub fn digest_id(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.body)))
    }

    /// Publishes the event to `exchange` bound to `binding`, and returns once the broker
    /// confirmed it stored it (see [`Publisher::publish`]).
    pub async fn publish(
        &self,
        publisher: &Publisher,
        exchange: &str,
        binding: &Binding,
        message_id: &str,
    ) -> Result<(), PublishError> {
        let mut headers = binding.to_headers();
        // Lets an archive reader on a broker with stream filtering skip other accounts' chunks.
        binding::set_text(&mut headers, FILTER_VALUE_HEADER, &binding.account);
        binding::set_text(&mut headers, header::EVENT, self.event());
        binding::set_int(
            &mut headers,
            header::EVENT_TS,
            self.envelope.event_ts.unwrap_or_default(),
        );
        binding::set_int(&mut headers, header::RECEIVED_AT, unix_now_ms());
        binding::set_text(&mut headers, header::MEETING_UUID, self.meeting_uuid());
        let message = Outgoing::new(exchange, self.event(), self.body)
            .message_id(message_id)
            .headers(headers);
        publisher.publish(message).await
    }
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_in_only_events_for_its_own_account() {
        let body = br#"{"event":"recording.completed","event_ts":1,"payload":{"account_id":"A","object":{"uuid":"u=="}}}"#;
        let checked = Checked::parse(body, "A").expect("taken in");
        assert_eq!(checked.event(), "recording.completed");
        assert_eq!(checked.meeting_uuid(), "u==");
        assert_eq!(
            Checked::parse(body, "B").map(|_| ()),
            Err(EntryError::AccountMismatch { named: "A".into() })
        );
        assert_eq!(
            Checked::parse(b"{", "A").map(|_| ()),
            Err(EntryError::InvalidJson)
        );
        assert_eq!(
            Checked::parse(br#"{"payload":{}}"#, "A").map(|_| ()),
            Err(EntryError::MissingEvent)
        );
        let long = format!(
            r#"{{"event":"x","payload":{{"object":{{"uuid":"{}"}}}}}}"#,
            "u".repeat(MAX_MEETING_UUID + 1)
        );
        assert_eq!(
            Checked::parse(long.as_bytes(), "A").map(|_| ()),
            Err(EntryError::InvalidMeetingUuid)
        );
    }
}
