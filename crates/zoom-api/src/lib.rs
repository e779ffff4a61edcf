//! Zoom, as zoom-relay sees it.
//!
//! - [`webhook`]: event-notification signatures (`x-zm-signature`) and the URL-validation answer.
//! - [`event`]: the envelope every event shares, read only after verification.

pub mod event;
pub mod webhook;
