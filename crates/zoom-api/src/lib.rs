//! Zoom, as zoom-relay sees it. Depends on nothing of the relay's: the pipeline uses it, never
//! the other way round.
//!
//! - [`settings`]: the `[zoom]` section and an app's [`settings::Credentials`].
//! - [`webhook`]: event-notification signatures (`x-zm-signature`) and the URL-validation answer.
//! - [`event`]: event names, and the envelope every event shares, read only after verification.
//! - [`model`]: recordings, files, users — unknown fields and file types kept as data.
//! - [`client`]: the REST API for one account (Server-to-Server or user-managed OAuth, rate
//!   limits, retries), the optional meeting metadata, and
//!   the streaming, resuming, verifying file download.

pub mod client;
pub mod event;
pub mod model;
pub mod settings;
pub mod webhook;

pub use client::{ZoomClient, ZoomError};
pub use event::EventName;
pub use settings::{Credentials, GrantType, ZoomSettings};
