//! `zoom-relay replay`: events a production ingress archived, and dead letters, sent again — to
//! a staging ingress (a second ingress on its own namespace, with its own secret token), to a
//! file and back, into their own stage — filtered, planned, resumable, and never deleting at
//! Zoom unless the job allows it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use relay_core::broker::StageName;
use relay_core::shutdown::CancellationToken;
use relay_pipeline::DeleteAfterUpload;
use relay_replay::request::{Filter, Options, Request, Source, Target};
use relay_replay::{Environment, Job, ReplayError, Summary};
use secrecy::SecretString;
use serde_json::{Value, json};
use zoom_sim::{FileFaults, MeetingSpec};

use crate::helpers::*;
use crate::pipeline::{TestPipeline, WAIT, small};

/// Staging's secret token for acme: not production's.
const STAGING_TOKEN: &str = "acme-staging-token";
const STAGING_TOKEN_VAR: &str = "STAGING_ACME_TOKEN";

/// A real body Zoom sent (captured by other projects), made to name `account_id` and a meeting
/// of the test's own; pretty-printed and with a non-Latin topic, so a byte-for-byte comparison
/// means something.
fn real_event(fixture: &str, account_id: &str, meeting_uuid: &str) -> String {
    let path = format!(
        "{}/../../shared/fixtures/zoom-real/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("fixture");
    event["payload"]["account_id"] = json!(account_id);
    let object = &mut event["payload"]["object"];
    object["uuid"] = json!(meeting_uuid);
    object["topic"] = json!("Réunion d'été — 週次ミーティング");
    if object.get("account_id").is_some() {
        object["account_id"] = json!(account_id);
    }
    serde_json::to_string_pretty(&event).expect("JSON")
}

const EVENTS: [(&str, &str); 3] = [
    ("zoomdocs-recording.completed.json", "recording.completed"),
    ("opencast-recording.renamed.json", "recording.renamed"),
    ("zoomdocs-recording.deleted.json", "recording.deleted"),
];

struct Accepted {
    account: &'static str,
    event: &'static str,
    body: String,
}

/// A production ingress that accepted three event types for each of two accounts.
async fn production() -> (TestApp, Vec<Accepted>) {
    let app = TestApp::spawn().await;
    let mut accepted = Vec::new();
    for (account, account_id, token) in [
        ("acme", "acme-account-id", ACME_TOKEN),
        ("globex", "globex-account-id", GLOBEX_TOKEN),
    ] {
        for (fixture, event) in EVENTS {
            let uuid = format!("{account}-{event}-{}==", uuid::Uuid::new_v4().simple());
            let body = real_event(fixture, account_id, &uuid);
            let response = app.post_signed(token, &body).await;
            assert_eq!(response.status(), 200, "production accepted {event}");
            accepted.push(Accepted {
                account,
                event,
                body,
            });
        }
    }
    (app, accepted)
}

/// A staging ingress on its own namespace, knowing acme by staging's secret token.
async fn staging() -> TestApp {
    TestApp::spawn_configured(TestOptions::default(), |settings| {
        settings.accounts[0].secret_tokens = vec![SecretString::from(STAGING_TOKEN)];
    })
    .await
}

fn environment(
    production: &relay_core::broker::Broker,
    state_dir: &std::path::Path,
) -> Environment {
    Environment {
        amqp: production.settings().clone(),
        topology: production.topology().clone(),
        accounts: vec![
            ("acme".into(), "acme-account-id".into()),
            ("globex".into(), "globex-account-id".into()),
        ],
        state_dir: state_dir.to_owned(),
        target_amqp_url: None,
        secrets: Arc::new(|name: &str| {
            (name == STAGING_TOKEN_VAR).then(|| SecretString::from(STAGING_TOKEN))
        }),
        progress: false,
    }
}

/// The environment of a replay run on a test pipeline's own broker namespace.
fn pipeline_environment(pipeline: &TestPipeline, state_dir: &std::path::Path) -> Environment {
    Environment {
        amqp: pipeline.settings.amqp.clone(),
        topology: topology(&pipeline.settings),
        accounts: vec![
            ("acme".into(), "acme-account-id".into()),
            ("globex".into(), "globex-account-id".into()),
        ],
        state_dir: state_dir.to_owned(),
        target_amqp_url: None,
        secrets: Environment::env_secrets(),
        progress: false,
    }
}

fn last_minutes(minutes: i64) -> Source {
    let now = Utc::now();
    Source::Archive {
        since: now - TimeDelta::minutes(minutes),
        until: now + TimeDelta::seconds(5),
    }
}

fn to_staging(staging: &TestApp) -> Target {
    Target::Url {
        url: staging.url("/zoom/webhook"),
        secret_token_env: STAGING_TOKEN_VAR.into(),
    }
}

fn request(job: &str, source: Source, filter: Filter, target: Target) -> Request {
    Request {
        job: job.into(),
        source,
        filter,
        target,
        options: Options {
            rate: 200.0,
            ..Options::default()
        },
    }
}

fn acme_only(events: &[&str]) -> Filter {
    Filter {
        account: Some("acme".into()),
        events: events.iter().map(|event| (*event).to_owned()).collect(),
        ..Filter::default()
    }
}

async fn replay(request: Request, environment: &Environment) -> Summary {
    relay_replay::run(
        Job::New(Box::new(request)),
        environment,
        CancellationToken::new(),
    )
    .await
    .expect("the job starts")
}

/// Everything the staging ingress stored: read from a tap, never from a queue a consumer uses.
/// The replay confirmed each event before it returned, so the tap already holds them all.
async fn stored_at(staging: &mut TestApp) -> Vec<lapin::message::Delivery> {
    let count = queue_length(&staging.tap.queue).await;
    let mut stored = Vec::new();
    for _ in 0..count {
        stored.push(staging.tap.next(WAIT).await.expect("a stored event"));
    }
    stored
}

fn text(delivery: &lapin::message::Delivery, key: &str) -> String {
    match header(delivery, key) {
        Some(lapin::types::AMQPValue::LongString(value)) => {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn a_filtered_archive_replay_reaches_staging_as_exactly_those_events_byte_for_byte() {
    let (production, accepted) = production().await;
    let mut staging = staging().await;
    let state = tempfile::tempdir().expect("state dir");
    let environment = environment(&production.broker, state.path());

    let summary = replay(
        request(
            "filtered",
            last_minutes(10),
            acme_only(&["recording.completed", "recording.renamed"]),
            to_staging(&staging),
        ),
        &environment,
    )
    .await;

    assert!(summary.succeeded(), "{summary:?}");
    assert_eq!((summary.counts.matched, summary.counts.sent), (2, 2));
    let expected: HashSet<&str> = accepted
        .iter()
        .filter(|a| a.account == "acme" && a.event != "recording.deleted")
        .map(|a| a.body.as_str())
        .collect();
    let stored = stored_at(&mut staging).await;
    let bodies: HashSet<String> = stored
        .iter()
        .map(|d| String::from_utf8(d.data.clone()).expect("UTF-8"))
        .collect();
    assert_eq!(
        bodies,
        expected
            .iter()
            .map(|b| (*b).to_owned())
            .collect::<HashSet<_>>(),
        "exactly the matched events, byte for byte"
    );
    for delivery in &stored {
        // Verified by staging with its own token, and bound as this replay's.
        assert_eq!(text(delivery, "account"), "acme");
        assert_eq!(text(delivery, "origin"), "replay");
        assert_eq!(text(delivery, "replay_job"), "filtered");
        assert_eq!(
            header(delivery, "allow_delete"),
            Some(&lapin::types::AMQPValue::LongLongInt(0))
        );
    }
}

#[tokio::test]
async fn a_dry_run_sends_nothing_and_counts_what_it_would_send() {
    let (production, _accepted) = production().await;
    let staging = staging().await;
    let state = tempfile::tempdir().expect("state dir");
    let environment = environment(&production.broker, state.path());
    let mut dry = request(
        "dry",
        last_minutes(10),
        Filter {
            account: Some("acme".into()),
            ..Filter::default()
        },
        to_staging(&staging),
    );
    dry.options.dry_run = true;

    let summary = replay(dry, &environment).await;

    assert!(summary.succeeded(), "{summary:?}");
    assert_eq!((summary.counts.matched, summary.counts.sent), (3, 0));
    let plan = summary.plan.expect("a plan");
    let by_event: HashMap<&str, u64> = plan
        .by_event
        .iter()
        .map(|(event, count)| (event.as_str(), *count))
        .collect();
    assert_eq!(
        by_event,
        HashMap::from([
            ("recording.completed", 1),
            ("recording.renamed", 1),
            ("recording.deleted", 1)
        ])
    );
    assert_eq!(plan.by_account.get("acme"), Some(&3));
    assert_eq!(plan.sample_meetings.len(), 3);
    assert!(plan.first_offset.is_some() && plan.first_received_at.is_some());
    assert_eq!(queue_length(&staging.tap.queue).await, 0, "nothing sent");
    assert!(
        std::fs::read_dir(state.path())
            .expect("dir")
            .next()
            .is_none(),
        "a dry run leaves no job to resume"
    );
}

#[tokio::test]
async fn events_written_to_a_file_replay_from_it_unchanged() {
    let (production, accepted) = production().await;
    let mut staging = staging().await;
    let state = tempfile::tempdir().expect("state dir");
    let environment = environment(&production.broker, state.path());
    let file = state.path().join("captured.jsonl");

    let written = replay(
        request(
            "to-file",
            last_minutes(10),
            Filter::default(),
            Target::File { path: file.clone() },
        ),
        &environment,
    )
    .await;
    assert!(written.succeeded(), "{written:?}");
    assert_eq!(written.counts.sent, 6);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("file").permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "bodies hold tokens: the file is its owner's only"
    );

    let sent = replay(
        request(
            "from-file",
            Source::File { path: file },
            acme_only(&[]),
            to_staging(&staging),
        ),
        &environment,
    )
    .await;
    assert!(sent.succeeded(), "{sent:?}");
    let stored: HashSet<String> = stored_at(&mut staging)
        .await
        .iter()
        .map(|d| String::from_utf8(d.data.clone()).expect("UTF-8"))
        .collect();
    let expected: HashSet<String> = accepted
        .iter()
        .filter(|a| a.account == "acme")
        .map(|a| a.body.clone())
        .collect();
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn an_interrupted_replay_resumed_sends_each_event_once() {
    let production = TestApp::spawn().await;
    let mut bodies = HashSet::new();
    for _ in 0..8 {
        let uuid = format!("{}==", uuid::Uuid::new_v4().simple());
        let body = real_event(
            "zoomdocs-recording.completed.json",
            "acme-account-id",
            &uuid,
        );
        assert_eq!(
            production.post_signed(ACME_TOKEN, &body).await.status(),
            200
        );
        bodies.insert(body);
    }
    let mut staging = staging().await;
    let state = tempfile::tempdir().expect("state dir");
    let environment = environment(&production.broker, state.path());
    let mut slow = request(
        "resumable",
        last_minutes(10),
        acme_only(&[]),
        to_staging(&staging),
    );
    slow.options.rate = 4.0;

    let interrupt = CancellationToken::new();
    let job = tokio::spawn({
        let interrupt = interrupt.clone();
        let environment = environment.clone();
        async move { relay_replay::run(Job::New(Box::new(slow)), &environment, interrupt).await }
    });
    let tap = staging.tap.queue.clone();
    assert!(eventually(WAIT, || async { queue_length(&tap).await >= 2 }).await);
    interrupt.cancel();
    let first = job.await.expect("joined").expect("ran");
    assert!(!first.complete, "stopped early: {first:?}");
    assert!(first.counts.sent >= 2 && first.counts.sent < 8, "{first:?}");

    let resumed = relay_replay::run(
        Job::Resume("resumable".into()),
        &environment,
        CancellationToken::new(),
    )
    .await
    .expect("resumed");
    assert!(resumed.succeeded(), "{resumed:?}");
    assert_eq!(resumed.counts.sent, 8, "the counts carry over");

    let stored: Vec<String> = stored_at(&mut staging)
        .await
        .iter()
        .map(|d| String::from_utf8(d.data.clone()).expect("UTF-8"))
        .collect();
    assert_eq!(stored.len(), 8, "each event once");
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), bodies);
    assert!(matches!(
        relay_replay::run(
            Job::Resume("resumable".into()),
            &environment,
            CancellationToken::new()
        )
        .await,
        Err(ReplayError::AlreadyComplete(_))
    ));
}

#[tokio::test]
async fn a_staging_ingress_refusing_the_secret_stops_the_job_and_the_summary_says_so() {
    let (production, _accepted) = production().await;
    let staging = staging().await;
    let state = tempfile::tempdir().expect("state dir");
    let mut environment = environment(&production.broker, state.path());
    environment.secrets = Arc::new(|_: &str| Some(SecretString::from("not-stagings-token")));

    let summary = replay(
        request(
            "wrong-secret",
            last_minutes(10),
            acme_only(&[]),
            to_staging(&staging),
        ),
        &environment,
    )
    .await;

    assert!(!summary.succeeded());
    assert!(!summary.complete);
    assert_eq!(summary.counts.sent, 0);
    let error = summary.error.expect("why it stopped");
    assert!(
        error.contains("401") && error.contains("invalid_signature"),
        "{error}"
    );
    assert_eq!(queue_length(&staging.tap.queue).await, 0);
}

#[tokio::test]
async fn a_range_older_than_the_archive_says_what_the_oldest_held_event_is() {
    let (production, _accepted) = production().await;
    let staging = staging().await;
    let state = tempfile::tempdir().expect("state dir");
    let environment = environment(&production.broker, state.path());
    let now = Utc::now();
    let long_ago = Source::Archive {
        since: now - TimeDelta::days(3),
        until: now - TimeDelta::days(2),
    };

    let refused = relay_replay::run(
        Job::New(Box::new(request(
            "too-old",
            long_ago,
            acme_only(&[]),
            to_staging(&staging),
        ))),
        &environment,
        CancellationToken::new(),
    )
    .await;

    match refused {
        Err(error @ ReplayError::BeyondRetention { .. }) => {
            assert!(error.to_string().contains("holds events from"), "{error}");
        }
        other => panic!("expected a retention error, got {other:?}"),
    }
    assert_eq!(queue_length(&staging.tap.queue).await, 0);
}

#[tokio::test]
async fn a_replayed_event_deletes_at_zoom_only_when_the_job_allows_it() {
    // Staging deletes after upload; the events come from a production ingress's archive.
    let staging = TestPipeline::start(|settings| {
        settings.accounts[0].delete_after_upload = DeleteAfterUpload::Delete;
    })
    .await;
    let production = TestApp::spawn().await;
    let kept = staging
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    let deleted = staging
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    for created in [&kept, &deleted] {
        let body = created.recording_completed.to_string();
        assert_eq!(
            production.post_signed(ACME_TOKEN, &body).await.status(),
            200
        );
    }
    let state = tempfile::tempdir().expect("state dir");
    let mut environment = environment(&production.broker, state.path());
    environment.secrets = Arc::new(|_: &str| Some(SecretString::from(ACME_TOKEN)));
    let to_pipeline = Target::Url {
        url: staging.ingress.clone(),
        secret_token_env: "ANY".into(),
    };
    let one_meeting = |uuid: &str| Filter {
        account: Some("acme".into()),
        meeting: Some(uuid.to_owned()),
        ..Filter::default()
    };

    let without = replay(
        request(
            "no-delete",
            last_minutes(10),
            one_meeting(&kept.uuid),
            to_pipeline.clone(),
        ),
        &environment,
    )
    .await;
    assert_eq!(without.counts.sent, 1, "{without:?}");
    staging
        .wait_for_manifest(&kept.uuid, |m| m.files().count() == kept.files.len())
        .await;
    // Its cleanup ran, and kept the recording at Zoom.
    assert!(
        eventually(WAIT, || async {
            staging.handled("cleanup", "ok").await >= 1.0
        })
        .await
    );
    assert!(
        staging.deletions().await.is_empty(),
        "deleted without --allow-delete"
    );

    let mut allowed = request(
        "allow-delete",
        last_minutes(10),
        one_meeting(&deleted.uuid),
        to_pipeline,
    );
    allowed.options.allow_delete = true;
    let with = replay(allowed, &environment).await;
    assert_eq!(with.counts.sent, 1, "{with:?}");
    assert!(
        eventually(WAIT, || async {
            staging.deletions().await.len() == deleted.files.len()
        })
        .await,
        "deleted with --allow-delete"
    );
    let deletions = staging.deletions().await;
    assert!(
        deletions
            .iter()
            .all(|d| d["meeting_uuid"] == deleted.uuid.as_str()),
        "only the allowed meeting: {deletions:?}"
    );
}

#[tokio::test]
async fn a_dead_lettered_download_replayed_from_its_queue_completes() {
    let pipeline = TestPipeline::start(|settings| settings.pipeline.max_attempts = 2).await;
    let mut spec = small(MeetingSpec {
        segments: 1,
        views: vec!["gallery_view".into()],
        transcript_later: false,
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
    let dead_letters = pipeline.dead_letters(StageName::Download);
    let dead = wait_for_messages(&dead_letters, 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    // The file is back at Zoom.
    let broken = created
        .files
        .iter()
        .find(|(_, file)| file.file_type == "MP4")
        .map(|(id, _)| id.clone())
        .expect("the MP4");
    let fixed = pipeline
        .http
        .post(format!("{}/_sim/files/{broken}/faults", pipeline.sim))
        .json(&FileFaults::default())
        .send()
        .await
        .expect("sim");
    assert!(fixed.status().is_success());

    let state = tempfile::tempdir().expect("state dir");
    let environment = pipeline_environment(&pipeline, state.path());
    let summary = replay(
        request(
            "dead-downloads",
            Source::DeadLetters {
                stage: "download".into(),
            },
            Filter {
                error_code: Some("file_not_found".into()),
                ..Filter::default()
            },
            Target::OwnStage,
        ),
        &environment,
    )
    .await;

    assert!(summary.succeeded(), "{summary:?}");
    assert_eq!(summary.counts.sent, 1);
    pipeline
        .wait_for_manifest(&created.uuid, |m| {
            m.files().count() == created.files.len() && m.missing.is_empty()
        })
        .await;
    assert_eq!(
        queue_length(&dead_letters).await,
        0,
        "taken off the dead-letter queue"
    );
}

#[tokio::test]
async fn events_queued_without_a_binding_are_rebound_by_the_account_they_name_and_only_then() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let created = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    // Queued by a version before bindings: no binding, dead-lettered by this one.
    pipeline
        .publish_by_hand(
            StageName::Plan,
            &created.recording_completed,
            Default::default(),
        )
        .await;
    let mut stranger = created.recording_completed.clone();
    stranger["payload"]["account_id"] = json!("not-a-configured-account");
    pipeline
        .publish_by_hand(StageName::Plan, &stranger, Default::default())
        .await;
    let dead_letters = pipeline.dead_letters(StageName::Plan);
    assert_eq!(wait_for_messages(&dead_letters, 2, WAIT).await.len(), 2);

    let state = tempfile::tempdir().expect("state dir");
    let environment = pipeline_environment(&pipeline, state.path());
    let mut rebind = request(
        "rebind",
        Source::DeadLetters {
            stage: "plan".into(),
        },
        Filter::default(),
        Target::OwnStage,
    );
    rebind.options.rebind = true;
    let summary = replay(rebind, &environment).await;

    assert_eq!(summary.counts.sent, 1, "{summary:?}");
    assert_eq!(
        summary.counts.skipped, 1,
        "no configured account: not bound"
    );
    pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_eq!(
        queue_length(&dead_letters).await,
        1,
        "the stranger stays dead-lettered"
    );
}

#[tokio::test]
async fn events_replayed_into_a_staging_broker_arrive_confirmed_and_bound_as_the_replay() {
    let (production, accepted) = production().await;
    let mut staging = staging().await;
    let state = tempfile::tempdir().expect("state dir");
    let mut environment = environment(&production.broker, state.path());
    environment.target_amqp_url = Some(SecretString::from(broker_url()));
    let target = Target::Amqp {
        url: relay_replay::request::redact_url(&broker_url()),
        namespace: staging.broker.topology().namespace().to_owned(),
        account: None,
    };

    let summary = replay(
        request(
            "to-broker",
            last_minutes(10),
            acme_only(&["recording.completed"]),
            target,
        ),
        &environment,
    )
    .await;

    assert!(summary.succeeded(), "{summary:?}");
    let stored = stored_at(&mut staging).await;
    assert_eq!(stored.len(), 1);
    let expected = accepted
        .iter()
        .find(|a| a.account == "acme" && a.event == "recording.completed")
        .expect("accepted");
    assert_eq!(stored[0].data, expected.body.as_bytes());
    assert_eq!(text(&stored[0], "origin"), "replay");
    assert_eq!(text(&stored[0], "replay_job"), "to-broker");
    assert_eq!(text(&stored[0], "account"), "acme");

    // Resuming needs the broker URL again (it is stored without its password).
    environment.target_amqp_url = None;
    let again = request(
        "to-broker-2",
        last_minutes(10),
        acme_only(&[]),
        Target::Amqp {
            url: relay_replay::request::redact_url(&broker_url()),
            namespace: staging.broker.topology().namespace().to_owned(),
            account: None,
        },
    );
    assert!(matches!(
        relay_replay::run(
            Job::New(Box::new(again)),
            &environment,
            CancellationToken::new()
        )
        .await,
        Err(ReplayError::MissingTargetUrl(_))
    ));
    assert!(
        !state.path().join("to-broker-2.json").exists(),
        "a job that could not start leaves nothing to resume"
    );
}
