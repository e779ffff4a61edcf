//! What the zoom-relay stages share, and nothing of how they run (that is the core's loop).
//!
//! - [`settings`]: the `[pipeline]` and `[[accounts]]` sections.
//! - [`accounts`]: each account with its one Zoom client, destination and path templates; the
//!   account a message's binding names.
//! - [`messages`]: the tasks stages hand each other, each bound to its stage by type.
//! - [`staging`]: the staging layout whose markers make every stage idempotent.
//! - [`paths`]: the one function family that turns a recording's identity into keys.
//! - [`manifest`]: the per-meeting `meeting.json`.
//! - [`metadata`]: the optional enrichments of a manifest, each behind its own scope.
//! - [`lease`]: one process at a time for a job, across replicas, through staging.
//! - [`features`]: what an account's features need of its app's scopes (`zoom-relay check`).
//! - [`oauth`]: a user-managed OAuth app's rotating refresh token, kept in staging.
//!
//! [`Shared`] is what a stage is built from: the per-process parts the composition root builds
//! once.

pub mod accounts;
pub mod features;
pub mod lease;
pub mod manifest;
pub mod messages;
pub mod metadata;
pub mod oauth;
pub mod owner;
pub mod paths;
pub mod settings;
pub mod staging;

use std::sync::Arc;

pub use accounts::{Account, Accounts};
use relay_core::failure::{Code, StageError};
use relay_core::metrics::StageMetrics;
pub use settings::{AccountSettings, DeleteAfterUpload, PipelineSettings};
pub use staging::Staging;

/// The parts every stage of a process shares, built once.
#[derive(Clone)]
pub struct Shared {
    pub accounts: Accounts,
    pub staging: Staging,
    pub settings: Arc<PipelineSettings>,
    pub metrics: StageMetrics,
}

/// Why a stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Account(#[from] accounts::AccountError),
    #[error("staging: {0}")]
    Staging(#[from] relay_storage::StorageError),
    #[error("{0}")]
    Requirement(String),
}

impl From<paths::TemplateError> for StageError {
    fn from(error: paths::TemplateError) -> Self {
        StageError::from_error(Code::PathTemplate, &error)
    }
}
