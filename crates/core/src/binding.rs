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

/// What a replay claims for the deliveries it sends to an ingress (`zoom-relay replay
/// --to-url`): the job, and whether its events may delete or must be reprocessed. The ingress
/// accepts the claim only when it is signed with the same secret token as the delivery and
/// bound to the delivery's timestamp and body, and then binds the event as a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayClaim {
    pub job: String,
    pub allow_delete: bool,
    pub force: bool,
}

/// HTTP headers carrying a [`ReplayClaim`].
pub mod replay_header {
    pub const JOB: &str = "x-zoom-relay-replay-job";
    /// Comma-separated: `allow-delete`, `force`; empty for neither.
    pub const FLAGS: &str = "x-zoom-relay-replay-flags";
    /// hex HMAC-SHA256, with the delivery's secret token, of [`super::ReplayClaim::signed_text`].
    pub const SIGNATURE: &str = "x-zoom-relay-replay-signature";
}

/// Longest replay job id: it becomes a header and part of message ids.
pub const MAX_JOB_ID: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayClaimError {
    #[error("a replay claim needs all of x-zoom-relay-replay-job, -flags and -signature")]
    Incomplete,
    #[error("the replay job id is empty, longer than 64 characters or not [A-Za-z0-9._-]")]
    InvalidJob,
    #[error("unknown replay flag `{0}`")]
    UnknownFlag(String),
    #[error("the replay claim's signature does not match")]
    InvalidSignature,
}

impl ReplayClaim {
    pub fn new(job: impl Into<String>, allow_delete: bool, force: bool) -> Self {
        Self {
            job: job.into(),
            allow_delete,
            force,
        }
    }

    pub fn flags(&self) -> String {
        let mut flags = Vec::new();
        if self.allow_delete {
            flags.push("allow-delete");
        }
        if self.force {
            flags.push("force");
        }
        flags.join(",")
    }

    /// What the signature covers: the claim, bound to the delivery's timestamp and body so it
    /// cannot be moved onto another delivery.
    pub fn signed_text(&self, timestamp: &str, body: &[u8]) -> String {
        use sha2::Digest;
        format!(
            "zoom-relay-replay:v1:{timestamp}:{}:{}:{}",
            self.job,
            self.flags(),
            hex::encode(sha2::Sha256::digest(body))
        )
    }

    /// Reads a claim from a request's headers: `None` when it carries none. `verify` checks a
    /// signature over a text with the delivery's secret token.
    pub fn from_request(
        job: Option<&str>,
        flags: Option<&str>,
        signature: Option<&str>,
        timestamp: &str,
        body: &[u8],
        verify: impl FnOnce(&[u8], &str) -> bool,
    ) -> Result<Option<Self>, ReplayClaimError> {
        let (job, flags, signature) = match (job, flags, signature) {
            (None, None, None) => return Ok(None),
            (Some(job), Some(flags), Some(signature)) => (job, flags, signature),
            _ => return Err(ReplayClaimError::Incomplete),
        };
        if !is_job_id(job) {
            return Err(ReplayClaimError::InvalidJob);
        }
        let mut claim = Self::new(job, false, false);
        for flag in flags
            .split(',')
            .map(str::trim)
            .filter(|flag| !flag.is_empty())
        {
            match flag {
                "allow-delete" => claim.allow_delete = true,
                "force" => claim.force = true,
                other => {
                    return Err(ReplayClaimError::UnknownFlag(
                        other.chars().take(32).collect(),
                    ));
                }
            }
        }
        if !verify(claim.signed_text(timestamp, body).as_bytes(), signature) {
            return Err(ReplayClaimError::InvalidSignature);
        }
        Ok(Some(claim))
    }

    /// Binds a message as this replay's.
    pub fn apply(&self, binding: &mut Binding) {
        binding.origin = Origin::Replay;
        binding.replay_job = Some(self.job.clone());
        binding.allow_delete = self.allow_delete;
        binding.force = self.force;
    }
}

/// A replay job id: 1–64 of `[A-Za-z0-9._-]` (it names a state file and travels in headers).
pub fn is_job_id(job: &str) -> bool {
    !job.is_empty()
        && job.len() <= MAX_JOB_ID
        && job
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
        && job != "."
        && job != ".."
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

    fn read_claim(
        job: Option<&str>,
        flags: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Option<ReplayClaim>, ReplayClaimError> {
        ReplayClaim::from_request(
            job,
            flags,
            signature,
            "1700000000",
            body,
            |text, signature| signature == format!("sig({})", String::from_utf8_lossy(text)),
        )
    }

    #[test]
    fn a_replay_claim_binds_only_when_signed_over_this_body() {
        let claim = ReplayClaim::new("job-1", true, false);
        let signature = format!("sig({})", claim.signed_text("1700000000", b"body"));
        let read = read_claim(
            Some("job-1"),
            Some("allow-delete"),
            Some(&signature),
            b"body",
        );
        assert_eq!(read, Ok(Some(claim.clone())));
        // The same claim moved onto another body, or with a flag added, does not verify.
        assert_eq!(
            read_claim(
                Some("job-1"),
                Some("allow-delete"),
                Some(&signature),
                b"other"
            ),
            Err(ReplayClaimError::InvalidSignature)
        );
        assert_eq!(
            read_claim(
                Some("job-1"),
                Some("allow-delete,force"),
                Some(&signature),
                b"body"
            ),
            Err(ReplayClaimError::InvalidSignature)
        );
        assert_eq!(read_claim(None, None, None, b"body"), Ok(None));
        assert_eq!(
            read_claim(Some("job-1"), None, None, b"body"),
            Err(ReplayClaimError::Incomplete)
        );
        assert_eq!(
            read_claim(Some("../x"), Some(""), Some(&signature), b"body"),
            Err(ReplayClaimError::InvalidJob)
        );
        assert_eq!(
            read_claim(
                Some("job-1"),
                Some("delete-everything"),
                Some(&signature),
                b"body"
            ),
            Err(ReplayClaimError::UnknownFlag("delete-everything".into()))
        );
        let mut binding = Binding::new("acme", "acme-id", Origin::Webhook);
        claim.apply(&mut binding);
        assert_eq!(binding.origin, Origin::Replay);
        assert!(binding.may_delete());
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
