//! What can go wrong talking to Zoom, classified once: [`ZoomError::is_retryable`] and
//! [`DownloadError::is_retryable`] are the only places that decide.
//!
//! No variant carries a URL, a token or a body: reqwest's errors are stripped of their URL.

#[derive(Debug, thiserror::Error)]
pub enum ZoomError {
    #[error("Zoom refused the credentials (HTTP {status}): {reason}")]
    Credentials { status: u16, reason: String },
    #[error("Zoom answered HTTP {status} (code {code:?}): {message}")]
    Api {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("not found at Zoom (code {code:?}): {message}")]
    NotFound { code: Option<i64>, message: String },
    #[error("still unauthorized after renewing the access token: {message}")]
    Unauthorized { message: String },
    #[error("rate limited by Zoom after {attempts} attempts")]
    RateLimited { attempts: u32 },
    #[error("Zoom kept failing (HTTP {status}) after {attempts} attempts")]
    Server { status: u16, attempts: u32 },
    #[error("cannot reach Zoom: {0}")]
    Transport(String),
    #[error("unexpected answer from Zoom: {0}")]
    Decode(String),
}

impl ZoomError {
    /// Worth trying again later (another delivery, a retry tier).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Transport(_)
        )
    }

    pub(crate) fn transport(error: reqwest::Error) -> Self {
        Self::Transport(error.without_url().to_string())
    }
}

impl From<ZoomError> for relay_core::consumer::StageError {
    fn from(error: ZoomError) -> Self {
        if error.is_retryable() {
            Self::retry("zoom_api", error)
        } else {
            Self::reject("zoom_api", error)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("download refused: {0}")]
    NotAllowed(String),
    #[error("no credential in the chain (event token, access token, fresh URL) was accepted")]
    Unauthorized,
    #[error("the file is gone at Zoom (HTTP 404)")]
    NotFound,
    #[error(
        "Zoom served an HTML page instead of the file (HTTP {status}): deleted or unauthorised"
    )]
    HtmlInsteadOfFile { status: u16 },
    #[error("Zoom serves {served} bytes where the payload promised {expected}")]
    SizeMismatch { expected: u64, served: u64 },
    #[error("the file is still processing at Zoom")]
    Processing,
    #[error("download incomplete: {received} of {promised:?} bytes after every resumption")]
    Incomplete {
        received: u64,
        promised: Option<u64>,
    },
    #[error("the server sent more than the {promised} bytes it promised")]
    Overlong { promised: u64 },
    #[error("the server answered a resumption at the wrong offset")]
    BadRange,
    #[error("download answered HTTP {status}")]
    Http { status: u16 },
    #[error("cannot reach the file server: {0}")]
    Transport(String),
    #[error("refreshing the download URL failed: {0}")]
    Api(#[from] ZoomError),
    #[error("writing the download failed: {0}")]
    Sink(#[from] std::io::Error),
}

impl DownloadError {
    /// Worth trying again later. A deleted file (HTML), a size far off, a refused host or a 404
    /// will not change by waiting: they are reported, not retried forever.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Processing
            | Self::Incomplete { .. }
            | Self::Transport(_)
            | Self::BadRange
            | Self::Sink(_) => true,
            Self::Http { status } => *status == 429 || *status >= 500,
            Self::Api(error) => error.is_retryable(),
            Self::NotAllowed(_)
            | Self::Unauthorized
            | Self::NotFound
            | Self::HtmlInsteadOfFile { .. }
            | Self::SizeMismatch { .. }
            | Self::Overlong { .. } => false,
        }
    }

    /// A short stable code for metrics, dead-letter headers and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAllowed(_) => "download_not_allowed",
            Self::Unauthorized => "download_unauthorized",
            Self::NotFound => "file_not_found",
            Self::HtmlInsteadOfFile { .. } => "html_instead_of_file",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::Processing => "file_processing",
            Self::Incomplete { .. } => "download_incomplete",
            Self::Overlong { .. } => "download_overlong",
            Self::BadRange => "bad_range",
            Self::Http { .. } => "download_http_error",
            Self::Transport(_) => "download_transport",
            Self::Api(_) => "zoom_api_error",
            Self::Sink(_) => "sink_error",
        }
    }

    pub(crate) fn transport(error: reqwest::Error) -> Self {
        if error.is_redirect() {
            return Self::NotAllowed(
                "a redirect pointed outside zoom.download_hosts (or looped)".into(),
            );
        }
        Self::Transport(error.without_url().to_string())
    }
}
