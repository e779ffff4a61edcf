//! One message to replay, whichever source it came from, and the JSON-lines form `--to-file`
//! writes and `--from-file` reads.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use lapin::types::FieldTable;
use relay_core::binding::{header, int_header, text_header};
use relay_core::broker::StageName;
use serde::{Deserialize, Serialize};

/// What a message is: an event as Zoom sent it, or a stage's own work (a dead letter of a
/// stage after plan), which only a stage queue can take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Event,
    Work(StageName),
}

#[derive(Debug, Clone, Default)]
pub struct Item {
    /// Where it is in its source: a stream offset or a line number (resume continues after it).
    pub position: Option<i64>,
    pub kind: Kind,
    /// The body exactly as received: replays send it byte for byte.
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub event: Option<String>,
    pub account: Option<String>,
    pub account_id: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    pub event_ts: Option<i64>,
    pub meeting_uuid: Option<String>,
    /// Dead letters: why the stage gave up.
    pub error_code: Option<String>,
    /// Dead letters: the headers they carry, replayed minus their failure.
    pub headers: Option<FieldTable>,
}

impl Item {
    /// An archived event or a dead letter, from its flat headers (the ingress and the consumer
    /// loop write them); what a header lacks is read from the body where Zoom puts it.
    pub fn from_delivery(delivery: &Delivery, kind: Kind) -> Self {
        let headers = delivery.properties.headers().as_ref();
        let text = |key: &str| {
            headers
                .and_then(|headers| text_header(headers, key))
                .filter(|value| !value.is_empty())
        };
        let int = |key: &str| headers.and_then(|headers| int_header(headers, key));
        let body: serde_json::Value =
            serde_json::from_slice(&delivery.data).unwrap_or(serde_json::Value::Null);
        let received_at = int(header::RECEIVED_AT)
            .and_then(DateTime::from_timestamp_millis)
            .or_else(|| {
                delivery
                    .properties
                    .timestamp()
                    .and_then(|seconds| DateTime::from_timestamp(i64::try_from(seconds).ok()?, 0))
            });
        let meeting_uuid = text(header::MEETING_UUID).or_else(|| {
            [
                &body["payload"]["object"]["uuid"],
                &body["meeting_uuid"],
                &body["meeting"]["uuid"],
            ]
            .into_iter()
            .find_map(|value| value.as_str().map(str::to_owned))
        });
        Self {
            position: relay_core::broker::stream::offset(delivery),
            kind,
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string()),
            event: text(header::EVENT).or_else(|| {
                (kind == Kind::Event).then(|| body["event"].as_str().map(str::to_owned))?
            }),
            account: text(header::ACCOUNT),
            account_id: text(header::ACCOUNT_ID),
            received_at,
            event_ts: int(header::EVENT_TS),
            meeting_uuid,
            error_code: text(header::ERROR_CODE),
            headers: headers.cloned(),
            body: delivery.data.clone(),
        }
    }
}

/// One line of a replay file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Line {
    pub event: Option<String>,
    pub account: Option<String>,
    pub account_id: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The body as text, exactly as received (Zoom's bodies are UTF-8 JSON) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// … or, if it was not UTF-8, its bytes in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

impl Line {
    pub fn from_item(item: &Item) -> Self {
        let (body, body_base64) = match std::str::from_utf8(&item.body) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(BASE64.encode(&item.body))),
        };
        Self {
            event: item.event.clone(),
            account: item.account.clone(),
            account_id: item.account_id.clone(),
            received_at: item.received_at,
            event_ts: item.event_ts,
            meeting_uuid: item.meeting_uuid.clone(),
            message_id: item.message_id.clone(),
            body,
            body_base64,
        }
    }

    pub fn into_item(self, line_number: i64) -> Result<Item, String> {
        let body = match (self.body, self.body_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(encoded)) => BASE64
                .decode(encoded)
                .map_err(|_| "body_base64 is not base64".to_owned())?,
            _ => return Err("a line needs exactly one of body and body_base64".into()),
        };
        Ok(Item {
            position: Some(line_number),
            kind: Kind::Event,
            body,
            message_id: self.message_id,
            event: self.event,
            account: self.account,
            account_id: self.account_id,
            received_at: self.received_at,
            event_ts: self.event_ts,
            meeting_uuid: self.meeting_uuid,
            error_code: None,
            headers: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_keeps_the_body_byte_for_byte() {
        for body in [
            br#"{"event":"recording.completed",  "payload":{"topic":"\u00e9t\u00e9 \u4f1a\u8b70"}}"#.to_vec(),
            "{\"topic\":\"réunion 会議\"}\n".as_bytes().to_vec(),
            vec![0xff, 0xfe, b'{'],
        ] {
            let item = Item {
                body: body.clone(),
                event: Some("recording.completed".into()),
                ..Item::default()
            };
            let text = serde_json::to_string(&Line::from_item(&item)).expect("line");
            assert!(!text.contains('\n'), "one line");
            let line: Line = serde_json::from_str(&text).expect("parse");
            assert_eq!(line.into_item(7).expect("item").body, body);
        }
    }
}
