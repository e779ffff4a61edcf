//! One conformance suite over every store zoom-relay writes to: a `file://` temp directory,
//! `memory:///`, S3 on a moto server and Azure Blob on an Azurite, each started by the test on a
//! free port and stopped when it ends (docs/storage.md says what each check means per store).
//!
//! Every check runs for every backend: `file::records`, `s3::records`, `azure::records`, ….

mod credentials;
mod servers;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use relay_storage::{Location, StoreUrl, copy_streaming, names};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use servers::{Azurite, Moto};

const MIB: usize = 1024 * 1024;

/// The store behind a backend, kept alive (and inspected from outside `object_store`) by the test.
enum Server {
    Local(tempfile::TempDir),
    Memory,
    S3 { moto: Moto, bucket: String },
    Azure { azurite: Azurite, container: String },
}

struct Backend {
    name: &'static str,
    location: Location,
    server: Server,
}

#[derive(Clone, Copy)]
enum Kind {
    File,
    Memory,
    S3,
    Azure,
}

impl Backend {
    async fn start(kind: Kind) -> Self {
        let none = BTreeMap::new();
        match kind {
            Kind::File => {
                // A directory whose name needs percent-encoding in its URL.
                let dir = tempfile::Builder::new()
                    .prefix("relay conformance зум ")
                    .tempdir()
                    .expect("dir");
                let url = url::Url::from_directory_path(dir.path()).expect("file URL");
                let location =
                    Location::parse(&StoreUrl::new(url.as_str()), &none).expect("file store");
                Self {
                    name: "file",
                    location,
                    server: Server::Local(dir),
                }
            }
            Kind::Memory => Self {
                name: "memory",
                location: Location::parse(&StoreUrl::new("memory:///"), &none).expect("memory"),
                server: Server::Memory,
            },
            Kind::S3 => {
                let moto = Moto::start();
                let bucket = "conformance".to_owned();
                moto.create_bucket(&bucket).await;
                let location = Location::parse(
                    &StoreUrl::new(format!("s3://{bucket}/prefix")),
                    &moto.options(),
                )
                .expect("S3 store");
                Self {
                    name: "s3",
                    location,
                    server: Server::S3 { moto, bucket },
                }
            }
            Kind::Azure => {
                let azurite = Azurite::start();
                let container = "conformance".to_owned();
                azurite.create_container(&container).await;
                let location = Location::parse(
                    &StoreUrl::new(format!("az://{container}/prefix")),
                    &azurite.options(),
                )
                .expect("Azure store");
                Self {
                    name: "azure",
                    location,
                    server: Server::Azure { azurite, container },
                }
            }
        }
    }

    /// Another location on the same store (as staging and destination may share one).
    fn sibling(&self, prefix: &str) -> Location {
        let (url, options) = match &self.server {
            Server::Local(dir) => (
                format!(
                    "{}{prefix}",
                    url::Url::from_directory_path(dir.path()).expect("file URL")
                ),
                BTreeMap::new(),
            ),
            Server::Memory => return self.location.clone(),
            Server::S3 { moto, bucket } => (format!("s3://{bucket}/{prefix}"), moto.options()),
            Server::Azure { azurite, container } => {
                (format!("az://{container}/{prefix}"), azurite.options())
            }
        };
        Location::parse(&StoreUrl::new(url), &options).expect("sibling")
    }

    /// Multipart uploads (or their leftovers) still held by the store, beyond its objects.
    async fn pending_uploads(&self) -> Vec<String> {
        match &self.server {
            // Parts of a local upload are a temp file beside the target, and visible to a walk.
            Server::Local(dir) => files_under(dir.path()),
            Server::Memory => Vec::new(),
            Server::S3 { moto, bucket } => moto.pending_uploads(bucket).await,
            // Uncommitted blocks are invisible to every read and listing of object_store; what
            // Azure itself still lists is checked (and documented) by the abort checks.
            Server::Azure { .. } => Vec::new(),
        }
    }
}

fn files_under(root: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Bytes that differ at every offset, so a misplaced part shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Polls `condition` for up to ten seconds.
async fn eventually<F, Fut>(mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// ---- The checks ----------------------------------------------------------------------------

/// put/get/list/delete of JSON records, as every stage keeps its markers.
async fn records(backend: &Backend) {
    let location = &backend.location;
    let dir = location.path("records").expect("key");
    let a = location.path("records/a.json").expect("key");
    let b = location.path("records/b.json").expect("key");
    let other = location.path("records/other.txt").expect("key");
    let nested = location.path("records/sub/c.json").expect("key");
    location
        .put_json(&a, &json!({ "n": 1 }))
        .await
        .expect("put a");
    location
        .put_json(&b, &json!({ "n": 2 }))
        .await
        .expect("put b");
    location
        .store
        .put(&other, PutPayload::from_static(b"not json"))
        .await
        .expect("put other");
    location
        .put_json(&nested, &json!({ "n": 9 }))
        .await
        .expect("put nested");

    assert_eq!(
        location.get_json::<Value>(&a).await.expect("get"),
        Some(json!({ "n": 1 }))
    );
    let missing = location.path("records/missing.json").expect("key");
    assert_eq!(
        location.get_json::<Value>(&missing).await.expect("get"),
        None
    );

    let mut listed: Vec<String> = location
        .list(&dir)
        .await
        .expect("list")
        .iter()
        .map(|path| path.as_ref().to_owned())
        .collect();
    listed.sort();
    let expected: Vec<String> = [&a, &b, &other]
        .iter()
        .map(|path| path.as_ref().to_owned())
        .collect();
    assert_eq!(
        listed, expected,
        "{}: only the objects directly under",
        backend.name
    );

    let mut values: Vec<Value> = location.list_json(&dir, ".json").await.expect("list_json");
    values.sort_by_key(|value| value["n"].as_i64());
    assert_eq!(values, vec![json!({ "n": 1 }), json!({ "n": 2 })]);

    location
        .put_json(&a, &json!({ "n": 3 }))
        .await
        .expect("overwrite");
    assert_eq!(
        location.get_json::<Value>(&a).await.expect("get"),
        Some(json!({ "n": 3 }))
    );
    location.delete(&a).await.expect("delete");
    location
        .delete(&a)
        .await
        .expect("deleting what is gone succeeds");
    assert_eq!(location.get_json::<Value>(&a).await.expect("get"), None);
}

/// `create_json` writes only where nothing is: the cleanup stage's claim relies on it.
async fn create_only(backend: &Backend) {
    let location = &backend.location;
    let claim = location.path("claims/cleanup.json").expect("key");
    assert!(
        location
            .create_json(&claim, &json!({ "owner": "first" }))
            .await
            .expect("create"),
        "{}: the first create takes it",
        backend.name
    );
    assert!(
        !location
            .create_json(&claim, &json!({ "owner": "second" }))
            .await
            .expect("create"),
        "{}: the second create finds it taken",
        backend.name
    );
    assert_eq!(
        location.get_json::<Value>(&claim).await.expect("get"),
        Some(json!({ "owner": "first" })),
        "the loser wrote nothing"
    );
    // A stale claim is deleted and taken again.
    location.delete(&claim).await.expect("delete");
    assert!(
        location
            .create_json(&claim, &json!({ "owner": "third" }))
            .await
            .expect("create")
    );

    // Eight workers at once: exactly one wins, and what is stored is the winner's.
    let race = location.path("claims/race.json").expect("key");
    let results = join_all((0..8).map(|worker| {
        let race = race.clone();
        async move {
            location
                .create_json(&race, &json!({ "owner": worker }))
                .await
                .expect("create")
        }
    }))
    .await;
    let winners: Vec<usize> = (0..8).filter(|&worker| results[worker]).collect();
    assert_eq!(winners.len(), 1, "{}: winners {winners:?}", backend.name);
    assert_eq!(
        location.get_json::<Value>(&race).await.expect("get"),
        Some(json!({ "owner": winners[0] }))
    );
}

async fn exists_with_size(backend: &Backend) {
    let location = &backend.location;
    let path = location.path("sized/file.bin").expect("key");
    assert_eq!(location.exists_with_size(&path).await.expect("head"), None);
    location
        .store
        .put(&path, pattern(1234).into())
        .await
        .expect("put");
    assert_eq!(
        location.exists_with_size(&path).await.expect("head"),
        Some(1234)
    );
    let empty = location.path("sized/empty.bin").expect("key");
    location
        .store
        .put(&empty, PutPayload::default())
        .await
        .expect("put");
    assert_eq!(
        location.exists_with_size(&empty).await.expect("head"),
        Some(0)
    );
}

/// Topics as meetings have them, through `names::component` as the relay builds keys.
const TOPICS: [&str; 6] = [
    "Совещание отдела разработки",
    "会议 记录 第二季度",
    "Unity_4 зум 18:40 [142]",
    "café déjà vu – naïve",
    "Réunion d'équipe 🎥 demo",
    "  spaces   inside and around  ",
];

/// Keys with non-Latin characters and spaces are stored, and listed back, exactly as written:
/// the relay records keys in manifests.
async fn unicode_keys(backend: &Backend) {
    let location = &backend.location;
    let mut written = BTreeSet::new();
    for (index, topic) in TOPICS.iter().enumerate() {
        let name = format!("{} - {index} gallery view.mp4", names::component(topic));
        let key = format!("names/{name}");
        let path = location.path(&key).expect("key");
        assert_eq!(
            path.as_ref(),
            format!("{}{key}", prefix_of(backend)),
            "the path is the key, unencoded"
        );
        location
            .store
            .put(&path, pattern(100 + index).into())
            .await
            .expect("put");
        assert_eq!(
            location.exists_with_size(&path).await.expect("head"),
            Some(100 + index as u64),
            "{key}"
        );
        if let Server::Local(dir) = &backend.server {
            // ffmpeg is given this path: the very file object_store wrote.
            let local = location.local_path(&key).expect("a local path");
            assert!(local.starts_with(dir.path()), "{}", local.display());
            assert!(
                local.is_file(),
                "{} is not the file written",
                local.display()
            );
        }
        written.insert(path.as_ref().to_owned());
    }
    let listed: BTreeSet<String> = location
        .list(&location.path("names").expect("key"))
        .await
        .expect("list")
        .iter()
        .map(|path| path.as_ref().to_owned())
        .collect();
    assert_eq!(listed, written, "{}: listed as written", backend.name);

    // And as the store itself holds them, seen without object_store.
    let raw: BTreeSet<String> = match &backend.server {
        Server::Local(dir) => files_under(dir.path())
            .into_iter()
            .filter_map(|file| {
                let relative = std::path::Path::new(&file).strip_prefix(dir.path()).ok()?;
                Some(relative.to_str()?.to_owned())
            })
            .collect(),
        Server::Memory => written.clone(),
        Server::S3 { moto, bucket } => moto
            .keys(bucket, "prefix/names/")
            .await
            .into_iter()
            .collect(),
        Server::Azure { azurite, container } => azurite
            .blobs_including_uncommitted(container)
            .await
            .into_iter()
            .filter(|name| name.starts_with("prefix/names/"))
            .collect(),
    };
    let expected: BTreeSet<String> = match &backend.server {
        Server::Local(_) => written
            .iter()
            .map(|key| key.trim_start_matches(&prefix_of(backend)).to_owned())
            .collect(),
        _ => written.clone(),
    };
    assert_eq!(
        raw, expected,
        "{}: stored under exactly those keys",
        backend.name
    );
    // Each key as the store lists it reads back through object_store unchanged.
    for key in &raw {
        let full = match &backend.server {
            Server::Local(_) => format!("{}{key}", prefix_of(backend)),
            _ => key.clone(),
        };
        let path = Path::parse(&full).expect("a listed key is a path");
        assert!(
            location.store.get(&path).await.is_ok(),
            "{}: {key} read by its listed key",
            backend.name
        );
    }
}

/// What a location's paths start with (its URL's path).
fn prefix_of(backend: &Backend) -> String {
    match &backend.server {
        Server::Local(dir) => format!(
            "{}/",
            dir.path().display().to_string().trim_start_matches('/')
        ),
        Server::Memory => String::new(),
        Server::S3 { .. } | Server::Azure { .. } => "prefix/".into(),
    }
}

/// A file larger than one part, written in uneven chunks and read back whole.
async fn multipart_roundtrip(backend: &Backend) {
    let location = &backend.location;
    let bytes = pattern(12 * MIB + 12_345);
    let path = location.path("big/1-gallery_view.mp4").expect("key");
    let mut writer = location.writer(&path, bytes.len() as u64);
    let shared = Bytes::from(bytes.clone());
    for start in (0..shared.len()).step_by(1_000_003) {
        let end = (start + 1_000_003).min(shared.len());
        writer.write(shared.slice(start..end)).await.expect("write");
    }
    assert_eq!(
        location.exists_with_size(&path).await.expect("head"),
        None,
        "{}: nothing appears before finish",
        backend.name
    );
    writer.finish().await.expect("finish");
    assert_eq!(
        location.digest(&path).await.expect("read back"),
        (bytes.len() as u64, sha256(&bytes)),
        "{}",
        backend.name
    );
    assert_eq!(
        backend.pending_uploads().await.len(),
        files_expected(backend, 1)
    );
}

/// Files a local store holds besides leftovers: the objects the check wrote.
fn files_expected(backend: &Backend, objects: usize) -> usize {
    match backend.server {
        Server::Local(_) => objects,
        _ => 0,
    }
}

/// A writer aborted after its first part was sent leaves no object and no upload.
async fn aborted_writer_leaves_nothing(backend: &Backend) {
    let location = &backend.location;
    let path = location.path("aborted/1-gallery_view.mp4").expect("key");
    let mut writer = location.writer(&path, 12 * MIB as u64);
    // More than one part (5 MiB remote, 1 MiB local): the multipart upload has begun.
    writer
        .write(Bytes::from(pattern(7 * MIB)))
        .await
        .expect("write");
    assert_upload_started(backend, &path).await;
    writer.abort().await;
    assert_nothing_left(backend, &path).await;
}

/// A writer whose task is dropped mid-upload (a cancelled handler) aborts in the background.
async fn dropped_writer_leaves_nothing(backend: &Backend) {
    let location = backend.location.clone();
    let path = location.path("dropped/1-gallery_view.mp4").expect("key");
    let (started, wait_started) = tokio::sync::oneshot::channel();
    let task = tokio::spawn({
        let path = path.clone();
        async move {
            let mut writer = location.writer(&path, 12 * MIB as u64);
            writer
                .write(Bytes::from(pattern(7 * MIB)))
                .await
                .expect("write");
            let _ = started.send(());
            std::future::pending::<()>().await;
            writer.finish().await
        }
    });
    wait_started.await.expect("the task wrote");
    assert_upload_started(backend, &path).await;
    task.abort();
    assert!(task.await.is_err_and(|error| error.is_cancelled()));
    assert_nothing_left(backend, &path).await;
}

/// The multipart upload to `path` is under way at the store: what an abort must undo.
async fn assert_upload_started(backend: &Backend, path: &Path) {
    let started = match &backend.server {
        Server::S3 { moto, bucket } => {
            eventually(|| async { moto.pending_uploads(bucket).await.len() == 1 }).await
        }
        Server::Azure { azurite, container } => {
            eventually(|| async { azurite.uncommitted_blocks(container, path.as_ref()).await > 0 })
                .await
        }
        Server::Local(dir) => eventually(|| async { !files_under(dir.path()).is_empty() }).await,
        Server::Memory => true,
    };
    assert!(started, "{}: the upload had started", backend.name);
}

async fn assert_nothing_left(backend: &Backend, path: &Path) {
    let location = &backend.location;
    let gone = eventually(|| async {
        location
            .exists_with_size(path)
            .await
            .expect("head")
            .is_none()
            && backend.pending_uploads().await.is_empty()
    })
    .await;
    assert!(
        gone,
        "{}: left {:?} / uploads {:?}",
        backend.name,
        location.exists_with_size(path).await,
        backend.pending_uploads().await
    );
    let dir = path.as_ref().rsplit_once('/').map_or("", |(dir, _)| dir);
    let listed = location
        .store
        .list_with_delimiter(Some(&Path::from(dir)))
        .await
        .expect("list");
    assert!(
        listed.objects.is_empty(),
        "{}: nothing listed",
        backend.name
    );
    if let Server::Azure { azurite, container } = &backend.server {
        // Azure keeps the blocks of an unfinished upload, uncommitted, invisible to every read
        // and listing above, until it discards them a week later: there is no call to drop them
        // (object_store's abort does nothing there). Shown, not asserted: docs/storage.md.
        eprintln!(
            "azure: {} uncommitted block(s) left at {path} after the abort, listed only with \
             include=uncommittedblobs: {:?}",
            azurite.uncommitted_blocks(container, path.as_ref()).await,
            azurite.blobs_including_uncommitted(container).await
        );
    }
}

/// The store on the other side of a cross-store copy, for each backend.
async fn other_store(backend: &Backend) -> (Backend, &'static str) {
    match backend.server {
        Server::Local(_) => (Backend::start(Kind::Memory).await, "memory"),
        _ => (Backend::start(Kind::File).await, "file"),
    }
}

/// `copy_streaming` between two different stores, both ways, staged in two parts; its SHA-256
/// is that of the bytes.
async fn copy_between_stores(backend: &Backend) {
    let (other, other_name) = other_store(backend).await;
    assert!(!backend.location.same_store_as(&other.location));
    let bytes = pattern(12 * MIB + 7);
    let expected = (bytes.len() as u64, sha256(&bytes));
    for (source, target, direction) in [
        (
            &other.location,
            &backend.location,
            format!("{other_name} → {}", backend.name),
        ),
        (
            &backend.location,
            &other.location,
            format!("{} → {other_name}", backend.name),
        ),
    ] {
        let (first, second) = bytes.split_at(5 * MIB + 3);
        let parts = [
            source.path("staged/part-1").expect("key"),
            source.path("staged/part-2").expect("key"),
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
        let to = target.path("copied/1-gallery_view.mp4").expect("key");
        let copied = copy_streaming(source, &parts, target, &to, bytes.len() as u64)
            .await
            .expect("copied");
        assert_eq!(copied, expected, "{direction}: what copy_streaming returns");
        assert_eq!(
            target.digest(&to).await.expect("read back"),
            expected,
            "{direction}: what the target holds"
        );
        target.delete(&to).await.expect("delete");
        for part in &parts {
            source.delete(part).await.expect("delete");
        }
    }
    assert!(backend.pending_uploads().await.is_empty());
}

/// A rename within one store (staging and destination on one store): on S3 a copy and a delete.
async fn rename_within_store(backend: &Backend) {
    let staging = backend.sibling("staging");
    let destination = backend.sibling("destination");
    assert!(
        staging.same_store_as(&destination),
        "{}: one store, two prefixes",
        backend.name
    );
    let bytes = pattern(6 * MIB + 1);
    let from = staging.path("acme/meeting/files/file-1").expect("key");
    let to = destination
        .path("host@example.com/Совещание 18_40/1-gallery_view.mp4")
        .expect("key");
    staging
        .store
        .put(&from, bytes.clone().into())
        .await
        .expect("staged");
    staging.store.rename(&from, &to).await.expect("renamed");
    assert_eq!(
        destination.exists_with_size(&to).await.expect("head"),
        Some(bytes.len() as u64)
    );
    assert_eq!(
        staging.exists_with_size(&from).await.expect("head"),
        None,
        "moved, not copied"
    );
    assert_eq!(
        destination.digest(&to).await.expect("read back").1,
        sha256(&bytes)
    );
}

macro_rules! conformance {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn records() {
                super::records(&Backend::start($kind).await).await;
            }

            #[tokio::test]
            async fn create_only() {
                super::create_only(&Backend::start($kind).await).await;
            }

            #[tokio::test]
            async fn exists_with_size() {
                super::exists_with_size(&Backend::start($kind).await).await;
            }

            #[tokio::test]
            async fn unicode_keys() {
                super::unicode_keys(&Backend::start($kind).await).await;
            }

            #[tokio::test]
            async fn multipart_roundtrip() {
                super::multipart_roundtrip(&Backend::start($kind).await).await;
            }

            #[tokio::test]
            async fn aborted_writer_leaves_nothing() {
                super::aborted_writer_leaves_nothing(&Backend::start($kind).await).await;
            }

            #[tokio::test]
            async fn dropped_writer_leaves_nothing() {
                super::dropped_writer_leaves_nothing(&Backend::start($kind).await).await;
            }

            #[tokio::test]
            async fn copy_between_stores() {
                super::copy_between_stores(&Backend::start($kind).await).await;
            }

            #[tokio::test]
            async fn rename_within_store() {
                super::rename_within_store(&Backend::start($kind).await).await;
            }
        }
    };
}

conformance!(file, Kind::File);
conformance!(memory, Kind::Memory);
conformance!(s3, Kind::S3);
conformance!(azure, Kind::Azure);
