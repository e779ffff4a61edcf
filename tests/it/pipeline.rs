//! The whole pipeline: simulator → ingress → RabbitMQ → plan → download → assemble → upload →
//! cleanup, with temp directories as staging and destination.

use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_core::Settings;
use relay_core::broker::{Broker, StageName};
use relay_core::settings::DeleteAfterUpload;
use relay_core::shutdown::CancellationToken;
use relay_pipeline::manifest::Manifest;
use relay_pipeline::paths::uuid_component;
use secrecy::SecretString;
use serde_json::Value;
use zoom_sim::{ApiFaults, CreatedMeeting, FileFaults, MeetingSpec, Simulator};

use crate::helpers::proxy::TcpProxy;
use crate::helpers::*;
use crate::zoom_client::point_at_simulator;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq)]
enum Stages {
    All,
    AllButDownload,
}

struct TestPipeline {
    settings: Settings,
    sim: String,
    http: reqwest::Client,
    ingress: String,
    destination: tempfile::TempDir,
    _staging: tempfile::TempDir,
    shutdown: CancellationToken,
    broker_shutdown: CancellationToken,
}

impl Drop for TestPipeline {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.broker_shutdown.cancel();
        let topology = relay_core::broker::Topology::new(&self.settings);
        delete_topology(topology.queues(), topology.events_exchange());
    }
}

fn spawn_stages(
    settings: &Settings,
    broker: &Broker,
    shutdown: &CancellationToken,
    stages: Stages,
) {
    let run = |stage: StageName| {
        let (settings, broker, shutdown) = (settings.clone(), broker.clone(), shutdown.clone());
        async move {
            let result = match stage {
                StageName::Plan | StageName::Download => {
                    relay_download::run(&settings, broker, shutdown).await
                }
                StageName::Assemble => relay_assemble::run(&settings, broker, shutdown).await,
                StageName::Upload => relay_upload::run(&settings, broker, shutdown).await,
                StageName::Cleanup => relay_cleanup::run(&settings, broker, shutdown).await,
            };
            result.expect("stage starts");
        }
    };
    if stages == Stages::All {
        tokio::spawn(run(StageName::Download));
    }
    for stage in [StageName::Assemble, StageName::Upload, StageName::Cleanup] {
        tokio::spawn(run(stage));
    }
}

impl TestPipeline {
    async fn start(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::start_with(Stages::All, configure).await
    }

    async fn start_with(stages: Stages, configure: impl FnOnce(&mut Settings)) -> Self {
        init_test_log();
        let staging = tempfile::tempdir().expect("staging dir");
        let destination = tempfile::tempdir().expect("destination dir");
        let mut settings = test_settings(&unique_namespace(), &TestOptions::default());
        settings.sim.listen = "127.0.0.1:0".parse().expect("address");
        settings.pipeline.staging = format!("file://{}", staging.path().display());
        settings.pipeline.retry_delays = vec![
            Duration::from_millis(100).into(),
            Duration::from_millis(300).into(),
        ];
        settings.pipeline.max_attempts = 5;
        settings.pipeline.drain_timeout = Duration::from_secs(2);
        for account in &mut settings.accounts {
            account.destination =
                format!("file://{}/{}", destination.path().display(), account.name);
        }
        configure(&mut settings);
        let simulator = Simulator::build(&settings).expect("simulator");
        let sim = simulator.base_url();
        point_at_simulator(&mut settings, &sim);
        let shutdown = CancellationToken::new();
        tokio::spawn(simulator.run(shutdown.clone()));

        let broker_shutdown = CancellationToken::new();
        let broker = Broker::start(&settings, broker_shutdown.clone());
        assert!(
            broker.wait_ready(Duration::from_secs(15)).await,
            "broker ready"
        );
        let ingress = relay_ingress::Ingress::build(&settings, broker.clone()).expect("ingress");
        let ingress_url = format!("http://127.0.0.1:{}/zoom/webhook", ingress.port());
        tokio::spawn(ingress.run(shutdown.clone()));
        spawn_stages(&settings, &broker, &shutdown, stages);
        Self {
            settings,
            sim,
            http: reqwest::Client::new(),
            ingress: ingress_url,
            destination,
            _staging: staging,
            shutdown,
            broker_shutdown,
        }
    }

    async fn create(&self, spec: &MeetingSpec) -> CreatedMeeting {
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

    async fn send(&self, event: &Value) {
        let delivery = zoom_sim::send::post_signed(
            &self.http,
            &self.ingress,
            &SecretString::from(ACME_TOKEN),
            &event.to_string(),
        )
        .await
        .expect("posted");
        assert_eq!(delivery.status, 200, "{}", delivery.body);
    }

    async fn sim_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.sim))
            .send()
            .await
            .expect("sim")
            .json()
            .await
            .expect("json")
    }

    async fn deletions(&self) -> Vec<Value> {
        self.sim_get("/_sim/deletions")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn meeting_dir(&self, uuid: &str) -> Option<PathBuf> {
        find_files(self.destination.path())
            .into_iter()
            .find(|path| {
                path.ends_with("meeting.json")
                    && path.to_string_lossy().contains(&uuid_component(uuid))
            })
            .and_then(|path| path.parent().map(Path::to_path_buf))
    }

    fn manifest(&self, uuid: &str) -> Option<Manifest> {
        let dir = self.meeting_dir(uuid)?;
        serde_json::from_slice(&std::fs::read(dir.join("meeting.json")).ok()?).ok()
    }

    async fn wait_for_manifest(&self, uuid: &str, done: impl Fn(&Manifest) -> bool) -> Manifest {
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

    fn dead_letters(&self, stage: StageName) -> String {
        relay_core::broker::Topology::new(&self.settings).dead_letter_queue(stage)
    }
}

fn find_files(root: &Path) -> Vec<PathBuf> {
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

/// Every file the manifest lists is at the destination with the bytes the simulator served.
fn assert_delivered(pipeline: &TestPipeline, manifest: &Manifest, created: &CreatedMeeting) {
    let root = pipeline.destination.path().join(&manifest.account);
    for file in manifest.files() {
        let path = root.join(&file.path);
        let served = &created.files[&file.file_id];
        assert_eq!(sha256_file(&path), served.sha256, "{}", file.path);
        assert_eq!(file.sha256, served.sha256);
        assert_eq!(file.size, served.size);
    }
}

fn small(spec: MeetingSpec) -> MeetingSpec {
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
        "completed from the API though the event omitted them"
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
    let staged: Vec<PathBuf> = find_files(pipeline._staging.path())
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
    pipeline.send(&created.recording_completed).await;
    pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    pipeline
        .send(
            created
                .transcript_completed
                .as_ref()
                .expect("transcript event"),
        )
        .await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.source_events.len() == 2)
        .await;
    assert_eq!(manifest.files().count(), created.files.len());
    assert_delivered(&pipeline, &manifest, &created);
}

#[tokio::test]
async fn duplicated_concurrent_and_replayed_events_make_one_copy_and_one_deletion() {
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].delete_after_upload = DeleteAfterUpload::Trash
    })
    .await;
    let created = pipeline.create(&small(MeetingSpec::default())).await;
    // Zoom's two copies at once, from "two addresses", then the same again (a replay).
    tokio::join!(
        pipeline.send(&created.recording_completed),
        pipeline.send(&created.recording_completed_duplicate),
        pipeline.send(&created.recording_completed),
    );
    assert!(
        eventually(WAIT, || async { !pipeline.deletions().await.is_empty() }).await,
        "deleted once uploaded"
    );
    let manifest = pipeline.manifest(&created.uuid).expect("manifest");
    assert_delivered(&pipeline, &manifest, &created);

    pipeline.send(&created.recording_completed).await;
    pipeline
        .send(created.transcript_completed.as_ref().expect("transcript"))
        .await;
    let settled = eventually(WAIT, || async {
        pipeline
            .manifest(&created.uuid)
            .is_some_and(|m| m.source_events.len() >= 3)
    })
    .await;
    assert!(settled, "the replay was processed");
    let files = find_files(pipeline.destination.path());
    assert_eq!(
        files.len(),
        created.files.len() + 1,
        "one copy of each file and one manifest: {files:?}"
    );
    // Let any straggling duplicate reach cleanup before counting deletions.
    let drained = eventually(WAIT, || async {
        let queues = relay_core::broker::Topology::new(&pipeline.settings);
        drain_queue(&queues.stage_queue(StageName::Cleanup))
            .await
            .is_empty()
    })
    .await;
    assert!(drained);
    let deletions = pipeline.deletions().await;
    assert_eq!(deletions.len(), 1, "{deletions:?}");
}

#[tokio::test]
async fn a_deleted_file_served_as_html_is_never_stored_and_nothing_is_deleted() {
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].delete_after_upload = DeleteAfterUpload::Trash
    })
    .await;
    let mut spec = small(MeetingSpec::default());
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
        let headers = message
            .delivery
            .properties
            .headers()
            .clone()
            .expect("headers");
        let code = headers.inner().get("x-error-code").expect("error code");
        assert_eq!(
            code,
            &lapin::types::AMQPValue::LongString("html_instead_of_file".into())
        );
    }
    assert!(
        pipeline.meeting_dir(&created.uuid).is_none(),
        "an incomplete meeting is never uploaded"
    );
    let mp4_on_disk = find_files(pipeline.destination.path())
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "mp4"));
    assert!(!mp4_on_disk);
    assert!(pipeline.deletions().await.is_empty(), "never deleted");
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
    assert_eq!(
        get("x-error-code"),
        Some(lapin::types::AMQPValue::LongString("file_not_found".into()))
    );
    assert_eq!(
        get("x-attempt"),
        Some(lapin::types::AMQPValue::LongLongInt(3))
    );
    assert_eq!(
        get("x-stage"),
        Some(lapin::types::AMQPValue::LongString("download".into()))
    );
    let downloads = sim_requests(&pipeline.http, &pipeline.sim, "/rec/download/")
        .await
        .into_iter()
        .filter(|(_, _, status)| *status == 404)
        .count();
    assert_eq!(downloads, 3, "one request per attempt, then it stopped");
}

#[tokio::test]
async fn recovers_from_rate_limits_server_errors_cuts_and_processing_files() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let mut spec = small(MeetingSpec::default());
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
    spec.faults.insert(
        "CHAT".into(),
        FileFaults {
            processing_reads: 2,
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
}

#[tokio::test]
async fn a_download_killed_mid_transfer_is_redelivered_and_completes() {
    let pipeline = TestPipeline::start_with(Stages::AllButDownload, |_| {}).await;
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
        let shutdown = CancellationToken::new();
        let broker = Broker::start(&doomed, shutdown.clone());
        relay_download::run(&doomed, broker, shutdown)
            .await
            .expect("download stage");
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
    let broker = Broker::start(&pipeline.settings, pipeline.broker_shutdown.clone());
    let settings = pipeline.settings.clone();
    let shutdown = pipeline.shutdown.clone();
    tokio::spawn(async move {
        relay_download::run(&settings, broker, shutdown)
            .await
            .expect("download stage")
    });
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
    let deleting = pipeline.create(&small(MeetingSpec::default())).await;
    let keeping = pipeline
        .create(&small(MeetingSpec {
            account: Some("globex".into()),
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&deleting.recording_completed).await;
    let globex = zoom_sim::send::post_signed(
        &pipeline.http,
        &pipeline.ingress,
        &SecretString::from(GLOBEX_TOKEN),
        &keeping.recording_completed.to_string(),
    )
    .await
    .expect("posted");
    assert_eq!(globex.status, 200);

    assert!(eventually(WAIT, || async { !pipeline.deletions().await.is_empty() }).await);
    let deletions = pipeline.deletions().await;
    assert_eq!(deletions.len(), 1);
    assert_eq!(deletions[0]["meeting_uuid"], deleting.uuid.as_str());
    assert_eq!(deletions[0]["action"], "delete");
    // At the moment of deletion, everything was at the destination (cleanup verifies first).
    let manifest = pipeline
        .manifest(&deleting.uuid)
        .expect("uploaded before deleted");
    assert_delivered(&pipeline, &manifest, &deleting);

    pipeline
        .wait_for_manifest(&keeping.uuid, |m| m.files().count() == keeping.files.len())
        .await;
    let cleanup_queue =
        relay_core::broker::Topology::new(&pipeline.settings).stage_queue(StageName::Cleanup);
    assert!(
        drain_queue(&cleanup_queue).await.is_empty(),
        "no cleanup is even scheduled when off"
    );
    assert_eq!(pipeline.deletions().await.len(), 1);
}

#[tokio::test]
async fn copies_between_stores_in_parts_and_leaves_nothing_half_written() {
    use object_store::ObjectStoreExt;
    use relay_pipeline::storage::{Location, copy_streaming};
    let options = Default::default();
    let source = Location::parse("memory:///", &options).expect("memory store");
    let dir = tempfile::tempdir().expect("dir");
    let target =
        Location::parse(&format!("file://{}", dir.path().display()), &options).expect("file store");
    assert!(!source.same_store_as(&target));

    // 12 MB: three multipart parts.
    let bytes: Vec<u8> = (0..12_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let from = source.path("staged/file");
    source
        .store
        .put(&from, bytes.clone().into())
        .await
        .expect("staged");
    let to = target.path("meeting/1-gallery_view.mp4");
    let (sent, sha256) = copy_streaming(&source, &from, &target, &to, bytes.len() as u64)
        .await
        .expect("copied");
    assert_eq!(sent, bytes.len() as u64);
    use sha2::Digest;
    assert_eq!(sha256, hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(target.digest(&to).await.expect("read back"), (sent, sha256));

    // A copy that fails (its source is gone) leaves no object and no stray part behind.
    let missing = source.path("staged/missing");
    let failed = target.path("meeting/2-gallery_view.mp4");
    assert!(
        copy_streaming(&source, &missing, &target, &failed, 1)
            .await
            .is_err()
    );
    assert_eq!(target.exists_with_size(&failed).await.expect("head"), None);
    let leftovers: Vec<PathBuf> = find_files(dir.path())
        .into_iter()
        .filter(|p| !p.ends_with("1-gallery_view.mp4"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn stages_resume_after_the_broker_connection_drops_mid_work() {
    let proxy = TcpProxy::start(broker_address()).await;
    let url = proxy.amqp_url();
    let pipeline =
        TestPipeline::start(|settings| settings.amqp.url = SecretString::from(url)).await;
    let mut spec = small(MeetingSpec::default());
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

fn fake_ffmpeg() -> String {
    format!("{}/fixtures/fake-ffmpeg", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn joins_each_views_segments_into_one_file_when_asked() {
    let pipeline = TestPipeline::start(|settings| {
        settings.pipeline.ffmpeg = fake_ffmpeg();
        settings.accounts[0].concat_media = true;
    })
    .await;
    let created = pipeline
        .create(&small(MeetingSpec {
            segments: 2,
            views: vec!["gallery_view".into()],
            audio: false,
            chat: false,
            transcript: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| !m.concatenated.is_empty())
        .await;
    assert_eq!(manifest.concatenated.len(), 1);
    let joined = &manifest.concatenated[0];
    assert!(
        joined.path.ends_with("/gallery_view-full.mp4"),
        "{}",
        joined.path
    );
    let root = pipeline.destination.path().join(&manifest.account);
    let mut expected = Vec::new();
    for segment in &manifest.segments {
        expected.extend(std::fs::read(root.join(&segment.files[0].path)).expect("segment"));
    }
    let on_disk = std::fs::read(root.join(&joined.path)).expect("joined file");
    assert_eq!(on_disk.len(), expected.len());
    assert!(on_disk == expected, "segments joined in order");
    use sha2::Digest;
    assert_eq!(joined.sha256, hex::encode(sha2::Sha256::digest(&on_disk)));
}

#[tokio::test]
async fn assemble_refuses_to_start_when_concat_is_on_and_ffmpeg_is_missing() {
    let mut settings = test_settings(&unique_namespace(), &TestOptions::default());
    let staging = tempfile::tempdir().expect("dir");
    settings.pipeline.staging = format!("file://{}", staging.path().display());
    settings.accounts[0].destination = settings.pipeline.staging.clone();
    settings.accounts[0].concat_media = true;
    settings.pipeline.ffmpeg = "/nonexistent/ffmpeg".into();
    let shutdown = CancellationToken::new();
    let broker = Broker::start(&settings, shutdown.clone());
    let error = relay_assemble::run(&settings, broker, shutdown.clone())
        .await
        .expect_err("refused");
    shutdown.cancel();
    let message = error.to_string();
    assert!(
        message.contains("acme") && message.contains("ffmpeg"),
        "{message}"
    );
}
