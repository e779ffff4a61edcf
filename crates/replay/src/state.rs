//! A job's state on disk: its request (secrets excepted) and how far it got, so an interrupted
//! job resumes where it stopped (`--resume JOB`). Written after every event, by replacing the
//! file (a crash leaves the previous state, never half of one).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ReplayError;
use crate::request::Request;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Passed the filters.
    pub matched: u64,
    pub sent: u64,
    /// Refused by the target, one by one.
    pub failed: u64,
    /// Matched, but not replayable (a dead letter without an account binding).
    pub skipped: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobState {
    pub request: Request,
    /// The last position handled (a stream offset, a line number).
    pub position: Option<i64>,
    pub counts: Counts,
    pub complete: bool,
    pub updated_at: DateTime<Utc>,
}

impl JobState {
    fn new(request: Request) -> Self {
        Self {
            request,
            position: None,
            counts: Counts::default(),
            complete: false,
            updated_at: Utc::now(),
        }
    }
}

/// Where job states live: `$XDG_STATE_HOME/zoom-relay/replay`, else
/// `~/.local/state/zoom-relay/replay`.
pub fn default_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("zoom-relay").join("replay")
}

pub struct StateFile {
    /// `None` for a dry run: it sends nothing, so there is nothing to resume.
    path: Option<PathBuf>,
    pub state: JobState,
}

impl StateFile {
    /// A new job's state, written under `dir`; refuses a job id that exists.
    pub fn create(dir: &Path, request: Request) -> Result<Self, ReplayError> {
        let mut file = Self::ephemeral(request);
        file.keep_in(dir)?;
        Ok(file)
    }

    /// Starts writing an in-memory state under `dir`; refuses a job id that exists.
    pub fn keep_in(&mut self, dir: &Path) -> Result<(), ReplayError> {
        let path = Self::path(dir, &self.state.request.job);
        if path.exists() {
            return Err(ReplayError::JobExists(self.state.request.job.clone()));
        }
        self.path = Some(path);
        self.save()
    }

    /// A state kept in memory only.
    pub fn ephemeral(request: Request) -> Self {
        Self {
            path: None,
            state: JobState::new(request),
        }
    }

    pub fn load(dir: &Path, job: &str) -> Result<Self, ReplayError> {
        if !relay_core::binding::is_job_id(job) {
            return Err(ReplayError::InvalidJob(job.to_owned()));
        }
        let path = Self::path(dir, job);
        let text = std::fs::read_to_string(&path).map_err(|_| ReplayError::UnknownJob {
            job: job.to_owned(),
            dir: dir.display().to_string(),
        })?;
        let state: JobState = serde_json::from_str(&text).map_err(|error| ReplayError::File {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        Ok(Self {
            path: Some(path),
            state,
        })
    }

    pub fn save(&mut self) -> Result<(), ReplayError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        self.state.updated_at = Utc::now();
        let failed = |error: std::io::Error| ReplayError::File {
            path: path.display().to_string(),
            reason: error.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let text = serde_json::to_vec_pretty(&self.state).map_err(|error| ReplayError::File {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, text).map_err(failed)?;
        std::fs::rename(&partial, path).map_err(failed)
    }

    fn path(dir: &Path, job: &str) -> PathBuf {
        dir.join(format!("{job}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Filter, Options, Source, Target};

    #[test]
    fn a_state_survives_a_reload_and_a_job_id_is_used_once() {
        let dir = tempfile::tempdir().expect("dir");
        let request = Request {
            job: "job-7".into(),
            source: Source::DeadLetters {
                stage: "download".into(),
            },
            filter: Filter::default(),
            target: Target::OwnStage,
            options: Options::default(),
        };
        let mut file = StateFile::create(dir.path(), request.clone()).expect("create");
        file.state.position = Some(41);
        file.state.counts.sent = 3;
        file.save().expect("save");
        let loaded = StateFile::load(dir.path(), "job-7").expect("load");
        assert_eq!(loaded.state.position, Some(41));
        assert_eq!(loaded.state.request, request);
        assert!(matches!(
            StateFile::create(dir.path(), request),
            Err(ReplayError::JobExists(_))
        ));
        assert!(matches!(
            StateFile::load(dir.path(), "../../etc/passwd"),
            Err(ReplayError::InvalidJob(_))
        ));
    }
}
