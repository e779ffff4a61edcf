//! The account a message may act for, and where it came from: set once where the message enters
//! the relay, carried in flat headers, and never re-read from a body.
//!
//! The ingress sets it from the secret token that verified the delivery; reconciliation, replay
//! and the WebSocket client from the account they work for. The consumer loop reads it from every
//! delivery, refuses one that has none, and copies it onto everything a stage sends on: a stage
//! cannot forward work under another account. Whoever can publish to the broker is trusted to set
//! it (restrict broker access accordingly; see docs/security.md).
//!
//! Headers are flat strings and integers: streams drop table and array headers.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Every header zoom-relay reads or writes: the one place their names are spelled.
pub mod header {
    /// Our name for the account.
    pub const ACCOUNT: &str = "account";
    /// Zoom's id of the account.
    pub const ACCOUNT_ID: &str = "account_id";
    /// [`super::Origin`].
    pub const ORIGIN: &str = "origin";
    /// Zoom's event name.
    pub const EVENT: &str = "event";
    /// Zoom's `event_ts` (milliseconds).
    pub const EVENT_TS: &str = "event_ts";
    /// When the relay received the event (milliseconds since the epoch).
    pub const RECEIVED_AT: &str = "received_at";
    /// The meeting an event is about (`payload.object.uuid`), when it names one.
    pub const MEETING_UUID: &str = "meeting_uuid";
    /// The replay job that sent this message again.
    pub const REPLAY_JOB: &str = "replay_job";
    /// `1`: a replayed event may delete cloud recordings.
    pub const ALLOW_DELETE: &str = "allow_delete";
    /// `1`: reprocess a meeting the destination already holds.
    pub const FORCE: &str = "force";
    /// Attempts so far (the consumer loop's retries).
    pub const ATTEMPT: &str = "x-attempt";
    /// The stage that failed the message, its code and reason (dead letters).
    pub const STAGE: &str = "x-stage";
    pub const ERROR_CODE: &str = "x-error-code";
    pub const ERROR: &str = "x-error";
    /// When the message first waited for something (milliseconds): bounds a wait.
    pub const WAITING_SINCE: &str = "x-waiting-since";
    /// Set by quorum queues on a redelivery: how often the message was delivered before.
    pub const DELIVERY_COUNT: &str = "x-delivery-count";
}

/// How a message entered the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A webhook delivery verified with the account's secret token.
    Webhook,
    /// Zoom's WebSocket event delivery, on the account's subscription.
    WebSocket,
    /// Found by listing the account's recordings through the API.
    Reconcile,
    /// Asked for by an operator (`zoom-relay import`).
    Import,
    /// Sent again by `zoom-relay replay`.
    Replay,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::WebSocket => "websocket",
            Self::Reconcile => "reconcile",
            Self::Import => "import",
            Self::Replay => "replay",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Webhook,
            Self::WebSocket,
            Self::Reconcile,
            Self::Import,
            Self::Replay,
        ]
        .into_iter()
        .find(|origin| origin.as_str() == text)
    }
}

/// Who a message acts for, and under what permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Our name for the account.
    pub account: String,
    /// Zoom's id of the same account.
    pub account_id: String,
    pub origin: Origin,
    /// Set on replayed messages.
    pub replay_job: Option<String>,
    /// A replayed message may delete only when its replay was started with `--allow-delete`.
    pub allow_delete: bool,
    /// Reprocess what the destination already holds.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    #[error("the message carries no `{0}` header: it did not enter through a verified path")]
    Missing(&'static str),
    #[error("the `origin` header `{0}` is not one zoom-relay sets")]
    UnknownOrigin(String),
}

impl Binding {
    pub fn new(account: impl Into<String>, account_id: impl Into<String>, origin: Origin) -> Self {
        Self {
            account: account.into(),
            account_id: account_id.into(),
            origin,
            replay_job: None,
            allow_delete: false,
            force: false,
        }
    }

    /// Whether a stage may delete the cloud recording because of this message: never for a
    /// replay that was not started with `--allow-delete`, whatever the account's configuration.
    pub fn may_delete(&self) -> bool {
        self.origin != Origin::Replay || self.allow_delete
    }

    pub fn from_headers(headers: Option<&FieldTable>) -> Result<Self, BindingError> {
        let text = |key: &'static str| {
            headers
                .and_then(|headers| text_header(headers, key))
                .filter(|value| !value.is_empty())
        };
        let account = text(header::ACCOUNT).ok_or(BindingError::Missing(header::ACCOUNT))?;
        let account_id =
            text(header::ACCOUNT_ID).ok_or(BindingError::Missing(header::ACCOUNT_ID))?;
        let origin = text(header::ORIGIN).ok_or(BindingError::Missing(header::ORIGIN))?;
        let origin = Origin::parse(&origin).ok_or(BindingError::UnknownOrigin(origin))?;
        let flag = |key: &'static str| {
            headers
                .and_then(|headers| int_header(headers, key))
                .is_some_and(|value| value == 1)
        };
        Ok(Self {
            account,
            account_id,
            origin,
            replay_job: text(header::REPLAY_JOB),
            allow_delete: flag(header::ALLOW_DELETE),
            force: flag(header::FORCE),
        })
    }

    /// Writes the binding into `headers`, replacing whatever binding they held.
    pub fn write_to(&self, headers: &mut FieldTable) {
        set_text(headers, header::ACCOUNT, &self.account);
        set_text(headers, header::ACCOUNT_ID, &self.account_id);
        set_text(headers, header::ORIGIN, self.origin.as_str());
        match &self.replay_job {
            Some(job) => set_text(headers, header::REPLAY_JOB, job),
            None => remove(headers, header::REPLAY_JOB),
        }
        set_int(headers, header::ALLOW_DELETE, i64::from(self.allow_delete));
        set_int(headers, header::FORCE, i64::from(self.force));
    }

    pub fn to_headers(&self) -> FieldTable {
        let mut headers = FieldTable::default();
        self.write_to(&mut headers);
        headers
    }
}

/// A string header, whichever string type the publisher used.
pub fn text_header(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

/// An integer header, whichever integer type the publisher (or the broker) used.
pub fn int_header(headers: &FieldTable, key: &str) -> Option<i64> {
    match headers.inner().get(key)? {
        AMQPValue::LongLongInt(value) => Some(*value),
        AMQPValue::LongInt(value) => Some(i64::from(*value)),
        AMQPValue::LongUInt(value) => Some(i64::from(*value)),
        AMQPValue::ShortInt(value) => Some(i64::from(*value)),
        AMQPValue::ShortUInt(value) => Some(i64::from(*value)),
        AMQPValue::ShortShortInt(value) => Some(i64::from(*value)),
        AMQPValue::ShortShortUInt(value) => Some(i64::from(*value)),
        AMQPValue::Timestamp(value) => i64::try_from(*value).ok(),
        AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok()?.parse().ok(),
        _ => None,
    }
}

/// Longest text a header carries: a message's headers share one frame with its properties
/// (128 KiB by default), and an oversized frame closes the whole connection.
pub const MAX_HEADER_TEXT: usize = 2048;

pub fn set_text(headers: &mut FieldTable, key: &str, value: &str) {
    let mut end = value.len().min(MAX_HEADER_TEXT);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    headers.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(&value[..end])),
    );
}

pub fn set_int(headers: &mut FieldTable, key: &str, value: i64) {
    headers.insert(ShortString::from(key), AMQPValue::LongLongInt(value));
}

fn remove(headers: &mut FieldTable, key: &str) {
    let kept: Vec<(ShortString, AMQPValue)> = headers
        .inner()
        .iter()
        .filter(|(name, _)| name.as_str() != key)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let mut fresh = FieldTable::default();
    for (name, value) in kept {
        fresh.insert(name, value);
    }
    *headers = fresh;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_headers() {
        let mut binding = Binding::new("acme", "acme-id", Origin::Replay);
        binding.replay_job = Some("job-1".into());
        let headers = binding.to_headers();
        assert_eq!(Binding::from_headers(Some(&headers)), Ok(binding.clone()));
        assert!(!binding.may_delete(), "a replay deletes only when allowed");
        binding.allow_delete = true;
        assert!(binding.may_delete());
        assert!(Binding::new("a", "b", Origin::Webhook).may_delete());
    }

    #[test]
    fn a_message_without_a_binding_is_refused() {
        assert_eq!(
            Binding::from_headers(None),
            Err(BindingError::Missing(header::ACCOUNT))
        );
        let mut headers = FieldTable::default();
        set_text(&mut headers, header::ACCOUNT, "acme");
        set_text(&mut headers, header::ACCOUNT_ID, "acme-id");
        set_text(&mut headers, header::ORIGIN, "forged");
        assert_eq!(
            Binding::from_headers(Some(&headers)),
            Err(BindingError::UnknownOrigin("forged".into()))
        );
    }

    #[test]
    fn rewriting_drops_a_previous_replay_job() {
        let mut replayed = Binding::new("acme", "acme-id", Origin::Replay);
        replayed.replay_job = Some("job".into());
        let mut headers = replayed.to_headers();
        Binding::new("acme", "acme-id", Origin::Webhook).write_to(&mut headers);
        let read = Binding::from_headers(Some(&headers)).expect("binding");
        assert_eq!(read.replay_job, None);
        assert_eq!(read.origin, Origin::Webhook);
    }
}
