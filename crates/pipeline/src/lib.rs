//! What the zoom-relay stages share.
//!
//! - [`messages`]: what stages hand each other (small JSON references, never bytes).
//! - [`storage`]: object stores as [`storage::Location`]s, and the staging layout whose markers
//!   make every stage idempotent.
//! - [`paths`]: the one function family that turns a recording's identity into object paths.
//! - [`manifest`]: the per-meeting `meeting.json`.
//! - [`accounts`]: each configured account's settings, Zoom client, destination and templates.

pub mod accounts;
pub mod manifest;
pub mod messages;
pub mod paths;
pub mod storage;

pub use accounts::{Account, Accounts};

/// Why a stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Account(#[from] accounts::AccountError),
    #[error("staging: {0}")]
    Staging(#[from] storage::StorageError),
    #[error("{0}")]
    Requirement(String),
}
