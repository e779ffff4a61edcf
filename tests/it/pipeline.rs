//! The whole pipeline: simulator → ingress → RabbitMQ → plan → download → assemble → upload →
//! cleanup, with temp directories as staging and destination, built by the same composition
//! root as `zoom-relay run`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use relay_app::{App, Component, Settings};
use relay_core::broker::StageName;
use relay_core::shutdown::CancellationToken;
use relay_pipeline::DeleteAfterUpload;
use relay_pipeline::manifest::Manifest;
use relay_pipeline::paths::uuid_component;
use secrecy::SecretString;
use serde_json::{Value, json};
use zoom_sim::{ApiFaults, CreatedMeeting, FileFaults, MeetingSpec, Simulator};

use crate::helpers::proxy::TcpProxy;
use crate::helpers::*;
use crate::zoom_client::point_at_simulator;

pub const WAIT: Duration = Duration::from_secs(30);

/// Every component of `zoom-relay run` but reconciliation, which would list the simulator on its
/// own schedule: tests of it start it themselves.
pub const PIPELINE: [Component; 6] = [
    Component::Ingress,
    Component::Plan,
    Component::Download,
    Component::Assemble,
    Component::Upload,
    Component::Cleanup,
];

pub struct TestPipeline {
    pub settings: Settings,
    pub sim: String,
    pub http: reqwest::Client,
    pub ingress: String,
    pub admin: String,
    pub destination: tempfile::TempDir,
    pub staging: tempfile::TempDir,
    pub shutdown: CancellationToken,
    sim_shutdown: CancellationToken,
}

impl Drop for TestPipeline {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.sim_shutdown.cancel();
        delete_topology(&topology(&self.settings), &[]);
    }
}

/// The settings of a pipeline on its own namespace, temp staging and destinations.
pub fn pipeline_settings(staging: &Path, destination: &Path) -> Settings {
    let mut settings = test_settings(&unique_namespace(), &TestOptions::default());
    settings.sim.listen = "127.0.0.1:0".parse().expect("address");
    settings.pipeline.staging =
        relay_storage::StoreUrl::new(format!("file://{}", staging.display()));
    settings.pipeline.retry_delays = vec![
        Duration::from_millis(100).into(),
        Duration::from_millis(300).into(),
    ];
    settings.pipeline.max_attempts = 5;
    settings.pipeline.drain_timeout = Duration::from_secs(2);
    for account in &mut settings.accounts {
        account.destination = relay_storage::StoreUrl::new(format!(
            "file://{}/{}",
            destination.display(),
            account.name
        ));
    }
    settings
}

impl TestPipeline {
    pub async fn start(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::start_with(&PIPELINE, configure).await
    }

    pub async fn start_with(
        components: &[Component],
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        init_test_log();
        let staging = tempfile::tempdir().expect("staging dir");
        let destination = tempfile::tempdir().expect("destination dir");
        let mut settings = pipeline_settings(staging.path(), destination.path());
        configure(&mut settings);
        let simulator =
            Simulator::build(&settings.sim, relay_app::sim_accounts(&settings)).expect("simulator");
        let sim = simulator.base_url();
        point_at_simulator(&mut settings, &sim);
        let sim_shutdown = CancellationToken::new();
        tokio::spawn(simulator.run(sim_shutdown.clone()));

        let app = App::build(settings.clone(), components).expect("the pipeline starts");
        assert!(
            app.broker().wait_ready(Duration::from_secs(15)).await,
            "broker ready"
        );
        let ingress = format!(
            "http://127.0.0.1:{}/zoom/webhook",
            app.ingress_port().expect("ingress")
        );
        let admin = format!("http://127.0.0.1:{}", app.admin_port());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        Self {
            settings,
            sim,
            http: reqwest::Client::new(),
            ingress,
            admin,
            destination,
            staging,
            shutdown,
            sim_shutdown,
        }
    }

    pub async fn create(&self, spec: &MeetingSpec) -> CreatedMeeting {
        let response = self
            .http
            .post(format!("{}/_sim/meetings", self.sim))
            .json(spec)
            .send()
            .await
            .expect("sim");
        assert_eq!(response.status(), 201);
        response.json().await.expect("created")
    }

    /// Serves a real event body captured from Zoom; returns the body to send.
    pub async fn import(&self, fixture: &str, account: &str) -> zoom_sim::ImportedFixture {
        let path = format!(
            "{}/../../shared/fixtures/zoom-real/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        );
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect(&path))
            .expect("fixture JSON");
        let response = self
            .http
            .post(format!("{}/_sim/fixtures", self.sim))
            .json(&json!({ "account": account, "event": event }))
            .send()
            .await
            .expect("sim");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.expect("imported")
    }

    /// Zoom finishes the transcript it held back; the event it then sends.
    pub async fn release_transcript(&self, uuid: &str) -> Value {
        self.http
            .post(format!("{}/_sim/release", self.sim))
            .json(&json!({ "uuid": uuid }))
            .send()
            .await
            .expect("sim")
            .json()
            .await
            .expect("event")
    }

    pub async fn send(&self, event: &Value) {
        self.send_as(ACME_TOKEN, event).await;
    }

    pub async fn send_as(&self, secret: &str, event: &Value) {
        let delivery = zoom_sim::send::post_signed(
            &self.http,
            &self.ingress,
            &SecretString::from(secret),
            &event.to_string(),
        )
        .await
        .expect("posted");
        assert_eq!(delivery.status, 200, "{}", delivery.body);
    }

    pub async fn sim_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.sim))
            .send()
            .await
            .expect("sim")
            .json()
            .await
            .expect("json")
    }

    pub async fn deletions(&self) -> Vec<Value> {
        self.sim_get("/_sim/deletions")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Whether no stage holds or waits for work: every stage queue empty and nothing in flight,
    /// three looks in a row (a message moves between a queue and a handler in between).
    pub async fn quiet(&self) -> bool {
        let topology = topology(&self.settings);
        for _ in 0..3 {
            let metrics = self.metrics().await;
            for stage in StageName::ALL {
                let in_flight = metric_value(
                    &metrics,
                    &format!("zoom_relay_stage_in_flight{{stage=\"{}\"}}", stage.as_str()),
                );
                if in_flight > 0.0 || queue_length(&topology.stage_queue(stage)).await > 0 {
                    return false;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        true
    }

    /// How many messages `stage` finished with `outcome` (ok, retried, waiting).
    pub async fn handled(&self, stage: &str, outcome: &str) -> f64 {
        metric_value(
            &self.metrics().await,
            &format!("zoom_relay_stage_messages_total{{stage=\"{stage}\",outcome=\"{outcome}\"}}"),
        )
    }

    pub fn meeting_dir(&self, uuid: &str) -> Option<PathBuf> {
        find_files(self.destination.path())
            .into_iter()
            .find(|path| {
                path.ends_with("meeting.json")
                    && path.to_string_lossy().contains(&uuid_component(uuid))
            })
            .and_then(|path| path.parent().map(Path::to_path_buf))
    }

    pub fn manifest(&self, uuid: &str) -> Option<Manifest> {
        let dir = self.meeting_dir(uuid)?;
        serde_json::from_slice(&std::fs::read(dir.join("meeting.json")).ok()?).ok()
    }

    pub async fn wait_for_manifest(
        &self,
        uuid: &str,
        done: impl Fn(&Manifest) -> bool,
    ) -> Manifest {
        let found = eventually(WAIT, || async {
            self.manifest(uuid).is_some_and(|m| done(&m))
        })
        .await;
        assert!(
            found,
            "no complete manifest for {uuid}; destination holds {:?}",
            find_files(self.destination.path())
        );
        self.manifest(uuid).expect("manifest")
    }

    pub fn dead_letters(&self, stage: StageName) -> String {
        topology(&self.settings).dead_letter_queue(stage)
    }

    /// Publishes straight to a stage's queue, as someone with broker access could.
    pub async fn publish_by_hand(&self, stage: StageName, body: &Value, headers: FieldTable) {
        publish_to_stage(&self.settings, stage, body, headers).await;
    }
}

/// Publishes `body` straight to `stage`'s queue of the namespace `settings` name.
pub async fn publish_to_stage(
    settings: &Settings,
    stage: StageName,
    body: &Value,
    headers: FieldTable,
) {
    let connection = Connection::connect(&broker_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_publish(
            "".into(),
            topology(settings).stage_queue(stage).as_str().into(),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("published")
        .await
        .expect("sent");
    let _ = connection.close(200, "done".into()).await;
}

pub fn find_files(root: &Path) -> Vec<PathBuf> {
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
    found.sort();
    found
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("readable")))
}

/// Every file the manifest lists is at the destination, under exactly the path the manifest
/// gives, with the bytes the simulator served.
pub fn assert_delivered(pipeline: &TestPipeline, manifest: &Manifest, created: &CreatedMeeting) {
    let root = pipeline.destination.path().join(&manifest.account);
    for file in manifest.files() {
        let path = root.join(&file.path);
        let served = &created.files[&file.file_id];
        assert_eq!(sha256_file(&path), served.sha256, "{}", file.path);
        assert_eq!(file.sha256, served.sha256);
        assert_eq!(file.size, served.size);
    }
}

fn dead_letter_code(message: &lapin::message::BasicGetMessage) -> Option<AMQPValue> {
    message
        .delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get("x-error-code")
        .cloned()
}

fn code(text: &str) -> Option<AMQPValue> {
    Some(AMQPValue::LongString(text.into()))
}

pub fn small(spec: MeetingSpec) -> MeetingSpec {
    MeetingSpec {
        media_size: 1_500_000,
        ..spec
    }
}

#[tokio::test]
async fn delivers_a_multi_segment_meeting_byte_for_byte_with_its_manifest() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let created = pipeline
        .create(&small(MeetingSpec {
            segments: 3,
            views: vec![
                "shared_screen_with_speaker_view".into(),
                "gallery_view".into(),
            ],
            missing_views: vec![(1, "gallery_view".into())],
            participant_audio: 2,
            transcript_later: false,
            event_omits_last_segments: 1,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);

    assert_eq!(manifest.meeting_uuid, created.uuid);
    assert_eq!(manifest.kind, "meeting");
    let views: Vec<Vec<String>> = manifest
        .segments
        .iter()
        .map(|s| {
            s.files
                .iter()
                .filter(|f| f.file_type == "MP4")
                .filter_map(|f| f.view.clone())
                .collect()
        })
        .collect();
    assert_eq!(
        views,
        vec![
            vec![
                "gallery_view".to_string(),
                "shared_screen_with_speaker_view".into()
            ],
            vec!["shared_screen_with_speaker_view".into()],
            vec![
                "gallery_view".into(),
                "shared_screen_with_speaker_view".into()
            ],
        ],
        "segments in order, the missing view missing"
    );
    assert_eq!(
        manifest
            .segments
            .iter()
            .map(|s| s.index)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        manifest.transcripts.len(),
        3,
        "the last segment's files come from the API though the event omitted them"
    );
    assert_eq!(manifest.chat.len(), 3);
    assert_eq!(manifest.participant_audio.len(), 2);
    assert_eq!(manifest.recorded_seconds, 3 * 20 * 60);
    assert!(manifest.auto_delete_date.is_some());
    assert!(
        pipeline.deletions().await.is_empty(),
        "deletion is off by default"
    );
    // Staged copies are removed once uploaded.
    let staged: Vec<PathBuf> = find_files(pipeline.staging.path())
        .into_iter()
        .filter(|p| {
            p.parent().is_some_and(|d| d.ends_with("files"))
                && !p.to_string_lossy().ends_with(".json")
        })
        .collect();
    assert!(staged.is_empty(), "staged data left behind: {staged:?}");
}

#[tokio::test]
async fn webinars_are_delivered_and_meetings_can_be_switched_off() {
    let pipeline = TestPipeline::start(|settings| settings.accounts[0].meetings = false).await;
    let meeting = pipeline.create(&small(MeetingSpec::default())).await;
    let webinar = pipeline
        .create(&small(MeetingSpec {
            webinar: true,
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&meeting.recording_completed).await;
    pipeline.send(&webinar.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&webinar.uuid, |m| m.files().count() == webinar.files.len())
        .await;
    assert_eq!(manifest.kind, "webinar");
    assert_delivered(&pipeline, &manifest, &webinar);
    // The meeting's event was sent first and is skipped without any I/O, while the webinar's
    // went through every stage: had it been planned, its files would be there too by now.
    assert!(
        pipeline.meeting_dir(&meeting.uuid).is_none(),
        "meetings are off"
    );
    let looked_up = format!(
        "/v2/meetings/{}",
        zoom_api::client::meeting_path_segment(&meeting.uuid)
    );
    let planned = !sim_requests(&pipeline.http, &pipeline.sim, &looked_up)
        .await
        .is_empty();
    assert!(!planned, "the skipped meeting was never looked up");
}

#[tokio::test]
async fn webinars_go_to_their_own_destination_filed_under_each_hosts_mapped_owner() {
    let pipeline = TestPipeline::start(|settings| {
        let acme = &mut settings.accounts[0];
        acme.webinar_destination = Some(relay_storage::StoreUrl::new(format!(
            "{}-webinars",
            acme.destination.expose()
        )));
        acme.path_template = "{owner}/{kind}/{meeting_uuid}".into();
        acme.owner = relay_pipeline::owner::OwnerSettings {
            rule: relay_pipeline::owner::OwnerRule::Table,
            table: [("host@example.com".into(), "kaltura-user-7".into())].into(),
            default: "unassigned".into(),
            ..Default::default()
        };
    })
    .await;
    let meeting = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            host_email: "HOST@example.com".into(),
            ..MeetingSpec::default()
        }))
        .await;
    let webinar = pipeline
        .create(&small(MeetingSpec {
            webinar: true,
            transcript_later: false,
            host_email: "visitor@example.org".into(),
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&meeting.recording_completed).await;
    pipeline.send(&webinar.recording_completed).await;
    let meeting_manifest = pipeline
        .wait_for_manifest(&meeting.uuid, |m| m.files().count() == meeting.files.len())
        .await;
    let webinar_manifest = pipeline
        .wait_for_manifest(&webinar.uuid, |m| m.files().count() == webinar.files.len())
        .await;
    assert_eq!(meeting_manifest.owner.as_deref(), Some("kaltura-user-7"));
    assert_eq!(webinar_manifest.owner.as_deref(), Some("unassigned"));
    let root = pipeline.destination.path();
    let under =
        |dir: &str, manifest: &Manifest| root.join(dir).join(&manifest.manifest_path).is_file();
    assert!(
        meeting_manifest
            .manifest_path
            .starts_with("kaltura-user-7/meeting/"),
        "{}",
        meeting_manifest.manifest_path
    );
    assert!(
        under("acme", &meeting_manifest),
        "meetings stay in destination"
    );
    assert!(
        webinar_manifest
            .manifest_path
            .starts_with("unassigned/webinar/"),
        "{}",
        webinar_manifest.manifest_path
    );
    assert!(
        under("acme-webinars", &webinar_manifest),
        "webinars go to webinar_destination"
    );
    assert!(!under("acme", &webinar_manifest));
    for file in webinar_manifest.files() {
        assert!(
            root.join("acme-webinars").join(&file.path).is_file(),
            "{}",
            file.path
        );
    }
}

#[tokio::test]
async fn file_type_and_host_filters_choose_what_moves() {
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].file_types = vec!["MP4".into()];
        settings.accounts[0].exclude_hosts = vec!["Skip@Example.com".into()];
    })
    .await;
    let skipped = pipeline
        .create(&small(MeetingSpec {
            host_email: "skip@example.com".into(),
            ..MeetingSpec::default()
        }))
        .await;
    let kept = pipeline.create(&small(MeetingSpec::default())).await;
    pipeline.send(&skipped.recording_completed).await;
    pipeline.send(&kept.recording_completed).await;
    let mp4s = kept.files.values().filter(|f| f.file_type == "MP4").count();
    let manifest = pipeline
        .wait_for_manifest(&kept.uuid, |m| m.files().count() == mp4s)
        .await;
    assert!(manifest.files().all(|f| f.file_type == "MP4"));
    assert!(manifest.transcripts.is_empty() && manifest.chat.is_empty());
    assert!(
        pipeline.meeting_dir(&skipped.uuid).is_none(),
        "excluded host"
    );
}

#[tokio::test]
async fn a_later_transcript_event_updates_the_same_manifest() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let created = pipeline.create(&small(MeetingSpec::default())).await;
    let transcripts: Vec<&String> = created
        .files
        .iter()
        .filter(|(_, file)| file.file_type == "TRANSCRIPT")
        .map(|(id, _)| id)
        .collect();
    assert!(!transcripts.is_empty());
    pipeline.send(&created.recording_completed).await;
    let first = pipeline
        .wait_for_manifest(&created.uuid, |m| {
            m.files().count() == created.files.len() - transcripts.len()
        })
        .await;
    assert!(
        first.transcripts.is_empty(),
        "Zoom had not finished the transcript yet"
    );
    let transcript_event = pipeline.release_transcript(&created.uuid).await;
    pipeline.send(&transcript_event).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_eq!(manifest.transcripts.len(), transcripts.len());
    assert_eq!(
        manifest.manifest_path, first.manifest_path,
        "the same manifest"
    );
    assert_eq!(manifest.source_events.len(), 2);
    assert_delivered(&pipeline, &manifest, &created);
}

/// A real body Zoom sent about a recording's life after it was made, naming `uuid` (or, for a
/// batch, `uuids`) of `account_id`, sent `order` milliseconds from now.
fn real_update(
    fixture: &str,
    order: i64,
    account_id: &str,
    uuids: &[&str],
    topic: Option<&str>,
) -> Value {
    let path = format!(
        "{}/../../shared/fixtures/zoom-real/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("fixture");
    event["event_ts"] = json!(chrono::Utc::now().timestamp_millis() + order);
    event["payload"]["account_id"] = json!(account_id);
    let object = &mut event["payload"]["object"];
    if object.get("meeting_uuids").is_some() {
        object["meeting_uuids"] = json!(uuids);
    } else {
        object["uuid"] = json!(uuids[0]);
        if object.get("account_id").is_some() {
            object["account_id"] = json!(account_id);
        }
    }
    if let Some(topic) = topic {
        object["topic"] = json!(topic);
    }
    event
}

#[tokio::test]
async fn renames_trashes_and_batches_after_landing_update_the_manifest_and_move_nothing() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let created = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&created.recording_completed).await;
    let landed = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    let account_id = pipeline.settings.accounts[0].account_id.clone();
    let renamed = "Revue trimestrielle — 四半期レビュー";
    for event in [
        real_update(
            "zoomdocs-recording.renamed.json",
            1,
            &account_id,
            &[&created.uuid],
            Some(renamed),
        ),
        real_update(
            "zoomdocs-recording.trashed.json",
            2,
            &account_id,
            &[&created.uuid],
            None,
        ),
        // A batch naming this meeting and one the relay never saw.
        real_update(
            "zoomdocs-recording.batch_trashed.json",
            3,
            &account_id,
            &[&created.uuid, "neverSeenBefore0000000=="],
            None,
        ),
    ] {
        pipeline.send(&event).await;
    }
    let updated = pipeline
        .wait_for_manifest(&created.uuid, |m| m.updates.len() == 3)
        .await;
    let events: Vec<&str> = updated.updates.iter().map(|u| u.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "recording.renamed",
            "recording.trashed",
            "recording.batch_trashed"
        ]
    );
    assert_eq!(updated.topic, renamed);
    assert_eq!(updated.updates[0].topic.as_deref(), Some(renamed));
    assert_eq!(
        updated.manifest_path, landed.manifest_path,
        "the manifest stays where it was"
    );
    let paths = |manifest: &Manifest| {
        let mut paths: Vec<String> = manifest.files().map(|f| f.path.clone()).collect();
        paths.sort();
        paths
    };
    assert_eq!(paths(&updated), paths(&landed), "no file moves");
    assert_delivered(&pipeline, &updated, &created);
    let everything = find_files(pipeline.destination.path());
    assert_eq!(
        everything.len(),
        created.files.len() + 1,
        "nothing new at the destination but the manifest: {everything:#?}"
    );
    assert!(
        !serde_json::to_string(&updated)
            .unwrap_or_default()
            .contains("password"),
        "the trashed event's passcode is not kept"
    );
}

#[tokio::test]
async fn duplicated_concurrent_and_replayed_events_make_one_copy_and_delete_each_file_once() {
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].delete_after_upload = DeleteAfterUpload::Trash
    })
    .await;
    let created = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    // Zoom's two copies at once, from "two addresses", then the same again (a replay).
    tokio::join!(
        pipeline.send(&created.recording_completed),
        pipeline.send(&created.recording_completed_duplicate),
        pipeline.send(&created.recording_completed),
    );
    assert!(
        eventually(WAIT, || async {
            pipeline.deletions().await.len() == created.files.len()
        })
        .await,
        "every file deleted once uploaded"
    );
    let manifest = pipeline.manifest(&created.uuid).expect("manifest");
    assert_delivered(&pipeline, &manifest, &created);

    pipeline.send(&created.recording_completed).await;
    let settled = eventually(WAIT, || async {
        pipeline
            .manifest(&created.uuid)
            .is_some_and(|m| m.source_events.len() >= 3)
    })
    .await;
    assert!(settled, "the later event was processed");
    let files = find_files(pipeline.destination.path());
    assert_eq!(
        files.len(),
        created.files.len() + 1,
        "one copy of each file and one manifest: {files:?}"
    );
    // Every scheduled cleanup ran (each upload schedules one) before deletions are counted.
    let settled = eventually(WAIT, || async {
        let uploads = pipeline.handled("upload", "ok").await;
        uploads > 0.0 && pipeline.handled("cleanup", "ok").await >= uploads
    })
    .await;
    assert!(settled, "cleanups still pending");
    let mut deleted: Vec<String> = pipeline
        .deletions()
        .await
        .iter()
        .map(|d| d["file_id"].as_str().expect("per file").to_owned())
        .collect();
    deleted.sort();
    let mut expected: Vec<String> = created.files.keys().cloned().collect();
    expected.sort();
    assert_eq!(deleted, expected, "each file deleted exactly once");
}

#[tokio::test]
async fn a_deleted_file_served_as_html_is_never_stored_and_the_rest_of_the_meeting_lands() {
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].delete_after_upload = DeleteAfterUpload::Trash
    })
    .await;
    let mut spec = small(MeetingSpec {
        transcript_later: false,
        ..MeetingSpec::default()
    });
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            deleted_html: true,
            ..FileFaults::default()
        },
    );
    let created = pipeline.create(&spec).await;
    pipeline.send(&created.recording_completed).await;
    let dead = wait_for_messages(&pipeline.dead_letters(StageName::Download), 4, WAIT).await;
    assert_eq!(dead.len(), 4, "every MP4 task dead-lettered");
    for message in &dead {
        assert_eq!(dead_letter_code(message), code("html_instead_of_file"));
    }
    // The meeting is archived without them, saying what is missing and why.
    let mp4s: Vec<&String> = created
        .files
        .iter()
        .filter(|(_, file)| file.file_type == "MP4")
        .map(|(id, _)| id)
        .collect();
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.missing.len() == mp4s.len())
        .await;
    assert!(
        manifest
            .missing
            .iter()
            .all(|m| m.code == "html_instead_of_file")
    );
    assert_eq!(manifest.files().count(), created.files.len() - mp4s.len());
    let mp4_on_disk = find_files(pipeline.destination.path())
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "mp4"));
    assert!(!mp4_on_disk, "an HTML page is never stored as the file");
    // What was archived may be deleted at Zoom; what was not, never.
    let settled = eventually(WAIT, || async {
        pipeline.handled("cleanup", "ok").await >= 1.0
    })
    .await;
    assert!(settled);
    let deletions = pipeline.deletions().await;
    assert!(
        deletions
            .iter()
            .all(|d| !mp4s.iter().any(|id| d["file_id"] == id.as_str())),
        "an unarchived file was deleted: {deletions:?}"
    );
}

#[tokio::test]
async fn a_404_file_is_dead_lettered_after_the_bounded_retries_with_the_reason() {
    let pipeline = TestPipeline::start(|settings| settings.pipeline.max_attempts = 3).await;
    let mut spec = small(MeetingSpec {
        segments: 1,
        views: vec!["gallery_view".into()],
        ..MeetingSpec::default()
    });
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            not_found: true,
            ..FileFaults::default()
        },
    );
    let created = pipeline.create(&spec).await;
    pipeline.send(&created.recording_completed).await;
    let dead = wait_for_messages(&pipeline.dead_letters(StageName::Download), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    let headers = dead[0]
        .delivery
        .properties
        .headers()
        .clone()
        .expect("headers");
    let get = |key: &str| headers.inner().get(key).cloned();
    assert_eq!(get("x-error-code"), code("file_not_found"));
    assert_eq!(get("x-attempt"), Some(AMQPValue::LongLongInt(3)));
    assert_eq!(get("x-stage"), code("download"));
    assert_eq!(get("account"), code("acme"), "the binding stays with it");
    let downloads = sim_requests(&pipeline.http, &pipeline.sim, "/rec/")
        .await
        .into_iter()
        .filter(|(_, _, status)| *status == 404)
        .count();
    assert_eq!(downloads, 3, "one request per attempt, then it stopped");
}

#[tokio::test]
async fn recovers_from_rate_limits_server_errors_cuts_and_processing_files() {
    let pipeline = TestPipeline::start(|settings| settings.pipeline.max_attempts = 2).await;
    let mut spec = small(MeetingSpec {
        transcript_later: false,
        ..MeetingSpec::default()
    });
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            cut_after: Some(400_000),
            cut_times: 1,
            ..FileFaults::default()
        },
    );
    spec.faults.insert(
        "M4A".into(),
        FileFaults {
            server_errors: 2,
            rate_limited: 1,
            ..FileFaults::default()
        },
    );
    // Still processing at Zoom for more looks than attempts allow: waiting must spend none.
    spec.faults.insert(
        "CHAT".into(),
        FileFaults {
            processing_reads: 4,
            ..FileFaults::default()
        },
    );
    let created = pipeline.create(&spec).await;
    pipeline
        .http
        .post(format!("{}/_sim/faults", pipeline.sim))
        .json(&ApiFaults {
            rate_limited: 2,
            retry_after_secs: Some(1),
            server_errors: 2,
            ..ApiFaults::default()
        })
        .send()
        .await
        .expect("faults");
    // The event itself says the chat files are still processing.
    let mut event = created.recording_completed.clone();
    for file in event["payload"]["object"]["recording_files"]
        .as_array_mut()
        .expect("files")
    {
        if file["file_type"] == "CHAT" {
            file["status"] = "processing".into();
            file["file_type"] = "".into();
            file.as_object_mut().expect("object").remove("id");
        }
    }
    pipeline.send(&event).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);
    assert!(pipeline.handled("plan", "waiting").await >= 2.0);
}

#[tokio::test]
async fn a_file_processing_past_the_deadline_fails_with_that_reason() {
    let pipeline = TestPipeline::start(|settings| {
        settings.pipeline.processing_deadline = Duration::from_millis(500)
    })
    .await;
    let mut spec = small(MeetingSpec {
        segments: 1,
        views: vec!["gallery_view".into()],
        ..MeetingSpec::default()
    });
    spec.faults.insert(
        "CHAT".into(),
        FileFaults {
            processing_reads: 1000,
            ..FileFaults::default()
        },
    );
    let created = pipeline.create(&spec).await;
    pipeline.send(&created.recording_completed).await;
    let dead = wait_for_messages(&pipeline.dead_letters(StageName::Plan), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead_letter_code(&dead[0]), code("file_processing_timeout"));
}

#[tokio::test]
async fn a_download_longer_than_its_hold_limit_continues_in_parts_and_lands_once_byte_identical() {
    // Zoom serves the MP4s slowly: each takes several hold limits, as a 20 GiB recording at
    // 10 MB/s takes longer than RabbitMQ's 30-minute consumer timeout.
    let pipeline = TestPipeline::start(|settings| {
        settings.pipeline.download_hold_limit = Duration::from_millis(700);
    })
    .await;
    let mut spec = small(MeetingSpec {
        segments: 1,
        transcript_later: false,
        ..MeetingSpec::default()
    });
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            bytes_per_second: Some(400_000),
            ..FileFaults::default()
        },
    );
    let created = pipeline.create(&spec).await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);
    let mp4s = created
        .files
        .values()
        .filter(|file| file.file_type == "MP4")
        .count();
    let continued = sim_requests(&pipeline.http, &pipeline.sim, "/")
        .await
        .into_iter()
        .filter(|(_, _, status)| *status == 206)
        .count();
    assert!(
        continued >= 2 * mp4s,
        "each MP4 continued from its parts more than once: {continued} ranged answers for {mp4s} MP4s"
    );
    let parts: Vec<PathBuf> = find_files(pipeline.staging.path())
        .into_iter()
        .filter(|path| path.components().any(|c| c.as_os_str() == "parts"))
        .collect();
    assert!(parts.is_empty(), "parts removed once joined: {parts:?}");
    assert!(
        eventually(WAIT, || pipeline.quiet()).await,
        "the pipeline settles"
    );
    assert_eq!(
        queue_length(&pipeline.dead_letters(StageName::Download)).await,
        0
    );
}

#[tokio::test]
async fn a_file_split_over_several_connections_lands_once_byte_identical_each_range_resuming_from_its_part()
 {
    // One connection to Zoom is slow (400 kB/s each): the MP4 goes over four at once. Each
    // range also outlasts the hold limit, so the ranges continue from their parts side by side.
    let pipeline = TestPipeline::start(|settings| {
        settings.pipeline.download_ranges = 4;
        settings.pipeline.download_range_min_bytes = 64 * 1024;
        settings.pipeline.download_hold_limit = Duration::from_millis(700);
    })
    .await;
    let mut spec = MeetingSpec {
        segments: 1,
        transcript_later: false,
        media_size: 3_000_000,
        ..MeetingSpec::default()
    };
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            bytes_per_second: Some(400_000),
            ..FileFaults::default()
        },
    );
    let created = pipeline.create(&spec).await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);

    let requests: Value = pipeline
        .http
        .get(format!("{}/_sim/requests", pipeline.sim))
        .send()
        .await
        .expect("simulator reachable")
        .json()
        .await
        .expect("JSON");
    let mp4 = created
        .files
        .iter()
        .find(|(_, file)| file.file_type == "MP4")
        .map(|(id, _)| id.clone())
        .expect("an MP4");
    // A closed range (`bytes=START-END`) is asked only for a file split over connections.
    let range_starts: std::collections::BTreeSet<u64> = requests
        .as_array()
        .into_iter()
        .flatten()
        .filter(|request| request["path"].as_str() == Some(format!("/files/{mp4}").as_str()))
        .filter_map(|request| {
            let (start, end) = request["range"]
                .as_str()?
                .strip_prefix("bytes=")?
                .split_once('-')?;
            (!end.is_empty()).then(|| start.parse().ok()).flatten()
        })
        .collect();
    assert!(
        range_starts.len() >= 3,
        "the MP4 went over several connections at once: closed ranges from {range_starts:?}"
    );
    let parts: Vec<PathBuf> = find_files(pipeline.staging.path())
        .into_iter()
        .filter(|path| path.components().any(|c| c.as_os_str() == "parts"))
        .collect();
    assert!(parts.is_empty(), "parts removed once joined: {parts:?}");
    assert!(
        eventually(WAIT, || pipeline.quiet()).await,
        "the pipeline settles"
    );
    assert_eq!(
        queue_length(&pipeline.dead_letters(StageName::Download)).await,
        0
    );
}

#[tokio::test]
async fn an_empty_file_lands_as_an_empty_file() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let mut created = pipeline
        .create(&small(MeetingSpec {
            segments: 1,
            transcript: true,
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    let transcript = created
        .files
        .iter()
        .find(|(_, file)| file.file_type == "TRANSCRIPT")
        .map(|(id, _)| id.clone())
        .expect("a transcript");
    // Zoom lists and serves it with no bytes (a meeting where nobody spoke).
    let response = pipeline
        .http
        .put(format!("{}/_sim/files/{transcript}/content", pipeline.sim))
        .body(Vec::<u8>::new())
        .send()
        .await
        .expect("sim");
    assert_eq!(response.status(), 200);
    let served: zoom_sim::ServedFile = response.json().await.expect("served");
    assert_eq!(served.size, 0);
    created.files.insert(transcript, served);
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);
}

#[tokio::test]
async fn a_hold_limit_reached_with_the_last_chunk_completes_the_file_rather_than_continuing() {
    // A zero hold limit is reached after every chunk, the last one included: a continuation
    // then would ask for a range past the file's end.
    let pipeline = TestPipeline::start(|settings| {
        settings.pipeline.download_hold_limit = Duration::ZERO;
    })
    .await;
    let created = pipeline
        .create(&MeetingSpec {
            segments: 1,
            transcript_later: false,
            media_size: 100_000,
            ..MeetingSpec::default()
        })
        .await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);
    assert_eq!(
        queue_length(&pipeline.dead_letters(StageName::Download)).await,
        0
    );
}

#[tokio::test]
async fn a_download_killed_mid_transfer_is_redelivered_and_completes() {
    let components = [
        Component::Ingress,
        Component::Plan,
        Component::Assemble,
        Component::Upload,
        Component::Cleanup,
    ];
    let pipeline = TestPipeline::start_with(&components, |_| {}).await;
    let mut spec = MeetingSpec {
        segments: 1,
        views: vec!["gallery_view".into()],
        audio: false,
        chat: false,
        transcript: false,
        media_size: 6_000_000,
        ..MeetingSpec::default()
    };
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            bytes_per_second: Some(1_000_000),
            ..FileFaults::default()
        },
    );
    let created = pipeline.create(&spec).await;
    let file_id = created.files.keys().next().expect("one file").clone();

    // A first downloader, on a connection we can cut, in a runtime we can kill.
    let proxy = TcpProxy::start(broker_address()).await;
    let mut doomed = pipeline.settings.clone();
    doomed.amqp.url = SecretString::from(proxy.amqp_url());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.spawn(async move {
        let app = App::build(doomed, &[Component::Download]).expect("download stage");
        let _ = app.run(CancellationToken::new()).await;
    });
    pipeline.send(&created.recording_completed).await;
    let file_path = format!("/files/{file_id}");
    let started = eventually(WAIT, || async {
        !sim_requests(&pipeline.http, &pipeline.sim, &file_path)
            .await
            .is_empty()
    })
    .await;
    assert!(started, "the first downloader started the transfer");
    runtime.shutdown_background();
    proxy.cut();
    pipeline
        .http
        .post(format!("{}/_sim/files/{file_id}/faults", pipeline.sim))
        .json(&FileFaults::default())
        .send()
        .await
        .expect("faults cleared");

    // A second downloader gets the redelivered task.
    let second = App::build(pipeline.settings.clone(), &[Component::Download]).expect("download");
    tokio::spawn(second.run(pipeline.shutdown.clone()));
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == 1)
        .await;
    assert_delivered(&pipeline, &manifest, &created);
    let fetches = sim_requests(&pipeline.http, &pipeline.sim, &format!("/files/{file_id}"))
        .await
        .len();
    assert!(
        fetches >= 2,
        "the second downloader fetched the file again ({fetches})"
    );
}

#[tokio::test]
async fn deletes_only_after_verified_upload_and_never_when_off() {
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].delete_after_upload = DeleteAfterUpload::Delete;
        settings.accounts[1].delete_after_upload = DeleteAfterUpload::Off;
    })
    .await;
    let deleting = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    let keeping = pipeline
        .create(&small(MeetingSpec {
            account: Some("globex".into()),
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&deleting.recording_completed).await;
    pipeline
        .send_as(GLOBEX_TOKEN, &keeping.recording_completed)
        .await;

    assert!(
        eventually(WAIT, || async {
            pipeline.deletions().await.len() == deleting.files.len()
        })
        .await
    );
    let deletions = pipeline.deletions().await;
    assert!(
        deletions
            .iter()
            .all(|d| d["meeting_uuid"] == deleting.uuid.as_str() && d["action"] == "delete"),
        "{deletions:?}"
    );
    // At the moment of deletion, everything was at the destination (cleanup verifies first).
    let manifest = pipeline
        .manifest(&deleting.uuid)
        .expect("uploaded before deleted");
    assert_delivered(&pipeline, &manifest, &deleting);

    pipeline
        .wait_for_manifest(&keeping.uuid, |m| m.files().count() == keeping.files.len())
        .await;
    // Both meetings were uploaded; only the deleting account's upload scheduled a cleanup.
    let counted = eventually(WAIT, || async {
        pipeline.handled("upload", "ok").await >= 2.0
            && pipeline.handled("cleanup", "ok").await >= 1.0
    })
    .await;
    assert!(counted);
    // Every upload of the deleting account scheduled a cleanup, the other's none. Either
    // meeting may be uploaded twice (two downloads finishing together each ask for assembly),
    // so, once settled, cleanups are at most the uploads less the keeping account's (≥ 1).
    assert!(
        eventually(WAIT, || pipeline.quiet()).await,
        "the pipeline settles"
    );
    let (cleanups, uploads) = (
        pipeline.handled("cleanup", "ok").await,
        pipeline.handled("upload", "ok").await,
    );
    assert!(
        cleanups <= uploads - 1.0,
        "no cleanup is scheduled for an account that does not delete: {cleanups} cleanups, {uploads} uploads"
    );
    assert_eq!(pipeline.deletions().await.len(), deleting.files.len());
}

#[tokio::test]
async fn stages_resume_after_the_broker_connection_drops_mid_work() {
    let proxy = TcpProxy::start(broker_address()).await;
    let url = proxy.amqp_url();
    let pipeline =
        TestPipeline::start(|settings| settings.amqp.url = SecretString::from(url)).await;
    let mut spec = small(MeetingSpec {
        transcript_later: false,
        ..MeetingSpec::default()
    });
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            bytes_per_second: Some(1_500_000),
            ..FileFaults::default()
        },
    );
    let created = pipeline.create(&spec).await;
    pipeline.send(&created.recording_completed).await;
    let transferring = eventually(WAIT, || async {
        !sim_requests(&pipeline.http, &pipeline.sim, "/files/")
            .await
            .is_empty()
    })
    .await;
    assert!(transferring);

    proxy.cut();
    let readyz = pipeline.ingress.replace("/zoom/webhook", "/readyz");
    let down = eventually(WAIT, || async {
        pipeline
            .http
            .get(&readyz)
            .send()
            .await
            .is_ok_and(|r| r.status() == 503)
    })
    .await;
    assert!(down, "the outage was noticed");
    proxy.restore();

    // Work acked on the lost session is redelivered to the resubscribed consumers; nothing is
    // restarted by hand.
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);
}

// Joins and media checks with real MP4s: tests/it/media.rs.

#[tokio::test]
async fn assemble_refuses_to_start_when_concat_is_on_and_ffmpeg_is_missing() {
    let staging = tempfile::tempdir().expect("dir");
    let destination = tempfile::tempdir().expect("dir");
    let mut settings = pipeline_settings(staging.path(), destination.path());
    settings.accounts[0].concat_media = true;
    settings.pipeline.ffmpeg = "/nonexistent/ffmpeg".into();
    let error = App::build(settings, &[Component::Assemble])
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(
        message.contains("acme") && message.contains("ffmpeg"),
        "{message}"
    );
}

// ---- Trust boundaries ----------------------------------------------------------------------

#[tokio::test]
async fn an_event_signed_for_one_account_never_acts_on_another_accounts_recording() {
    let pipeline = TestPipeline::start(|settings| {
        for account in &mut settings.accounts {
            account.delete_after_upload = DeleteAfterUpload::Delete;
        }
    })
    .await;
    let victim = pipeline
        .create(&small(MeetingSpec {
            account: Some("globex".into()),
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    let attacker = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    // acme's event rewritten to name globex's account, meeting and files, pointing at acme's
    // bytes: what a holder of acme's secret token could sign.
    let mut forged = attacker.recording_completed.clone();
    forged["payload"]["account_id"] = json!("globex-account-id");
    let object = forged["payload"]["object"].as_object_mut().expect("object");
    object.insert("account_id".into(), json!("globex-account-id"));
    object.insert("uuid".into(), json!(victim.uuid));
    let victim_files: Vec<String> = victim.files.keys().cloned().collect();
    for (file, victim_id) in object["recording_files"]
        .as_array_mut()
        .expect("files")
        .iter_mut()
        .zip(&victim_files)
    {
        file["id"] = json!(victim_id);
    }
    // 1. Through the ingress, signed with acme's token: refused, nothing stored.
    let refused = zoom_sim::send::post_signed(
        &pipeline.http,
        &pipeline.ingress,
        &SecretString::from(ACME_TOKEN),
        &forged.to_string(),
    )
    .await
    .expect("posted");
    assert_eq!(refused.status, 403, "{}", refused.body);
    // 2. As if the ingress's check were bypassed: bound to acme, it reaches plan, which refuses.
    let acme = relay_core::Binding::new("acme", "acme-account-id", relay_core::Origin::Webhook);
    pipeline
        .publish_by_hand(StageName::Plan, &forged, acme.to_headers())
        .await;
    // 3. Without the account ids: the ingress cannot compare them; it acts for acme only.
    let mut anonymous = forged.clone();
    anonymous["payload"]
        .as_object_mut()
        .expect("payload")
        .remove("account_id");
    anonymous["payload"]["object"]
        .as_object_mut()
        .expect("object")
        .remove("account_id");
    pipeline.send(&anonymous).await;
    let dead = wait_for_messages(&pipeline.dead_letters(StageName::Plan), 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead_letter_code(&dead[0]), code("account_mismatch"));
    // The anonymous one ran its whole course for acme: archived there under the uuid it named
    // (acme's own bytes), then its cleanup found nothing of acme's to delete at Zoom.
    let acme = pipeline.destination.path().join("acme");
    let archived = eventually(WAIT, || async {
        find_files(&acme).iter().any(|path| {
            path.ends_with("meeting.json")
                && path
                    .to_string_lossy()
                    .contains(&uuid_component(&victim.uuid))
        })
    })
    .await;
    assert!(archived, "the forged event was not processed for acme");
    let cleaned = eventually(WAIT, || async {
        pipeline.handled("cleanup", "ok").await >= pipeline.handled("upload", "ok").await
            && pipeline.handled("upload", "ok").await >= 1.0
    })
    .await;
    assert!(cleaned);
    let deletions = pipeline.deletions().await;
    assert!(
        deletions
            .iter()
            .all(|d| d["meeting_uuid"] != victim.uuid.as_str()),
        "globex's recording was deleted: {deletions:?}"
    );
    let globex = pipeline.destination.path().join("globex");
    assert!(
        find_files(&globex).is_empty(),
        "something landed in globex's destination"
    );
}

#[tokio::test]
async fn messages_without_a_verified_binding_or_for_another_account_are_refused() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let created = pipeline.create(&small(MeetingSpec::default())).await;
    // Published by hand without any binding.
    pipeline
        .publish_by_hand(
            StageName::Plan,
            &created.recording_completed,
            FieldTable::default(),
        )
        .await;
    // Bound to globex, but the body names acme's account.
    let headers =
        relay_core::Binding::new("globex", "globex-account-id", relay_core::Origin::Webhook)
            .to_headers();
    pipeline
        .publish_by_hand(StageName::Plan, &created.recording_completed, headers)
        .await;
    // Bound to acme by name, with another Zoom id.
    let headers =
        relay_core::Binding::new("acme", "someone-else", relay_core::Origin::Webhook).to_headers();
    pipeline
        .publish_by_hand(StageName::Plan, &created.recording_completed, headers)
        .await;
    let dead = wait_for_messages(&pipeline.dead_letters(StageName::Plan), 3, WAIT).await;
    let mut codes: Vec<String> = dead
        .iter()
        .filter_map(|message| match dead_letter_code(message)? {
            AMQPValue::LongString(text) => Some(text.to_string()),
            _ => None,
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        ["account_mismatch", "account_mismatch", "missing_binding"]
    );
    assert!(pipeline.meeting_dir(&created.uuid).is_none());
}

// ---- Failures that must not wedge a stage --------------------------------------------------

#[tokio::test]
async fn a_staging_path_that_refuses_writes_is_retried_then_dead_lettered_and_others_go_on() {
    let pipeline = TestPipeline::start(|settings| settings.pipeline.max_attempts = 2).await;
    let blocked = pipeline
        .create(&small(MeetingSpec {
            segments: 1,
            views: vec!["gallery_view".into()],
            audio: false,
            transcript: false,
            ..MeetingSpec::default()
        }))
        .await;
    // Where each of this meeting's files would be staged, a directory already: reading its
    // markers works (nothing there yet), every write of its bytes fails — the small chat file,
    // written whole when it is finished, as well as the video.
    let files_dir = pipeline
        .staging
        .path()
        .join(relay_storage::names::identity("acme"))
        .join(relay_storage::names::identity(&blocked.uuid))
        .join("files");
    for file_id in blocked.files.keys() {
        let blocker = files_dir.join(relay_storage::names::identity(file_id));
        std::fs::create_dir_all(blocker.join("occupied")).expect("blocker");
    }
    pipeline.send(&blocked.recording_completed).await;
    let dead = wait_for_messages(
        &pipeline.dead_letters(StageName::Download),
        blocked.files.len(),
        WAIT,
    )
    .await;
    assert_eq!(dead.len(), blocked.files.len());
    for message in &dead {
        assert_eq!(dead_letter_code(message), code("storage_failed"));
    }
    // The stage was not wedged: another meeting goes through.
    let next = pipeline
        .create(&small(MeetingSpec {
            segments: 1,
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&next.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&next.uuid, |m| m.files().count() == next.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &next);
}

#[tokio::test]
async fn a_meeting_of_300_files_is_uploaded_once_not_once_per_file() {
    let pipeline = TestPipeline::start(|settings| {
        // Prefetch no larger than concurrency: a message is ready, or in flight (see `quiet`).
        settings.pipeline.download.concurrency = 8;
        settings.pipeline.download.prefetch = 8;
        settings.pipeline.assemble.prefetch = settings.pipeline.assemble.concurrency as u16;
        settings.pipeline.upload.prefetch = settings.pipeline.upload.concurrency as u16;
        // 300 files make a body of ~250 KiB, as Zoom's would be.
        settings.ingress.max_body_bytes = 1024 * 1024;
    })
    .await;
    let created = pipeline
        .create(&MeetingSpec {
            segments: 1,
            views: vec!["gallery_view".into()],
            audio: false,
            chat: false,
            transcript: false,
            participant_audio: 299,
            media_size: 8 * 1024,
            ..MeetingSpec::default()
        })
        .await;
    assert_eq!(created.files.len(), 300);
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == 300)
        .await;
    assert_delivered(&pipeline, &manifest, &created);
    let settled = eventually(WAIT, || async {
        pipeline.handled("download", "ok").await >= 300.0 && pipeline.quiet().await
    })
    .await;
    assert!(settled, "the pipeline never went quiet");
    let uploads = pipeline.handled("upload", "ok").await;
    let assemblies = pipeline.handled("assemble", "ok").await;
    assert!(
        (1.0..=4.0).contains(&uploads),
        "{uploads} upload runs for one meeting"
    );
    assert!(
        assemblies <= 8.0,
        "{assemblies} assemblies: only a file that completes the meeting triggers one"
    );
}

// ---- Names and real shapes -----------------------------------------------------------------

#[tokio::test]
async fn non_latin_long_and_hostile_topics_land_under_the_paths_their_manifest_gives() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let topics = [
        "Совещание отдела разработки и планирования на следующий квартал".to_owned(),
        "x".repeat(200),
        "CON".to_owned(),
        "report\u{202E}4pm.exe [v2] ~draft~ 50% #1".to_owned(),
    ];
    let mut meetings = Vec::new();
    for topic in &topics {
        let created = pipeline
            .create(&small(MeetingSpec {
                topic: topic.clone(),
                segments: 1,
                transcript_later: false,
                ..MeetingSpec::default()
            }))
            .await;
        pipeline.send(&created.recording_completed).await;
        meetings.push(created);
    }
    for created in &meetings {
        let manifest = pipeline
            .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
            .await;
        assert_delivered(&pipeline, &manifest, created);
        for path in manifest
            .files()
            .map(|f| f.path.as_str())
            .chain([manifest.manifest_path.as_str()])
        {
            for part in path.split('/') {
                assert!(part.len() <= 255, "{} bytes: {part}", part.len());
                assert!(!part.contains('\u{202E}'), "{part}");
            }
        }
    }
}

#[tokio::test]
async fn real_events_of_2019_and_2023_shapes_land() {
    let pipeline = TestPipeline::start(|_| {}).await;
    // 2019: a TIMELINE with a download URL but no id, status or size. 2023: a non-Latin,
    // bracketed topic, a TIMELINE with JSON extension, a real (expired) download token.
    for fixture in [
        "zoomdocs2019-recording.completed.json",
        "supra-2023-recording.completed.json",
    ] {
        let imported = pipeline.import(fixture, "acme").await;
        pipeline.send(&imported.event).await;
        let uuid = imported.event["payload"]["object"]["uuid"]
            .as_str()
            .expect("uuid")
            .to_owned();
        let manifest = pipeline
            .wait_for_manifest(&uuid, |m| m.files().count() == imported.files.len())
            .await;
        let root = pipeline.destination.path().join("acme");
        let mut served: Vec<&String> = imported.files.values().map(|f| &f.sha256).collect();
        let mut landed: Vec<String> = manifest
            .files()
            .map(|file| sha256_file(&root.join(&file.path)))
            .collect();
        served.sort();
        landed.sort();
        assert_eq!(
            landed.iter().collect::<Vec<_>>(),
            served,
            "{fixture}: every file, byte for byte, under its manifest path"
        );
        assert_eq!(manifest.topic, imported.event["payload"]["object"]["topic"]);
    }
}

// ---- The consumer loop ---------------------------------------------------------------------

mod panicking {
    use relay_core::consumer::{Context, Stage};
    use relay_core::failure::StageError;
    use relay_pipeline::messages::CleanupTask;

    /// A stage whose handler panics on one meeting: a bug must not wedge the others.
    pub struct Panics;

    impl Stage for Panics {
        type Input = CleanupTask;

        async fn handle(&self, task: CleanupTask, _: &Context) -> Result<(), StageError> {
            if task.meeting_uuid == "poison" {
                panic!("a bug in the stage");
            }
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_panicking_handler_is_retried_then_dead_lettered_and_the_stage_goes_on() {
    init_test_log();
    let staging = tempfile::tempdir().expect("dir");
    let destination = tempfile::tempdir().expect("dir");
    let settings = pipeline_settings(staging.path(), destination.path());
    let shutdown = CancellationToken::new();
    let broker =
        relay_core::broker::Broker::start(&settings.amqp, topology(&settings), shutdown.clone());
    assert!(broker.wait_ready(Duration::from_secs(15)).await);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = relay_core::metrics::StageMetrics::register(&mut registry);
    let loop_settings = relay_core::consumer::LoopSettings {
        concurrency: 1,
        prefetch: 1,
        max_attempts: 2,
        delivery_limit: 20,
        drain_timeout: Duration::from_secs(1),
    };
    tokio::spawn(relay_core::consumer::run(
        broker,
        std::sync::Arc::new(panicking::Panics),
        loop_settings,
        metrics,
        shutdown.clone(),
    ));
    let bound = relay_core::Binding::new("acme", "acme-account-id", relay_core::Origin::Webhook);
    for uuid in ["poison", "healthy"] {
        let task = json!({
            "meeting_uuid": uuid, "manifest_digest": "d", "uploaded_at": "2026-01-01T00:00:00Z"
        });
        publish_to_stage(&settings, StageName::Cleanup, &task, bound.to_headers()).await;
    }
    let dead = wait_for_messages(
        &topology(&settings).dead_letter_queue(StageName::Cleanup),
        1,
        WAIT,
    )
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead_letter_code(&dead[0]), code("handler_panicked"));
    assert_eq!(
        dead[0]
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-attempt").cloned()),
        Some(AMQPValue::LongLongInt(2)),
        "retried once, then dead-lettered"
    );
    let healthy = eventually(WAIT, || async {
        metric_value(
            &relay_core::metrics::encode(&registry),
            "zoom_relay_stage_messages_total{stage=\"cleanup\",outcome=\"ok\"}",
        ) >= 1.0
    })
    .await;
    assert!(healthy, "the stage went on with the next message");
    shutdown.cancel();
    delete_topology(&topology(&settings), &[]);
}

#[tokio::test]
async fn a_message_whose_consumers_keep_dying_is_dead_lettered_at_the_configured_limit() {
    init_test_log();
    let staging = tempfile::tempdir().expect("dir");
    let destination = tempfile::tempdir().expect("dir");
    let mut settings = pipeline_settings(staging.path(), destination.path());
    settings.pipeline.delivery_limit = 2;
    // The queues exist before anything consumes them.
    let declare = CancellationToken::new();
    let broker =
        relay_core::broker::Broker::start(&settings.amqp, topology(&settings), declare.clone());
    assert!(broker.wait_ready(Duration::from_secs(15)).await);
    declare.cancel();
    let bound = relay_core::Binding::new("acme", "acme-account-id", relay_core::Origin::Webhook);
    let task = json!({
        "meeting_uuid": "crashes-its-consumers", "manifest_digest": "d",
        "uploaded_at": "2026-01-01T00:00:00Z"
    });
    publish_to_stage(&settings, StageName::Cleanup, &task, bound.to_headers()).await;
    // Three consumers take it and die without settling it.
    let queue = topology(&settings).stage_queue(StageName::Cleanup);
    for _ in 0..3 {
        let connection = Connection::connect(&broker_url(), ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        let taken = eventually(WAIT, || async {
            matches!(
                channel
                    .basic_get(
                        queue.as_str().into(),
                        lapin::options::BasicGetOptions::default()
                    )
                    .await,
                Ok(Some(_))
            )
        })
        .await;
        assert!(taken);
        let _ = connection.close(200, "died holding it".into()).await;
    }
    let app = App::build(settings.clone(), &[Component::Cleanup]).expect("cleanup stage");
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    let dead = wait_for_messages(
        &topology(&settings).dead_letter_queue(StageName::Cleanup),
        1,
        WAIT,
    )
    .await;
    shutdown.cancel();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead_letter_code(&dead[0]), code("delivery_limit"));
    delete_topology(&topology(&settings), &[]);
}
