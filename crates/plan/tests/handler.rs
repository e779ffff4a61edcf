//! Plan's decisions, without a broker: the handler against the Zoom simulator, its output
//! recorded by an in-process outbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use relay_core::binding::{Binding, Origin};
use relay_core::broker::StageName;
use relay_core::consumer::{Context, Stage};
use relay_core::failure::{Code, StageError};
use relay_core::metrics::StageMetrics;
use relay_core::status::State;
use relay_core::testing::RecordingOutbox;
use relay_pipeline::messages::ZoomEvent;
use relay_pipeline::settings::{AccountSettings, PipelineSettings};
use relay_pipeline::{Accounts, Shared, Staging};
use relay_plan::Plan;
use relay_storage::StoreUrl;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use zoom_api::ZoomSettings;
use zoom_sim::{CreatedMeeting, MeetingSpec, SimAccount, SimSettings, Simulator};

struct Harness {
    plan: Plan,
    sim: Arc<zoom_sim::SimState>,
    _staging: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn account(name: &str, id: &str) -> AccountSettings {
    #[derive(serde::Deserialize)]
    struct Holder {
        accounts: Vec<AccountSettings>,
    }
    let text = format!(
        "[[accounts]]\nname='{name}'\naccount_id='{id}'\nclient_id='{name}-client'\nclient_secret='{name}-secret'\nsecret_tokens=['{name}-token']\n"
    );
    let holder: Holder = toml::from_str(&text).expect("account");
    holder.accounts.into_iter().next().expect("one")
}

async fn harness() -> Harness {
    harness_with(|_| {}).await
}

/// The stage for accounts acme and globex, acme's settings adjusted by `configure`.
async fn harness_with(configure: impl FnOnce(&mut AccountSettings)) -> Harness {
    let mut accounts = vec![account("acme", "acme-id"), account("globex", "globex-id")];
    configure(&mut accounts[0]);
    let sim_settings = SimSettings {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..SimSettings::default()
    };
    let sim_accounts = accounts
        .iter()
        .map(|a| SimAccount {
            name: a.name.clone(),
            account_id: a.account_id.clone(),
            client_id: a.client_id.clone(),
            client_secret: format!("{}-secret", a.name),
            secret_token: format!("{}-token", a.name),
        })
        .collect();
    let simulator = Simulator::build(&sim_settings, sim_accounts).expect("simulator");
    let base = simulator.base_url();
    let sim = simulator.state();
    let shutdown = CancellationToken::new();
    tokio::spawn(simulator.run(shutdown.clone()));
    let zoom = ZoomSettings {
        oauth_url: format!("{base}/oauth/token"),
        api_base: format!("{base}/v2"),
        download_hosts: vec!["127.0.0.1".into()],
        retry_base: Duration::from_millis(10),
        ..ZoomSettings::default()
    };
    let staging = tempfile::tempdir().expect("staging");
    let url = StoreUrl::new(format!("file://{}", staging.path().display()));
    let mut registry = prometheus_client::registry::Registry::default();
    let shared = Shared {
        accounts: Accounts::new(&accounts, &zoom).expect("accounts"),
        staging: Staging::new(&url, &BTreeMap::new()).expect("staging"),
        settings: Arc::new(PipelineSettings {
            staging: url,
            ..PipelineSettings::default()
        }),
        metrics: StageMetrics::register(&mut registry),
    };
    Harness {
        plan: Plan::new(&shared),
        sim,
        _staging: staging,
        shutdown,
    }
}

fn acme() -> Binding {
    Binding::new("acme", "acme-id", Origin::Webhook)
}

fn event(value: &Value) -> ZoomEvent {
    serde_json::from_value(value.clone()).expect("event")
}

fn created(harness: &Harness, spec: MeetingSpec) -> CreatedMeeting {
    harness.sim.create_meeting(&spec).expect("meeting")
}

fn spec() -> MeetingSpec {
    MeetingSpec {
        account: Some("acme".into()),
        segments: 1,
        views: vec!["gallery_view".into()],
        transcript_later: false,
        media_size: 1024,
        ..MeetingSpec::default()
    }
}

async fn plan(harness: &Harness, context: &Context, value: &Value) -> Result<(), StageError> {
    harness.plan.handle(event(value), context).await
}

#[tokio::test]
async fn the_apis_file_list_urls_and_sizes_win_over_the_events() {
    let harness = harness().await;
    let meeting = created(&harness, spec());
    let mut forged = meeting.recording_completed.clone();
    for file in forged["payload"]["object"]["recording_files"]
        .as_array_mut()
        .expect("files")
    {
        file["download_url"] = json!("https://zoom.us/rec/download/somewhere-else");
        file["file_size"] = json!(1);
    }
    let outbox = RecordingOutbox::new();
    plan(&harness, &outbox.context(acme()), &forged)
        .await
        .expect("planned");
    let tasks = outbox.sent_to(StageName::Download);
    assert_eq!(tasks.len(), meeting.files.len());
    for task in &tasks {
        let url = task.body["file"]["download_url"].as_str().expect("url");
        assert!(url.starts_with("http://127.0.0.1"), "the API's URL: {url}");
        let id = task.body["file"]["id"].as_str().expect("id");
        assert_eq!(
            task.body["file"]["file_size"].as_u64(),
            Some(meeting.files[id].size),
            "the API's size"
        );
        assert!(
            task.body["download_token"].is_null(),
            "no event token for API files"
        );
        assert_eq!(task.binding, acme(), "sent on under the same binding");
    }
    let planned: Vec<_> = outbox
        .transitions()
        .into_iter()
        .filter(|t| t.state == State::Planned)
        .collect();
    assert_eq!(planned.len(), 1);
}

#[tokio::test]
async fn an_event_naming_another_account_than_its_binding_is_refused() {
    let harness = harness().await;
    let meeting = created(&harness, spec());
    let outbox = RecordingOutbox::new();
    let globex = Binding::new("globex", "globex-id", Origin::Webhook);
    let refused = plan(
        &harness,
        &outbox.context(globex),
        &meeting.recording_completed,
    )
    .await
    .expect_err("refused");
    assert_eq!(refused.code(), Code::AccountMismatch);
    let unknown = Binding::new("initech", "initech-id", Origin::Webhook);
    let refused = plan(
        &harness,
        &outbox.context(unknown),
        &meeting.recording_completed,
    )
    .await
    .expect_err("refused");
    assert_eq!(refused.code(), Code::UnknownAccount);
    assert!(outbox.sent().is_empty());
}

#[tokio::test]
async fn a_file_the_event_lists_and_the_api_not_yet_is_waited_for() {
    let harness = harness().await;
    let meeting = created(&harness, spec());
    let mut later = meeting.recording_completed.clone();
    let files = later["payload"]["object"]["recording_files"]
        .as_array_mut()
        .expect("files");
    let mut extra = files[0].clone();
    extra["id"] = json!("listed-late");
    files.push(extra);
    let outbox = RecordingOutbox::new();
    let waiting = plan(&harness, &outbox.context(acme()), &later)
        .await
        .expect_err("waits");
    assert!(
        matches!(
            waiting,
            StageError::Wait {
                code: Code::FileProcessing,
                give_up_after: Some(_),
                ..
            }
        ),
        "{waiting:?}"
    );
    assert_eq!(
        outbox.sent_to(StageName::Download).len(),
        meeting.files.len(),
        "what is listed goes on meanwhile"
    );
}

#[tokio::test]
async fn a_recheck_resends_only_what_was_never_confirmed_sent() {
    let harness = harness().await;
    let mut with_processing = spec();
    with_processing.faults.insert(
        "CHAT".into(),
        zoom_sim::FileFaults {
            processing_reads: 1,
            ..zoom_sim::FileFaults::default()
        },
    );
    let meeting = created(&harness, with_processing);
    // The first look: the chat is still processing, the others go.
    let first = RecordingOutbox::new();
    let waiting = plan(
        &harness,
        &first.context(acme()),
        &meeting.recording_completed,
    )
    .await;
    assert!(matches!(waiting, Err(StageError::Wait { .. })));
    let sent_first = first.sent_to(StageName::Download).len();
    assert_eq!(sent_first, meeting.files.len() - 1);
    // The recheck: only the chat, now complete.
    let second = RecordingOutbox::new();
    let context = second.context(acme()).rechecking(true);
    plan(&harness, &context, &meeting.recording_completed)
        .await
        .expect("planned");
    let resent = second.sent_to(StageName::Download);
    assert_eq!(resent.len(), 1, "{resent:?}");
    assert_eq!(resent[0].body["file"]["file_type"], "CHAT");
}

#[tokio::test]
async fn a_task_that_was_not_confirmed_is_sent_again_on_the_recheck() {
    let harness = harness().await;
    let mut with_processing = spec();
    with_processing.faults.insert(
        "CHAT".into(),
        zoom_sim::FileFaults {
            processing_reads: 1,
            ..zoom_sim::FileFaults::default()
        },
    );
    let meeting = created(&harness, with_processing);
    // The broker refuses: nothing is confirmed sent, the event is retried.
    let refusing = RecordingOutbox::new();
    refusing
        .failing
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let failed = plan(
        &harness,
        &refusing.context(acme()),
        &meeting.recording_completed,
    )
    .await
    .expect_err("publish failed");
    assert_eq!(failed.code(), Code::PublishFailed);
    // The retry still counts as a recheck (the wait header stays): nothing may be skipped.
    let retry = RecordingOutbox::new();
    let context = retry.context(acme()).rechecking(true);
    plan(&harness, &context, &meeting.recording_completed)
        .await
        .expect("planned");
    assert_eq!(
        retry.sent_to(StageName::Download).len(),
        meeting.files.len()
    );
}

#[tokio::test]
async fn a_meeting_the_account_filters_out_is_recorded_as_skipped_with_the_reason() {
    let harness = harness_with(|acme| acme.min_duration_minutes = 500).await;
    let meeting = created(&harness, spec());
    let outbox = RecordingOutbox::new();
    plan(
        &harness,
        &outbox.context(acme()),
        &meeting.recording_completed,
    )
    .await
    .expect("skipped is done");
    assert!(outbox.sent().is_empty(), "nothing fetched");
    let transitions = outbox.transitions();
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].state, State::Skipped);
    assert_eq!(
        transitions[0].detail["reason"],
        "shorter than min_duration_minutes"
    );
}

/// Each filter, on its own: what it leaves out (the reason recorded) and what it keeps.
#[tokio::test]
async fn filters_skip_by_host_duration_topic_and_the_accounts_switch_and_keep_the_rest() {
    type Configure = fn(&mut AccountSettings);
    let cases: [(&str, Configure, &str, &str, Option<&str>); 11] = [
        (
            "include_hosts keeps a listed host, any case",
            |a| a.include_hosts = vec!["Boss@Example.com".into()],
            "boss@example.com",
            "Weekly",
            None,
        ),
        (
            "include_hosts leaves out everyone else",
            |a| a.include_hosts = vec!["boss@example.com".into()],
            "intern@example.com",
            "Weekly",
            Some("host filtered out"),
        ),
        (
            "exclude_hosts leaves out a listed host",
            |a| a.exclude_hosts = vec!["intern@example.com".into()],
            "INTERN@example.com",
            "Weekly",
            Some("host filtered out"),
        ),
        (
            "min_duration_minutes keeps long enough meetings",
            |a| a.min_duration_minutes = 1,
            "boss@example.com",
            "Weekly",
            None,
        ),
        (
            "min_duration_minutes leaves out shorter ones",
            |a| a.min_duration_minutes = 500,
            "boss@example.com",
            "Weekly",
            Some("shorter than min_duration_minutes"),
        ),
        (
            "include_topic keeps a match",
            |a| a.include_topic = Some("(?i)^board".into()),
            "boss@example.com",
            "BOARD meeting",
            None,
        ),
        (
            "include_topic leaves out the rest",
            |a| a.include_topic = Some("(?i)^board".into()),
            "boss@example.com",
            "Weekly board",
            Some("topic does not match include_topic"),
        ),
        (
            "exclude_topic leaves out a match",
            |a| a.exclude_topic = Some("(?i)private|1:1".into()),
            "boss@example.com",
            "Private: review",
            Some("topic matches exclude_topic"),
        ),
        (
            "topics in any script",
            |a| a.include_topic = Some("会議".into()),
            "boss@example.com",
            "週次会議 🎥",
            None,
        ),
        (
            "an account switched off takes no new work",
            |a| a.enabled = false,
            "boss@example.com",
            "Weekly",
            Some("the account is switched off (enabled = false)"),
        ),
        (
            "no filter keeps everything",
            |_| {},
            "anyone@example.com",
            "",
            None,
        ),
    ];
    for (case, configure, host, topic, skipped) in cases {
        let harness = harness_with(configure).await;
        let meeting = created(
            &harness,
            MeetingSpec {
                host_email: host.into(),
                topic: topic.into(),
                ..spec()
            },
        );
        let outbox = RecordingOutbox::new();
        plan(
            &harness,
            &outbox.context(acme()),
            &meeting.recording_completed,
        )
        .await
        .unwrap_or_else(|error| panic!("{case}: {error:?}"));
        let transitions = outbox.transitions();
        match skipped {
            Some(reason) => {
                assert!(outbox.sent().is_empty(), "{case}: nothing fetched");
                assert_eq!(transitions.len(), 1, "{case}");
                assert_eq!(transitions[0].state, State::Skipped, "{case}");
                assert_eq!(transitions[0].detail["reason"], reason, "{case}");
            }
            None => {
                assert_eq!(
                    outbox.sent_to(StageName::Download).len(),
                    meeting.files.len(),
                    "{case}: every file fetched"
                );
                assert!(
                    transitions.iter().all(|t| t.state != State::Skipped),
                    "{case}"
                );
            }
        }
    }
}
