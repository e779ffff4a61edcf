//! Object stores for zoom-relay, behind one small domain type. Knows nothing of the pipeline.
//!
//! - [`Location`]: a store and a prefix, from a URL (`file:///srv/rec`, `s3://bucket/prefix`,
//!   `gs://…`, `az://…`, `memory:///`), with JSON records, create-only writes, streamed digests.
//! - [`StoreUrl`]: such a URL as configured; printed without credentials.
//! - [`names`]: what one key component may hold, on every store.
//! - [`writer`]: the streaming writer that aborts instead of panicking or leaving parts.
//! - [`copy_streaming`]: a store-to-store copy in bounded memory.
//!
//! Keys are given as relative strings of components built by [`names`]; they are stored as they
//! are, so the key a caller records is the key written.

mod connect;
pub mod names;
pub mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use writer::ObjectWriter;

/// Parts in flight per upload: with the part being filled, a writer holds at most three parts.
const PARTS_IN_FLIGHT: usize = 2;
/// S3's smallest part (all but the last), and the part size of every remote store.
const REMOTE_MIN_PART: usize = 5 * 1024 * 1024;
/// A local directory has neither a minimum nor a part limit: small parts keep a download's
/// memory small and the same whatever the file's size.
const LOCAL_PART: usize = 512 * 1024;
/// Remote stores allow 10,000 parts per object.
const MAX_PARTS: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Only the redacted URL is kept: a store URL can carry credentials (a SAS token, say).
    #[error("invalid store URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid key `{key}`: {reason}")]
    Key { key: String, reason: String },
    #[error("unreadable record {path}: {reason}")]
    Record { path: String, reason: String },
}

impl StorageError {
    /// Transient: worth another attempt later. A full disk, a permission an operator fixes, a
    /// store that is down all are; a malformed URL, key or record is not.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::Url { .. } | Self::Key { .. } | Self::Record { .. }
        )
    }
}

/// An object store URL as configured. `Debug`, `Display` and serialisation show it without user
/// info and query (where credentials hide); [`StoreUrl::expose`] gives it whole.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(String);

impl StoreUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn scheme(&self) -> &str {
        self.0.split("://").next().unwrap_or_default()
    }

    pub fn is_local(&self) -> bool {
        self.scheme() == "file"
    }

    /// `scheme://host/path`, without user info, query or fragment.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(url) => format!(
                "{}://{}{}",
                url.scheme(),
                url.host_str().unwrap_or_default(),
                url.path()
            ),
            Err(_) => format!("{}://[unparsable]", self.scheme()),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for StoreUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

/// A store and a prefix within it.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The store behind the client (bucket and endpoint, container and account): two locations
    /// with the same identity can copy or rename server-side.
    identity: String,
    local: Option<std::path::PathBuf>,
}

impl Location {
    /// The location `url` names, configured from `options` over the process environment, the way
    /// each store's users configure it (see `connect`; credentials from one source only).
    pub fn parse(
        url: &StoreUrl,
        options: &BTreeMap<String, SecretString>,
    ) -> Result<Self, StorageError> {
        let invalid = |reason: String| StorageError::Url {
            url: url.redacted(),
            reason,
        };
        let parsed = url::Url::parse(url.expose()).map_err(|error| invalid(error.to_string()))?;
        let local = if parsed.scheme() == "file" {
            // Decoded: `file:///srv/my%20recordings` is the directory `/srv/my recordings`, as
            // object_store reads it.
            let dir = parsed
                .to_file_path()
                .map_err(|()| invalid("not a local directory".into()))?;
            // A local destination that does not exist yet is created, as a bucket would be there.
            std::fs::create_dir_all(&dir)?;
            Some(dir)
        } else {
            None
        };
        // Variables that are not UTF-8 configure no store.
        let env = std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        });
        let connected = connect::connect(url, &parsed, options, env)?;
        Ok(Self {
            store: Arc::from(connected.store),
            prefix: connected.prefix,
            identity: connected.identity,
            local,
        })
    }

    /// `relative` (components separated by `/`, each from [`names`]) under this location's
    /// prefix, stored exactly as given.
    pub fn path(&self, relative: &str) -> Result<Path, StorageError> {
        let joined = if self.prefix.as_ref().is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        };
        Path::parse(&joined).map_err(|error| StorageError::Key {
            key: relative.to_owned(),
            reason: error.to_string(),
        })
    }

    /// The filesystem path of `relative`, for a local directory (ffmpeg needs one).
    pub fn local_path(&self, relative: &str) -> Option<std::path::PathBuf> {
        Some(self.local.as_ref()?.join(relative))
    }

    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    pub fn same_store_as(&self, other: &Location) -> bool {
        self.identity == other.identity
    }

    /// Multipart part size for a file of `size` bytes on this store.
    pub fn part_size(&self, size: u64) -> usize {
        if self.is_local() {
            return LOCAL_PART;
        }
        (size.div_ceil(MAX_PARTS) as usize).max(REMOTE_MIN_PART)
    }

    /// A streaming writer; the object appears under `path` only once [`ObjectWriter::finish`]
    /// succeeds.
    pub fn writer(&self, path: &Path, expected_size: u64) -> ObjectWriter {
        ObjectWriter::new(
            self.store.clone(),
            path.clone(),
            self.part_size(expected_size),
            PARTS_IN_FLIGHT,
        )
    }

    /// What the store says of `path` (size, version tag).
    pub async fn head(&self, path: &Path) -> Result<object_store::ObjectMeta, StorageError> {
        Ok(self.store.head(path).await?)
    }

    pub async fn exists_with_size(&self, path: &Path) -> Result<Option<u64>, StorageError> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    fn to_json<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, StorageError> {
        serde_json::to_vec_pretty(value).map_err(|error| StorageError::Record {
            path: path.to_string(),
            reason: error.to_string(),
        })
    }

    pub async fn put_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), StorageError> {
        let bytes = Self::to_json(path, value)?;
        self.store.put(path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Writes only if nothing is there yet; `false` when something was.
    pub async fn create_json<T: Serialize>(
        &self,
        path: &Path,
        value: &T,
    ) -> Result<bool, StorageError> {
        let bytes = Self::to_json(path, value)?;
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

    /// The objects directly under `prefix`.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<Path>, StorageError> {
        let listing = self.store.list_with_delimiter(Some(prefix)).await?;
        Ok(listing
            .objects
            .into_iter()
            .map(|object| object.location)
            .collect())
    }

    /// Every record directly under `prefix` whose name ends with `suffix`.
    pub async fn list_json<T: DeserializeOwned>(
        &self,
        prefix: &Path,
        suffix: &str,
    ) -> Result<Vec<T>, StorageError> {
        let mut records = Vec::new();
        for path in self.list(prefix).await? {
            if path.as_ref().ends_with(suffix)
                && let Some(record) = self.get_json(&path).await?
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Deletes `path`; already gone is success.
    pub async fn delete(&self, path: &Path) -> Result<(), StorageError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
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

/// Streams the objects `from` (in order: one object, or the parts of one) in `source` into `to`
/// in `target`, hashing what is sent; on any failure nothing appears at `to`.
pub async fn copy_streaming(
    source: &Location,
    from: &[Path],
    target: &Location,
    to: &Path,
    size: u64,
) -> Result<(u64, String), StorageError> {
    let mut writer = target.writer(to, size);
    let copied = async {
        let mut hasher = Sha256::new();
        for part in from {
            let mut stream = source.store.get(part).await?.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                writer.write(chunk).await?;
            }
        }
        Ok::<_, StorageError>((writer.written(), hex::encode(hasher.finalize())))
    }
    .await;
    match copied {
        Ok(copied) => {
            writer.finish().await?;
            Ok(copied)
        }
        Err(error) => {
            writer.abort().await;
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_print_without_credentials() {
        let url = StoreUrl::new("az://user:secret@container/prefix?sig=SAS-SECRET&se=2030");
        for printed in [format!("{url:?}"), url.to_string()] {
            assert!(!printed.contains("secret"), "{printed}");
            assert!(!printed.contains("SAS"), "{printed}");
            assert!(printed.contains("container/prefix"), "{printed}");
        }
    }

    #[tokio::test]
    async fn unicode_keys_are_stored_as_given_on_a_local_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let location = Location::parse(
            &StoreUrl::new(format!("file://{}", dir.path().display())),
            &BTreeMap::new(),
        )
        .expect("location");
        let topic = names::component("Unity_4 зум 18:40 [142]");
        let key = format!("{topic}/1-gallery_view.mp4");
        let path = location.path(&key).expect("key");
        location
            .store
            .put(&path, PutPayload::from_static(b"bytes"))
            .await
            .expect("written");
        let on_disk = dir.path().join(&topic).join("1-gallery_view.mp4");
        assert!(on_disk.exists(), "{} not on disk", on_disk.display());
        assert_eq!(location.local_path(&key), Some(on_disk));
    }

    fn files_under(root: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }

    #[tokio::test]
    async fn copies_between_stores_in_parts_and_leaves_nothing_half_written() {
        let options = BTreeMap::new();
        let source = Location::parse(&StoreUrl::new("memory:///"), &options).expect("memory");
        let dir = tempfile::tempdir().expect("dir");
        let target = Location::parse(
            &StoreUrl::new(format!("file://{}", dir.path().display())),
            &options,
        )
        .expect("file store");
        assert!(!source.same_store_as(&target));
        // 3.5 parts of the local store's part size, in two staged pieces copied as one object.
        let bytes: Vec<u8> = (0..3_600_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let (first, second) = bytes.split_at(1_000_001);
        let parts = [
            source.path("staged/a").expect("key"),
            source.path("staged/b").expect("key"),
        ];
        source
            .store
            .put(&parts[0], first.to_vec().into())
            .await
            .expect("staged");
        source
            .store
            .put(&parts[1], second.to_vec().into())
            .await
            .expect("staged");
        let to = target.path("meeting/1-gallery_view.mp4").expect("key");
        let (sent, sha256) = copy_streaming(&source, &parts, &target, &to, bytes.len() as u64)
            .await
            .expect("copied");
        assert_eq!(sent, bytes.len() as u64);
        assert_eq!(sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(target.digest(&to).await.expect("read back"), (sent, sha256));

        // A copy that fails midway (its second part is gone) leaves no object and no part.
        let missing = [
            parts[0].clone(),
            source.path("staged/missing").expect("key"),
        ];
        let failed = target.path("meeting/2-gallery_view.mp4").expect("key");
        assert!(
            copy_streaming(&source, &missing, &target, &failed, bytes.len() as u64)
                .await
                .is_err()
        );
        assert_eq!(target.exists_with_size(&failed).await.expect("head"), None);
        let leftovers: Vec<_> = files_under(dir.path())
            .into_iter()
            .filter(|p| !p.ends_with("1-gallery_view.mp4"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn a_failed_write_is_an_error_never_a_panic() {
        let dir = tempfile::tempdir().expect("dir");
        let location = Location::parse(
            &StoreUrl::new(format!("file://{}", dir.path().display())),
            &BTreeMap::new(),
        )
        .expect("location");
        // A directory already holds the file's name: every write to it fails.
        std::fs::create_dir_all(dir.path().join("taken/name")).expect("dir");
        for size in [10, 3 * 1024 * 1024] {
            let path = location.path("taken/name").expect("key");
            let mut writer = location.writer(&path, size as u64);
            let write = writer.write(bytes::Bytes::from(vec![7u8; size])).await;
            let result = match write {
                Ok(()) => writer.finish().await,
                Err(error) => {
                    writer.abort().await;
                    Err(error)
                }
            };
            assert!(result.is_err(), "{size} bytes");
        }
    }
}
