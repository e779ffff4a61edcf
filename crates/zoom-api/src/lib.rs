//! Zoom, as zoom-relay sees it.
//!
//! - [`webhook`]: event-notification signatures (`x-zm-signature`) and the URL-validation answer.
//! - [`event`]: the envelope every event shares, read only after verification.
//! - [`model`]: recordings, files, users — unknown fields and file types kept as data.
//! - [`client`]: the REST API for one account (Server-to-Server OAuth, rate limits, retries) and
//!   the streaming, resuming, verifying file download.

pub mod client;
pub mod event;
pub mod model;
pub mod webhook;

pub use client::{ZoomClient, ZoomError};
