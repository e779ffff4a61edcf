//! Zoom's frames on the event socket: JSON text frames with a `module`.
//!
//! - `build_connection`: the first frame, saying whether the subscription was accepted.
//! - `heartbeat`: the client sends `{"module":"heartbeat"}`; Zoom answers with `content` `live`.
//! - `message`: an event, its JSON *as a string* in `content` — published as those bytes.

use serde::Deserialize;
use serde_json::Value;

/// What the client sends every `websocket.heartbeat_interval`.
pub const HEARTBEAT: &str = r#"{"module":"heartbeat"}"#;

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    BuildConnection {
        success: bool,
    },
    Heartbeat,
    /// An event's body, as Zoom wrote it.
    Message(String),
    /// A module this client does not act on.
    Other(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("the frame is not a JSON object with a `module`")]
    Malformed,
    #[error("a `message` frame without `content`")]
    NoContent,
}

#[derive(Deserialize)]
struct Raw {
    module: String,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    content: Option<Value>,
}

impl Frame {
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let raw: Raw = serde_json::from_str(text).map_err(|_| FrameError::Malformed)?;
        Ok(match raw.module.as_str() {
            "build_connection" => Self::BuildConnection {
                success: raw.success.unwrap_or(true),
            },
            "heartbeat" => Self::Heartbeat,
            "message" => match raw.content {
                Some(Value::String(body)) => Self::Message(body),
                // Not how Zoom sends it; an event object is still an event.
                Some(object @ Value::Object(_)) => Self::Message(object.to_string()),
                _ => return Err(FrameError::NoContent),
            },
            other => Self::Other(other.chars().take(64).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_zooms_frames() {
        assert_eq!(
            Frame::parse(r#"{"module":"build_connection","success":true,"content":"ok"}"#),
            Ok(Frame::BuildConnection { success: true })
        );
        assert_eq!(
            Frame::parse(r#"{"module":"heartbeat","content":"live"}"#),
            Ok(Frame::Heartbeat)
        );
        let event = r#"{"event":"recording.completed","payload":{"account_id":"A"}}"#;
        let frame = serde_json::json!({"module": "message", "content": event}).to_string();
        assert_eq!(Frame::parse(&frame), Ok(Frame::Message(event.into())));
        assert_eq!(
            Frame::parse(r#"{"module":"message"}"#),
            Err(FrameError::NoContent)
        );
        assert_eq!(Frame::parse("live"), Err(FrameError::Malformed));
    }
}
