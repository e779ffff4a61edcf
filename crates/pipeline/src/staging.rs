//! Where files wait between download and upload, and the markers that make every stage
//! idempotent. [`StagingKey`] alone spells staging paths.
//!
//! Per meeting (`{account}/{meeting}/`, both injective names from [`names::identity`]):
//!
//! | record | written by | means |
//! |---|---|---|
//! | `wanted/{file}.json` | plan | this file belongs to the meeting (no download URL: it is a credential) |
//! | `dispatched/{file}.json` | plan | its download task was confirmed sent |
//! | `meta/{event}.json` | plan | the meeting as that event (or the API) described it |
//! | `files/{file}` | download | the bytes; appears only once complete |
//! | `files/{file}.done.json` | download | complete, with size and SHA-256: a task for a done file is skipped |
//! | `files/{file}.failed.json` | download | given up on (dead-lettered), with the code: the meeting goes on without it |
//! | `manifest.json` | assemble | every wanted file is done or given up on |
//! | `verified/{digest}.json` | upload | each file of that manifest as verified at the destination (path, size, ETag) |
//! | `cleanup/{digest}.json` | cleanup | deletion of that manifest's files claimed (created only if absent), then done |
//! | `concat/{view}.{sha256}.mp4` | assemble | a view's segments joined and verified, named by its content |
//! | `concat/{view}.{inputs}.json` | assemble | the one join of exactly these segments (created only if absent): every assembler uses it |
//! | `concat/work-{run}/` | assemble | one join at work: links to its segments, ffmpeg's output; removed after |
//!
//! Markers are written only after what they vouch for is complete: their presence is the check.

use std::collections::{BTreeMap, BTreeSet};

use object_store::path::Path;
use relay_storage::names::{component, identity};
use relay_storage::{Location, StorageError, StoreUrl};
use secrecy::SecretString;

/// Every staging path, built here only.
pub enum StagingKey<'a> {
    Wanted {
        file_id: &'a str,
    },
    WantedDir,
    Dispatched {
        file_id: &'a str,
    },
    DispatchedDir,
    Failed {
        file_id: &'a str,
    },
    Verified {
        digest: &'a str,
    },
    CleanupClaim {
        digest: &'a str,
    },
    Meta {
        event_id: &'a str,
    },
    MetaDir,
    Data {
        file_id: &'a str,
    },
    Done {
        file_id: &'a str,
    },
    /// Bytes of a download that outlasted its hold limit, from `offset` on (see the download
    /// stage); joined into the file when the last part lands.
    Part {
        file_id: &'a str,
        offset: u64,
    },
    PartsDir {
        file_id: &'a str,
    },
    /// The file's size as the file server gave it, once a part's answer told it: later
    /// deliveries fetch up to it and never ask for bytes past the end.
    PartsSize {
        file_id: &'a str,
    },
    FilesDir,
    Manifest,
    /// A joined view, by its content's SHA-256: two assemblers' joins never overwrite each other.
    Concat {
        view: &'a str,
        sha256: &'a str,
    },
    /// The record of the join of `inputs` (a digest of the segments' ids and SHA-256s).
    JoinRecord {
        view: &'a str,
        inputs: &'a str,
    },
    /// A join's private working directory (local staging only).
    JoinWork {
        run: &'a str,
    },
    ConcatDir,
}

const DONE_SUFFIX: &str = ".done.json";
const FAILED_SUFFIX: &str = ".failed.json";

impl StagingKey<'_> {
    fn relative(&self) -> String {
        match self {
            Self::Wanted { file_id } => format!("wanted/{}.json", identity(file_id)),
            Self::WantedDir => "wanted".into(),
            Self::Dispatched { file_id } => format!("dispatched/{}.json", identity(file_id)),
            Self::DispatchedDir => "dispatched".into(),
            Self::Failed { file_id } => format!("files/{}{FAILED_SUFFIX}", identity(file_id)),
            Self::Verified { digest } => format!("verified/{}.json", identity(digest)),
            Self::CleanupClaim { digest } => format!("cleanup/{}.json", identity(digest)),
            Self::Meta { event_id } => format!("meta/{}.json", identity(event_id)),
            Self::MetaDir => "meta".into(),
            Self::Data { file_id } => format!("files/{}", identity(file_id)),
            Self::Done { file_id } => format!("files/{}{DONE_SUFFIX}", identity(file_id)),
            Self::Part { file_id, offset } => format!("parts/{}/{offset:020}", identity(file_id)),
            Self::PartsDir { file_id } => format!("parts/{}", identity(file_id)),
            Self::PartsSize { file_id } => format!("parts/{}/size.json", identity(file_id)),
            Self::FilesDir => "files".into(),
            Self::Manifest => "manifest.json".into(),
            Self::Concat { view, sha256 } => {
                format!("concat/{}.{}.mp4", identity(view), component(sha256))
            }
            Self::JoinRecord { view, inputs } => {
                format!("concat/{}.{}.json", identity(view), component(inputs))
            }
            Self::JoinWork { run } => format!("concat/work-{}", component(run)),
            Self::ConcatDir => "concat".into(),
        }
    }
}

/// Records beside the meetings', under names no account's folder can take (an account's
/// folder name always ends with a digest; these do not).
pub enum RecordKey<'a> {
    /// Who does a job only one process may do at a time (see [`crate::lease`]).
    Lease { name: &'a str },
    /// How far an account's recordings are known to be reconciled.
    Watermark { account: &'a str },
    /// Where a reader of a stream got (the notifier in the status stream).
    Cursor { name: &'a str },
    /// One generation of a user-managed OAuth app's grant (see [`crate::oauth`]).
    Grant { account: &'a str, generation: u64 },
    /// Where an account's grant generations are.
    Grants { account: &'a str },
}

/// Where files wait between download and upload.
#[derive(Clone)]
pub struct Staging {
    pub location: Location,
}

/// One meeting's corner of staging.
pub struct MeetingStaging<'s> {
    staging: &'s Staging,
    dir: String,
}

impl Staging {
    pub fn new(
        url: &StoreUrl,
        options: &BTreeMap<String, SecretString>,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            location: Location::parse(url, options)?,
        })
    }

    /// A record of the whole deployment or of one account (not of a meeting).
    pub fn record(&self, key: RecordKey<'_>) -> Result<Path, StorageError> {
        let relative = match key {
            RecordKey::Lease { name } => format!("_leases/{}.json", identity(name)),
            RecordKey::Cursor { name } => format!("_cursors/{}.json", identity(name)),
            RecordKey::Grant {
                account,
                generation,
            } => format!(
                "_accounts/{}/oauth/{generation:020}.json",
                identity(account)
            ),
            RecordKey::Grants { account } => format!("_accounts/{}/oauth", identity(account)),
            RecordKey::Watermark { account } => {
                format!("_accounts/{}/reconciled.json", identity(account))
            }
        };
        self.location.path(&relative)
    }

    /// The records of `account`'s meeting `uuid`.
    pub fn meeting(&self, account: &str, uuid: &str) -> MeetingStaging<'_> {
        MeetingStaging {
            staging: self,
            dir: format!("{}/{}", identity(account), identity(uuid)),
        }
    }
}

impl MeetingStaging<'_> {
    fn relative(&self, key: StagingKey<'_>) -> String {
        format!("{}/{}", self.dir, key.relative())
    }

    pub fn path(&self, key: StagingKey<'_>) -> Result<Path, StorageError> {
        self.staging.location.path(&self.relative(key))
    }

    /// The meeting's folder: every record of it is below.
    pub fn dir(&self) -> Result<Path, StorageError> {
        self.staging.location.path(&self.dir)
    }

    /// The local filesystem path of a key, when staging is a local directory (ffmpeg needs one).
    pub fn local_path(&self, key: StagingKey<'_>) -> Option<std::path::PathBuf> {
        self.staging.location.local_path(&self.relative(key))
    }

    pub fn location(&self) -> &Location {
        &self.staging.location
    }

    /// Which files are wanted, dispatched, done and given up on, from listings and no reads:
    /// called once per staged file, it must stay cheap however many files a meeting has.
    pub async fn snapshot(&self) -> Result<Snapshot, StorageError> {
        let location = &self.staging.location;
        let names = |paths: &[Path], suffix: &str| -> BTreeSet<String> {
            paths
                .iter()
                .filter_map(|path| path.filename()?.strip_suffix(suffix).map(str::to_owned))
                .collect()
        };
        let files = location.list(&self.path(StagingKey::FilesDir)?).await?;
        Ok(Snapshot {
            wanted: names(
                &location.list(&self.path(StagingKey::WantedDir)?).await?,
                ".json",
            ),
            dispatched: names(
                &location
                    .list(&self.path(StagingKey::DispatchedDir)?)
                    .await?,
                ".json",
            ),
            done: names(&files, DONE_SUFFIX),
            failed: names(&files, FAILED_SUFFIX),
        })
    }
}

/// Wanted, dispatched, done and failed files of a meeting, by their staging names.
pub struct Snapshot {
    wanted: BTreeSet<String>,
    dispatched: BTreeSet<String>,
    done: BTreeSet<String>,
    failed: BTreeSet<String>,
}

impl Snapshot {
    pub fn is_wanted(&self, file_id: &str) -> bool {
        self.wanted.contains(&identity(file_id))
    }

    pub fn is_dispatched(&self, file_id: &str) -> bool {
        self.dispatched.contains(&identity(file_id))
    }

    pub fn is_done(&self, file_id: &str) -> bool {
        self.done.contains(&identity(file_id))
    }

    pub fn wanted(&self) -> usize {
        self.wanted.len()
    }

    /// Wanted files neither done nor given up on.
    pub fn missing(&self) -> usize {
        self.wanted
            .iter()
            .filter(|name| !self.done.contains(*name) && !self.failed.contains(*name))
            .count()
    }

    /// Every wanted file is staged or given up on (and there is at least one): the meeting
    /// can be assembled, without the files that failed.
    pub fn complete(&self) -> bool {
        !self.wanted.is_empty() && self.missing() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_that_sanitise_alike_get_distinct_keys() {
        let staging =
            Staging::new(&StoreUrl::new("memory:///"), &BTreeMap::new()).expect("staging");
        let meeting = staging.meeting("acme", "ab/c+d==");
        let one = meeting
            .path(StagingKey::Data { file_id: "a/b" })
            .expect("key");
        let two = meeting
            .path(StagingKey::Data { file_id: "a_b" })
            .expect("key");
        assert_ne!(one, two);
        let other = staging.meeting("acme", "ab_c+d==");
        assert_ne!(
            other.path(StagingKey::Manifest).expect("key"),
            meeting.path(StagingKey::Manifest).expect("key")
        );
    }
}
