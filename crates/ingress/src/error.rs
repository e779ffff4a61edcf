//! Every refusal the ingress answers, each with a stable `error` code.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use relay_core::broker::PublishError;
use relay_core::entry::EntryError;
use serde::Serialize;
use zoom_api::webhook::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error(transparent)]
    Unauthorized(#[from] VerifyError),
    #[error("the body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the body could not be read")]
    BodyUnreadable,
    #[error("the body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("too many request bodies are arriving at once; retry later")]
    Busy,
    #[error(
        "the event names Zoom account `{named}`, but it was signed with the secret token of another account"
    )]
    AccountMismatch { named: String },
    #[error("invalid replay claim: {0}")]
    InvalidReplayClaim(#[from] relay_core::binding::ReplayClaimError),
    #[error("the event's meeting uuid is not one Zoom would send")]
    InvalidMeetingUuid,
    #[error("the body is not JSON")]
    InvalidJson,
    #[error("the body has no usable `event` field")]
    MissingEvent,
    #[error("endpoint.url_validation without payload.plainToken")]
    MissingPlainToken,
    #[error("the event could not be stored: {0}")]
    BrokerUnavailable(#[from] PublishError),
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
}

impl From<EntryError> for IngressError {
    fn from(error: EntryError) -> Self {
        match error {
            EntryError::InvalidJson => Self::InvalidJson,
            EntryError::MissingEvent => Self::MissingEvent,
            EntryError::AccountMismatch { named } => Self::AccountMismatch { named },
            EntryError::InvalidMeetingUuid => Self::InvalidMeetingUuid,
        }
    }
}

impl IngressError {
    /// The stable code clients and dashboards match on; also the `outcome` metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(VerifyError::MissingHeaders) => "missing_signature",
            Self::Unauthorized(VerifyError::InvalidSignature) => "invalid_signature",
            Self::Unauthorized(VerifyError::StaleTimestamp) => "stale_timestamp",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyUnreadable => "body_unreadable",
            Self::BodyTimeout(_) => "body_timeout",
            Self::Busy => "ingress_busy",
            Self::AccountMismatch { .. } => "account_mismatch",
            Self::InvalidReplayClaim(_) => "invalid_replay_claim",
            Self::InvalidMeetingUuid => "invalid_meeting_uuid",
            Self::InvalidJson => "invalid_json",
            Self::MissingEvent => "missing_event",
            Self::MissingPlainToken => "missing_plain_token",
            Self::BrokerUnavailable(_) => "broker_unavailable",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
        }
    }
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub message: String,
}

impl ResponseError for IngressError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) | Self::InvalidReplayClaim(_) => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            // Zoom retries on anything but 2xx.
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            // Signed, but for another tenant: never acted on, whoever retries it.
            Self::AccountMismatch { .. } => StatusCode::FORBIDDEN,
            Self::BodyUnreadable
            | Self::InvalidJson
            | Self::MissingEvent
            | Self::InvalidMeetingUuid => StatusCode::BAD_REQUEST,
            Self::MissingPlainToken => StatusCode::BAD_REQUEST,
            // Zoom retries on anything but 2xx: the event is not lost, only delayed.
            Self::BrokerUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
        })
    }
}
