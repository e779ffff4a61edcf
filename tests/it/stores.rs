//! The whole pipeline with staging and destinations on real object-store protocols: S3 on a moto
//! server and Azure Blob on an Azurite, each started by the test (the harness of relay-storage's
//! conformance suite, included below) and stopped when it ends.

#[path = "../../crates/storage/tests/conformance/servers.rs"]
mod servers;

use std::collections::{BTreeMap, BTreeSet};

use relay_pipeline::manifest::Manifest;
use relay_pipeline::paths::uuid_component;
use relay_storage::{Location, StoreUrl};
use secrecy::SecretString;
use zoom_sim::{CreatedMeeting, MeetingSpec};

use crate::helpers::eventually;
use crate::pipeline::{TestPipeline, WAIT};
use servers::{Azurite, Moto};

/// One MP4 larger than S3's 5 MiB part (the multipart path), its audio and text files, under a
/// non-Latin topic with characters every store treats specially.
fn meeting() -> MeetingSpec {
    MeetingSpec {
        topic: "Совещание отдела: план/риски 18:40 [v2]".into(),
        segments: 1,
        views: vec!["gallery_view".into()],
        transcript_later: false,
        media_size: 6 * 1024 * 1024 + 12_345,
        ..MeetingSpec::default()
    }
}

/// Where an account's recordings land, and how the test looks there.
struct Destination {
    /// `account` → its location, as the relay is configured.
    url: fn(&str) -> String,
    options: BTreeMap<String, SecretString>,
}

impl Destination {
    fn location(&self, account: &str) -> Location {
        Location::parse(&StoreUrl::new((self.url)(account)), &self.options).expect("destination")
    }

    /// Every key under `account`'s destination, relative to it.
    async fn keys(&self, account: &str) -> BTreeSet<String> {
        let location = self.location(account);
        let root = location.path("x").expect("key");
        let prefix = root.as_ref().trim_end_matches('x').to_owned();
        let mut keys = BTreeSet::new();
        let mut listing = location.store.list(None);
        while let Some(meta) = futures_util::StreamExt::next(&mut listing).await {
            let key = meta.expect("listed").location.as_ref().to_owned();
            if let Some(relative) = key.strip_prefix(&prefix) {
                keys.insert(relative.to_owned());
            }
        }
        keys
    }

    async fn manifest(&self, account: &str, uuid: &str) -> Option<Manifest> {
        let key = self
            .keys(account)
            .await
            .into_iter()
            .find(|key| key.ends_with("meeting.json") && key.contains(&uuid_component(uuid)))?;
        let location = self.location(account);
        location
            .get_json(&location.path(&key).expect("key"))
            .await
            .ok()
            .flatten()
    }
}

/// The meeting sent through the ingress lands whole: every file byte-identical under exactly the
/// key its manifest gives, and nothing else beside the manifest.
async fn assert_delivered_to(
    pipeline: &TestPipeline,
    destination: &Destination,
    created: &CreatedMeeting,
) -> Manifest {
    pipeline.send(&created.recording_completed).await;
    let complete = || async {
        destination
            .manifest("acme", &created.uuid)
            .await
            .filter(|m| m.files().count() == created.files.len())
    };
    let landed = eventually(WAIT, || async { complete().await.is_some() }).await;
    assert!(
        landed,
        "no complete manifest; the destination holds {:?}",
        destination.keys("acme").await
    );
    let manifest = complete().await.expect("manifest");
    let location = destination.location("acme");
    for file in manifest.files() {
        let served = &created.files[&file.file_id];
        let (size, sha256) = location
            .digest(&location.path(&file.path).expect("key"))
            .await
            .unwrap_or_else(|error| panic!("{} not at its manifest key: {error}", file.path));
        assert_eq!(
            (size, sha256.as_str()),
            (served.size, served.sha256.as_str()),
            "{}",
            file.path
        );
    }
    let expected: BTreeSet<String> = manifest
        .files()
        .map(|file| file.path.clone())
        .chain([manifest.manifest_path.clone()])
        .collect();
    assert_eq!(
        destination.keys("acme").await,
        expected,
        "exactly the manifest's keys, as written"
    );
    assert!(
        manifest
            .files()
            .any(|file| file.file_type == "MP4" && file.size > 5 * 1024 * 1024),
        "an MP4 larger than one part"
    );
    manifest
}

/// No staged data is left once the meeting is uploaded (markers may stay).
async fn assert_staging_emptied(staging: &Location) {
    let staged = || async {
        let mut data = Vec::new();
        let mut listing = staging.store.list(None);
        while let Some(meta) = futures_util::StreamExt::next(&mut listing).await {
            let key = meta.expect("listed").location.as_ref().to_owned();
            if key.contains("/files/") && !key.ends_with(".json") {
                data.push(key);
            }
        }
        data
    };
    assert!(
        eventually(WAIT, || async { staged().await.is_empty() }).await,
        "staged data left behind: {:?}",
        staged().await
    );
}

fn s3_destination(moto: &Moto, url: fn(&str) -> String) -> Destination {
    Destination {
        url,
        options: moto.options(),
    }
}

#[tokio::test]
async fn staging_and_destination_on_s3_deliver_byte_for_byte() {
    let moto = Moto::start();
    moto.create_bucket("relay-staging").await;
    moto.create_bucket("relay-recordings").await;
    let destination = s3_destination(&moto, |account| {
        format!("s3://relay-recordings/archive/{account}")
    });
    let staging_url = StoreUrl::new("s3://relay-staging/staging");
    let pipeline = TestPipeline::start(|settings| {
        settings.pipeline.staging = staging_url.clone();
        settings.pipeline.staging_options = moto.options();
        for account in &mut settings.accounts {
            account.destination = StoreUrl::new((destination.url)(&account.name));
            account.destination_options = destination.options.clone();
        }
    })
    .await;
    let created = pipeline.create(&meeting()).await;
    assert_delivered_to(&pipeline, &destination, &created).await;
    let staging = Location::parse(&staging_url, &moto.options()).expect("staging");
    assert_staging_emptied(&staging).await;
    assert!(
        !multipart_starts(&moto, "/relay-recordings/archive/").is_empty(),
        "copied to the other bucket as a multipart upload"
    );
    assert!(
        moto.pending_uploads("relay-recordings").await.is_empty()
            && moto.pending_uploads("relay-staging").await.is_empty(),
        "no multipart upload left open"
    );
}

#[tokio::test]
async fn staging_and_destination_in_one_s3_bucket_move_by_server_side_rename() {
    let moto = Moto::start();
    moto.create_bucket("relay").await;
    let destination = s3_destination(&moto, |account| format!("s3://relay/archive/{account}"));
    let staging_url = StoreUrl::new("s3://relay/staging");
    let pipeline = TestPipeline::start(|settings| {
        settings.pipeline.staging = staging_url.clone();
        settings.pipeline.staging_options = moto.options();
        for account in &mut settings.accounts {
            account.destination = StoreUrl::new((destination.url)(&account.name));
            account.destination_options = destination.options.clone();
        }
    })
    .await;
    let created = pipeline.create(&meeting()).await;
    assert_delivered_to(&pipeline, &destination, &created).await;
    let staging = Location::parse(&staging_url, &moto.options()).expect("staging");
    assert!(staging.same_store_as(&destination.location("acme")));
    assert_staging_emptied(&staging).await;
    // Renamed (CopyObject, then DeleteObject), never uploaded again: no multipart upload was
    // started at the destination, though the MP4 is larger than a part.
    let uploads_to_archive = multipart_starts(&moto, "/relay/archive/");
    assert!(uploads_to_archive.is_empty(), "{uploads_to_archive:?}");
}

/// The multipart uploads moto saw started under `path` (its access log: `POST …?uploads`).
fn multipart_starts(moto: &Moto, path: &str) -> Vec<String> {
    moto.server
        .log()
        .lines()
        .filter(|line| line.contains(&format!("\"POST {path}")) && line.contains("?uploads"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn staging_on_s3_and_destination_on_azure_blob_deliver_byte_for_byte() {
    let moto = Moto::start();
    moto.create_bucket("relay-staging").await;
    let azurite = Azurite::start();
    azurite.create_container("recordings").await;
    let destination = Destination {
        url: |account| format!("az://recordings/{account}"),
        options: azurite.options(),
    };
    let staging_url = StoreUrl::new("s3://relay-staging/staging");
    let pipeline = TestPipeline::start(|settings| {
        settings.pipeline.staging = staging_url.clone();
        settings.pipeline.staging_options = moto.options();
        for account in &mut settings.accounts {
            account.destination = StoreUrl::new((destination.url)(&account.name));
            account.destination_options = destination.options.clone();
        }
    })
    .await;
    let created = pipeline.create(&meeting()).await;
    assert_delivered_to(&pipeline, &destination, &created).await;
    let staging = Location::parse(&staging_url, &moto.options()).expect("staging");
    assert_staging_emptied(&staging).await;
}
