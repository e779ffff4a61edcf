//! Why a stage failed: one enum of stable codes, each always retryable or always not.
//!
//! The code travels as the `x-error-code` header of a dead letter and labels the dead-letter
//! metric; operators match on it (docs/failures.md lists every one, checked by a test). The reason
//! beside it keeps the whole error chain in words.

use std::time::Duration;

macro_rules! codes {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $text:literal, $retry:literal; )+) => {
        /// A stage failure, as operators see it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            /// The stable text of the code (`x-error-code`).
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text,)+ }
            }

            /// Whether the message is tried again (through the retry tiers, up to
            /// `pipeline.max_attempts`) before it is dead-lettered.
            pub fn is_retryable(self) -> bool {
                match self { $(Code::$variant => $retry,)+ }
            }

            /// What it means, for the docs and the status page.
            pub fn describe(self) -> &'static str {
                match self { $(Code::$variant => concat!($($doc),+).trim(),)+ }
            }

            pub fn parse(text: &str) -> Option<Code> {
                Self::ALL.iter().copied().find(|code| code.as_str() == text)
            }
        }
    };
}

codes! {
    /// The body is not the message this stage takes.
    Undecodable = "undecodable", false;
    /// The message carries no account binding: it was not published by a verified path (by hand,
    /// say).
    MissingBinding = "missing_binding", false;
    /// The message was delivered more often than `pipeline.delivery_limit`: its consumers
    /// crashed or were killed while holding it.
    DeliveryLimit = "delivery_limit", false;
    /// The stage's code panicked on this message (a bug): tried again, then dead-lettered.
    HandlerPanicked = "handler_panicked", true;
    /// Handing the result on to the next stage was not confirmed by the broker.
    PublishFailed = "publish_failed", true;
    /// No configured account has the bound name (removed or renamed since).
    UnknownAccount = "unknown_account", false;
    /// The bound Zoom account id is not the configured one, or the event names another account
    /// than the one that signed it.
    AccountMismatch = "account_mismatch", false;
    /// Zoom did not answer usefully in time (429 after retries, 5xx, network).
    ZoomUnavailable = "zoom_unavailable", true;
    /// Zoom refused the account's credentials or token (fix the app, then replay).
    ZoomCredentials = "zoom_credentials", true;
    /// Zoom refused the request (a 4xx other than 404 or 429).
    ZoomRefused = "zoom_refused", false;
    /// A file is still processing at Zoom; the stage waits, without spending attempts.
    FileProcessing = "file_processing", true;
    /// A file was still processing after `pipeline.processing_deadline`.
    FileProcessingTimeout = "file_processing_timeout", false;
    /// Zoom answers 404 for the file (retried: gone now may mean not there yet).
    FileNotFound = "file_not_found", true;
    /// Zoom served an HTML page instead of the file: deleted or unauthorised. Never stored.
    HtmlInsteadOfFile = "html_instead_of_file", false;
    /// The file served is far from the size Zoom listed. Never stored.
    SizeMismatch = "size_mismatch", false;
    /// The download URL or a redirect points outside `zoom.download_hosts`, or is not https.
    DownloadNotAllowed = "download_not_allowed", false;
    /// No credential (event token, access token, fresh URL) opened the file.
    DownloadUnauthorized = "download_unauthorized", false;
    /// The file server sent more bytes than it promised.
    DownloadOverlong = "download_overlong", false;
    /// The file server refused the download (a 4xx other than 401, 403, 404).
    DownloadRefused = "download_refused", false;
    /// The transfer broke off (network, 5xx, a stall) beyond its resumptions.
    DownloadFailed = "download_failed", true;
    /// Staging or the destination failed a read or write (full disk, permissions, a store that
    /// is down).
    StorageFailed = "storage_failed", true;
    /// A key or a record in a store is malformed.
    StorageInvalid = "storage_invalid", false;
    /// The account's path template cannot be rendered.
    PathTemplate = "path_template", false;
    /// A file the manifest lists is neither in staging nor at the destination yet.
    StagedFileMissing = "staged_file_missing", true;
    /// What arrived at the destination differs from what was staged.
    VerificationFailed = "verification_failed", true;
    /// The destination already holds another object under the file's key: it is not
    /// overwritten (a forced replay may).
    DestinationConflict = "destination_conflict", false;
    /// No manifest in staging: nothing is known to be ready.
    NoManifest = "no_manifest", false;
    /// A file is not at the destination with its recorded size: nothing is deleted at Zoom.
    NotVerified = "not_verified", true;
    /// An MP4 or M4A failed ffprobe's integrity check (`verify_media`): unreadable, or cut
    /// short. After the last attempt the file stays at Zoom, listed as missing, and the rest of
    /// the meeting is archived.
    MediaBroken = "media_broken", true;
    /// Cleanup waits: the account's grace period, or another worker deleting the same meeting.
    Waiting = "waiting", true;
    /// Not a failure: a download held its delivery for `pipeline.download_hold_limit`, kept
    /// what it had as a part, and continues from there in a new delivery.
    DownloadContinues = "download_continues", true;
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a handler returns when it did not finish its message.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Failed with a code: retried if the code is retryable, else dead-lettered at once.
    #[error("{code}: {reason}")]
    Failed { code: Code, reason: String },
    /// Not yet possible; comes back after about `retry_in` without spending an attempt. With
    /// `give_up_after`, waiting longer than that in total fails with `code`'s timeout.
    #[error("{code} (waiting {retry_in:?}): {reason}")]
    Wait {
        code: Code,
        reason: String,
        retry_in: Duration,
        give_up_after: Option<Duration>,
    },
}

impl StageError {
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Self::Failed {
            code,
            reason: reason.into(),
        }
    }

    /// `code` with `error` and its whole chain of sources as the reason.
    pub fn from_error(code: Code, error: &(dyn std::error::Error + 'static)) -> Self {
        Self::new(code, chain(error))
    }

    pub fn wait(code: Code, reason: impl Into<String>, retry_in: Duration) -> Self {
        Self::Wait {
            code,
            reason: reason.into(),
            retry_in,
            give_up_after: None,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Self::Failed { code, .. } | Self::Wait { code, .. } => *code,
        }
    }
}

/// `error: source: source …`, without repeating a source its parent already quoted.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

// What the leaf crates' errors mean for a stage: the one place they are classified.

fn zoom_code(error: &zoom_api::ZoomError) -> Code {
    use zoom_api::ZoomError;
    match error {
        ZoomError::Credentials { .. } | ZoomError::Unauthorized { .. } => Code::ZoomCredentials,
        ZoomError::NotFound { .. } => Code::FileNotFound,
        ZoomError::Api { .. } => Code::ZoomRefused,
        ZoomError::RateLimited { .. }
        | ZoomError::Server { .. }
        | ZoomError::Transport(_)
        | ZoomError::Decode(_)
        | ZoomError::TokenStore(_) => Code::ZoomUnavailable,
    }
}

impl From<zoom_api::ZoomError> for StageError {
    fn from(error: zoom_api::ZoomError) -> Self {
        Self::from_error(zoom_code(&error), &error)
    }
}

impl From<zoom_api::client::DownloadError> for StageError {
    fn from(error: zoom_api::client::DownloadError) -> Self {
        use zoom_api::client::DownloadError;
        let code = match &error {
            DownloadError::Api(zoom) => zoom_code(zoom),
            DownloadError::NotAllowed(_) => Code::DownloadNotAllowed,
            DownloadError::Unauthorized => Code::DownloadUnauthorized,
            DownloadError::NotFound => Code::FileNotFound,
            DownloadError::HtmlInsteadOfFile { .. } => Code::HtmlInsteadOfFile,
            DownloadError::SizeMismatch { .. } => Code::SizeMismatch,
            DownloadError::Processing => Code::FileProcessing,
            DownloadError::Overlong { .. } => Code::DownloadOverlong,
            DownloadError::Http { status } if *status == 429 || *status >= 500 => {
                Code::DownloadFailed
            }
            DownloadError::Http { .. } => Code::DownloadRefused,
            DownloadError::Incomplete { .. }
            | DownloadError::BadRange
            | DownloadError::Transport(_) => Code::DownloadFailed,
            DownloadError::Sink(_) => Code::StorageFailed,
        };
        Self::from_error(code, &error)
    }
}

impl From<relay_storage::StorageError> for StageError {
    fn from(error: relay_storage::StorageError) -> Self {
        let code = if error.is_retryable() {
            Code::StorageFailed
        } else {
            Code::StorageInvalid
        };
        Self::from_error(code, &error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(Code::parse(code.as_str()), Some(*code));
            assert!(!code.describe().is_empty());
        }
    }

    #[test]
    fn every_code_is_documented_for_operators() {
        let docs = include_str!("../../../docs/failures.md");
        for code in Code::ALL {
            assert!(
                docs.contains(&format!("`{}`", code.as_str())),
                "docs/failures.md lacks `{code}`"
            );
        }
    }

    #[test]
    fn the_chain_keeps_every_source() {
        let io = std::io::Error::other("disk full");
        #[derive(Debug, thiserror::Error)]
        #[error("writing the staged file")]
        struct Outer(#[source] std::io::Error);
        let text = chain(&Outer(io));
        assert_eq!(text, "writing the staged file: disk full");
    }
}
