//! Object stores behind two small domain types: [`Location`] (a store and a prefix, from a URL)
//! and [`Staging`], whose [`StagingKey`] alone spells staging paths.
//!
//! Staging holds, per meeting (`{account}/{meeting_key}/`): `wanted/{file}.json` (what the plan
//! wants, no secrets), `meta/{event}.json` (the meeting as each event described it),
//! `files/{file}` (the bytes), `files/{file}.done.json` (size and SHA-256 once complete),
//! `manifest.json`, and `cleanup.json` (the deletion claim). Markers are written only after what
//! they vouch for is complete: their presence is the idempotency check.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::paths::meeting_key;

/// Multipart parts: S3's 5 MiB minimum, and large enough that a file fits in 10,000 of them.
pub fn part_size(file_size: u64) -> usize {
    let minimum = 5 * 1024 * 1024;
    (file_size.div_ceil(10_000) as usize).max(minimum)
}

/// Parts in flight per upload: with the part being filled, a writer holds at most three parts.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Only the scheme is kept: a store URL can carry credentials (a SAS token, say).
    #[error("invalid {scheme} store URL: {reason}")]
    Url { scheme: String, reason: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    #[error("unreadable record {path}: {reason}")]
    Record { path: String, reason: String },
    #[error("verification failed for {path}: {reason}")]
    Verification { path: String, reason: String },
}

impl StorageError {
    /// Transient: worth another attempt later.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Url { .. } | Self::Record { .. })
    }
}

impl From<StorageError> for relay_core::consumer::StageError {
    fn from(error: StorageError) -> Self {
        if error.is_retryable() {
            Self::retry("storage", error)
        } else {
            Self::reject("storage", error)
        }
    }
}

/// A store and a prefix within it, from a URL such as `file:///srv/rec` or `s3://bucket/prefix`.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Scheme and bucket: two locations with the same identity can copy or rename server-side.
    identity: String,
}

impl Location {
    pub fn parse(
        url: &str,
        options: &BTreeMap<String, SecretString>,
    ) -> Result<Self, StorageError> {
        let scheme = url.split("://").next().unwrap_or_default().to_owned();
        let parsed = url::Url::parse(url).map_err(|error| StorageError::Url {
            scheme: scheme.clone(),
            reason: error.to_string(),
        })?;
        if parsed.scheme() == "file" {
            // A local destination that does not exist yet is created, as a bucket would be there.
            std::fs::create_dir_all(parsed.path())?;
        }
        let options = options
            .iter()
            .map(|(key, value)| (key.clone(), value.expose_secret().to_owned()));
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, options).map_err(|error| StorageError::Url {
                scheme,
                reason: error.to_string(),
            })?;
        Ok(Self {
            store: Arc::from(store),
            prefix,
            identity: format!(
                "{}://{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default()
            ),
        })
    }

    /// `relative` under this location's prefix; its parts must already be sanitised.
    pub fn path(&self, relative: &str) -> Path {
        self.prefix
            .parts()
            .chain(Path::from(relative).parts())
            .collect()
    }

    pub fn same_store_as(&self, other: &Location) -> bool {
        self.identity == other.identity
    }

    pub async fn exists_with_size(&self, path: &Path) -> Result<Option<u64>, StorageError> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn put_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|error| StorageError::Record {
            path: path.to_string(),
            reason: error.to_string(),
        })?;
        self.store.put(path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Writes only if nothing is there yet; `false` when something was.
    pub async fn create_json<T: Serialize>(
        &self,
        path: &Path,
        value: &T,
    ) -> Result<bool, StorageError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|error| StorageError::Record {
            path: path.to_string(),
            reason: error.to_string(),
        })?;
        match self
            .store
            .put_opts(
                path,
                PutPayload::from(bytes),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, StorageError> {
        let bytes = match self.store.get(path).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StorageError::Record {
                path: path.to_string(),
                reason: error.to_string(),
            })
    }

    /// Every record directly under `prefix` whose name ends with `suffix`.
    pub async fn list_json<T: DeserializeOwned>(
        &self,
        prefix: &Path,
        suffix: &str,
    ) -> Result<Vec<T>, StorageError> {
        let listing = self.store.list_with_delimiter(Some(prefix)).await?;
        let mut records = Vec::new();
        for object in listing.objects {
            if object.location.as_ref().ends_with(suffix)
                && let Some(record) = self.get_json(&object.location).await?
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Opens a multipart writer; the object appears under `path` only once complete.
    pub fn writer(&self, path: &Path, expected_size: u64) -> BufWriter {
        BufWriter::with_capacity(self.store.clone(), path.clone(), part_size(expected_size))
            .with_max_concurrency(PARTS_IN_FLIGHT)
    }

    /// SHA-256 and size of what is stored at `path`, read as a stream.
    pub async fn digest(&self, path: &Path) -> Result<(u64, String), StorageError> {
        let mut stream = self.store.get(path).await?.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((size, hex::encode(hasher.finalize())))
    }
}

/// Streams `from` in `source` to `to` in `target` with multipart parts, hashing what is sent;
/// aborts the upload on any failure so no half-written object or orphaned parts remain.
pub async fn copy_streaming(
    source: &Location,
    from: &Path,
    target: &Location,
    to: &Path,
    size: u64,
) -> Result<(u64, String), StorageError> {
    let mut writer = target.writer(to, size);
    let copied = async {
        let mut stream = source.store.get(from).await?.into_stream();
        let mut hasher = Sha256::new();
        let mut sent = 0;
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk?;
            hasher.update(&chunk);
            sent += chunk.len() as u64;
            writer.write_all(&chunk).await?;
        }
        writer.shutdown().await?;
        Ok::<_, StorageError>((sent, hex::encode(hasher.finalize())))
    }
    .await;
    if copied.is_err() {
        let _ = writer.abort().await;
    }
    copied
}

/// Every staging path, built here only.
pub enum StagingKey<'a> {
    Wanted {
        account: &'a str,
        uuid: &'a str,
        file_id: &'a str,
    },
    WantedDir {
        account: &'a str,
        uuid: &'a str,
    },
    Meta {
        account: &'a str,
        uuid: &'a str,
        event_id: &'a str,
    },
    MetaDir {
        account: &'a str,
        uuid: &'a str,
    },
    Data {
        account: &'a str,
        uuid: &'a str,
        file_id: &'a str,
    },
    Done {
        account: &'a str,
        uuid: &'a str,
        file_id: &'a str,
    },
    FilesDir {
        account: &'a str,
        uuid: &'a str,
    },
    Manifest {
        account: &'a str,
        uuid: &'a str,
    },
    CleanupClaim {
        account: &'a str,
        uuid: &'a str,
    },
    Concat {
        account: &'a str,
        uuid: &'a str,
        view: &'a str,
    },
}

impl StagingKey<'_> {
    fn relative(&self) -> String {
        use crate::paths::sanitize;
        let meeting =
            |account: &str, uuid: &str| format!("{}/{}", sanitize(account), meeting_key(uuid));
        match self {
            Self::Wanted {
                account,
                uuid,
                file_id,
            } => format!(
                "{}/wanted/{}.json",
                meeting(account, uuid),
                sanitize(file_id)
            ),
            Self::WantedDir { account, uuid } => format!("{}/wanted", meeting(account, uuid)),
            Self::Meta {
                account,
                uuid,
                event_id,
            } => format!(
                "{}/meta/{}.json",
                meeting(account, uuid),
                sanitize(event_id)
            ),
            Self::MetaDir { account, uuid } => format!("{}/meta", meeting(account, uuid)),
            Self::Data {
                account,
                uuid,
                file_id,
            } => format!("{}/files/{}", meeting(account, uuid), sanitize(file_id)),
            Self::Done {
                account,
                uuid,
                file_id,
            } => format!(
                "{}/files/{}.done.json",
                meeting(account, uuid),
                sanitize(file_id)
            ),
            Self::FilesDir { account, uuid } => format!("{}/files", meeting(account, uuid)),
            Self::Manifest { account, uuid } => format!("{}/manifest.json", meeting(account, uuid)),
            Self::CleanupClaim { account, uuid } => {
                format!("{}/cleanup.json", meeting(account, uuid))
            }
            Self::Concat {
                account,
                uuid,
                view,
            } => format!("{}/concat/{}.mp4", meeting(account, uuid), sanitize(view)),
        }
    }
}

/// Where files wait between download and upload.
#[derive(Clone)]
pub struct Staging {
    pub location: Location,
    /// A `file://` directory: what ffmpeg needs.
    local: bool,
}

impl Staging {
    pub fn new(settings: &relay_core::settings::PipelineSettings) -> Result<Self, StorageError> {
        Ok(Self {
            location: Location::parse(&settings.staging, &settings.staging_options)?,
            local: settings.staging.starts_with("file://"),
        })
    }

    pub fn path(&self, key: StagingKey<'_>) -> Path {
        self.location.path(&key.relative())
    }

    /// The local filesystem path of a key, when staging is a local directory (ffmpeg needs one).
    pub fn local_path(&self, key: StagingKey<'_>) -> Option<std::path::PathBuf> {
        self.local
            .then(|| std::path::PathBuf::from(format!("/{}", self.path(key))))
    }
}
