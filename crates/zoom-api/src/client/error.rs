//! What can go wrong talking to Zoom. What each means for the pipeline (retried or not, which
//! failure code) is decided in one place, beside the failure codes (`relay_core::failure`).
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
    /// The shared store of a user-managed OAuth app's refresh token failed.
    #[error("{0}")]
    TokenStore(String),
}

impl ZoomError {
    pub(crate) fn transport(error: reqwest::Error) -> Self {
        Self::Transport(error.without_url().to_string())
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
    pub(crate) fn transport(error: reqwest::Error) -> Self {
        if error.is_redirect() {
            return Self::NotAllowed(
                "a redirect pointed outside zoom.download_hosts (or looped)".into(),
            );
        }
        Self::Transport(error.without_url().to_string())
    }
}
