//! `zoom-relay status` against the real pipeline: the simulator, RabbitMQ's streams, the page in
//! a real browser. The status component runs as its own `App` beside the pipeline's, as it does
//! in production, so it can be restarted and doubled.

use std::process::ExitCode;
use std::time::Duration;

use relay_app::{App, Component, Settings};
use relay_core::shutdown::CancellationToken;
use relay_pipeline::DeleteAfterUpload;
use relay_status::cli::{Inputs, StatusArgs};
use secrecy::SecretString;
use serde_json::Value;
use zoom_sim::{FileFaults, MeetingSpec};

use crate::helpers::proxy::TcpProxy;
use crate::helpers::*;
use crate::pipeline::{PIPELINE, TestPipeline, WAIT, small};

/// A status process: its own App, its page and API on port 0.
pub(crate) struct StatusApp {
    base: String,
    admin: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for StatusApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl StatusApp {
    pub(crate) async fn start(settings: &Settings) -> Self {
        let app = App::build(settings.clone(), &[Component::Status]).expect("status starts");
        let base = format!(
            "http://127.0.0.1:{}",
            app.status_port().expect("status port")
        );
        let admin = format!("http://127.0.0.1:{}", app.admin_port());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        Self {
            base,
            admin,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        match self.http.get(format!("{}{path}", self.base)).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    pub(crate) async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    fn meeting_path(uuid: &str) -> String {
        format!(
            "/api/meetings/{}?account=acme",
            percent_encoding::utf8_percent_encode(uuid, percent_encoding::NON_ALPHANUMERIC)
        )
    }

    /// The meeting as the API shows it, once `done` holds (or the last look, after `WAIT`).
    async fn wait_meeting(&self, uuid: &str, done: impl Fn(&Value) -> bool) -> Value {
        let path = Self::meeting_path(uuid);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self.get(&path).await;
            let last: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status == 200 && done(&last) {
                return last;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "meeting {uuid} never got there; last seen ({status}): {last:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn caught_up(&self) -> bool {
        let (status, body) = self.get("/api/summary").await;
        status == 200
            && serde_json::from_str::<Value>(&body)
                .is_ok_and(|summary| summary["caught_up"] == true)
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

fn states(history: &Value) -> Vec<(String, String)> {
    history
        .as_array()
        .expect("history")
        .iter()
        .map(|line| {
            (
                line["state"].as_str().unwrap_or_default().to_owned(),
                line["stage"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Where each stage first appears in the history: every stage, in the pipeline's order.
fn assert_every_stage_in_order(detail: &Value, stages: &[(&str, &str)]) {
    let history = states(&detail["history"]);
    let mut previous = None;
    for (state, stage) in stages {
        let index = history
            .iter()
            .position(|(s, g)| s == state && g == stage)
            .unwrap_or_else(|| panic!("no {state} by {stage} in {history:?}"));
        assert!(
            previous.is_none_or(|previous| previous < index),
            "{state} by {stage} out of order in {history:?}"
        );
        previous = Some(index);
    }
}

#[tokio::test]
async fn after_a_run_the_meeting_is_uploaded_and_its_history_lists_every_stage_in_order() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let status = StatusApp::start(&pipeline.settings).await;
    let created = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    let detail = status
        .wait_meeting(&created.uuid, |m| m["state"] == "uploaded")
        .await;
    assert_every_stage_in_order(
        &detail,
        &[
            ("received", "ingress"),
            ("planned", "plan"),
            ("staged", "download"),
            ("assembled", "assemble"),
            ("uploaded", "upload"),
        ],
    );
    let staged = states(&detail["history"])
        .iter()
        .filter(|(state, _)| state == "staged")
        .count();
    assert_eq!(staged, created.files.len(), "one staged line per file");
    assert_eq!(detail["file_counts"]["staged"], created.files.len());
    assert_eq!(
        detail["landed"]["manifest"],
        manifest.manifest_path.as_str()
    );
    assert_eq!(detail["topic"], manifest.topic.as_str());
    assert!(
        detail["history"][1]["process"]
            .as_str()
            .is_some_and(|p| p.contains(':'))
    );
    // Nothing waits, nothing failed: said in plain words, and the series agree.
    let archived = eventually(WAIT, || async {
        let summary = status.json("/api/summary").await;
        summary["headline"] == "Everything is archived."
    })
    .await;
    assert!(archived, "{:#}", status.json("/api/summary").await);
    let metrics = status.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "zoom_relay_meetings{account=\"acme\",state=\"uploaded\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "zoom_relay_oldest_pending_seconds{stage=\"download\"}"
        ),
        0.0
    );
    let consumers = eventually(WAIT, || async {
        metric_value(
            &status.metrics().await,
            "zoom_relay_queue_consumers{stage=\"plan\"}",
        ) >= 1.0
    })
    .await;
    assert!(consumers, "queue figures from the management API");
    let list = status
        .json("/api/meetings?account=acme&state=uploaded")
        .await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["meetings"][0]["meeting_uuid"], created.uuid.as_str());
}

#[tokio::test]
async fn a_deleted_meeting_stays_deleted_when_zoom_repeats_recording_completed() {
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].delete_after_upload = DeleteAfterUpload::Trash;
    })
    .await;
    let status = StatusApp::start(&pipeline.settings).await;
    let created = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&created.recording_completed).await;
    let detail = status
        .wait_meeting(&created.uuid, |m| m["state"] == "deleted")
        .await;
    assert_every_stage_in_order(
        &detail,
        &[
            ("received", "ingress"),
            ("planned", "plan"),
            ("staged", "download"),
            ("assembled", "assemble"),
            ("uploaded", "upload"),
            ("deleted", "cleanup"),
        ],
    );
    assert_eq!(detail["deletion"]["action"], "trash");
    // Zoom sends the event again, as it does, with another download token (an identical
    // delivery within the same second would be the same signature: a replay, stored once).
    let mut repeated = created.recording_completed.clone();
    repeated["download_token"] = serde_json::json!("a-second-download-token");
    pipeline.send(&repeated).await;
    let again = status
        .wait_meeting(&created.uuid, |m| {
            let lines = m["history"].as_array().cloned().unwrap_or_default();
            let received: Vec<usize> = (0..lines.len())
                .filter(|i| lines[*i]["state"] == "received")
                .collect();
            received.len() >= 2
                && lines[received[1]..]
                    .iter()
                    .any(|line| line["state"] == "planned")
        })
        .await;
    assert_eq!(
        again["state"], "deleted",
        "never back: {:#}",
        again["history"]
    );
    assert_eq!(again["pending_at"], Value::Null);
}

#[tokio::test]
async fn a_file_served_as_html_fails_the_meeting_with_its_code_and_replay_command() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let status = StatusApp::start(&pipeline.settings).await;
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
    let mp4s = created
        .files
        .values()
        .filter(|file| file.file_type == "MP4")
        .count();
    pipeline.send(&created.recording_completed).await;
    // The meeting is archived without its MP4s (the manifest lists them as missing)...
    pipeline
        .wait_for_manifest(&created.uuid, |m| m.missing.len() == mp4s)
        .await;
    // ...and status says both: failed, and how far the rest got.
    let detail = status
        .wait_meeting(&created.uuid, |m| {
            m["state"] == "failed" && m["reached"] == "uploaded"
        })
        .await;
    let failure = &detail["failure"];
    assert_eq!(failure["code"], "html_instead_of_file");
    assert_eq!(failure["stage"], "download");
    assert_eq!(failure["file_type"], "MP4");
    assert_eq!(failure["retryable"], false);
    assert!(
        failure["meaning"]
            .as_str()
            .is_some_and(|meaning| meaning.contains("HTML page")),
        "{failure:#}"
    );
    assert_eq!(
        failure["replay"],
        format!(
            "zoom-relay replay --from-dlq download --meeting {} --account acme",
            relay_status::words::shell_word(&created.uuid)
        )
        .as_str()
    );
    assert_eq!(detail["failures"].as_array().map(Vec::len), Some(mp4s));
    assert_eq!(detail["file_counts"]["failed"], mp4s);
    assert_eq!(detail["file_counts"]["staged"], created.files.len() - mp4s);
    assert_eq!(detail["landed"]["missing"], mp4s);
    assert!(
        detail["summary"]
            .as_str()
            .is_some_and(|summary| summary.contains("the rest is archived")),
        "{}",
        detail["summary"]
    );

    // The CLI prints the same facts, from the server or from the streams themselves.
    let server = StatusArgs {
        meeting: Some(created.uuid.clone()),
        account: Some("acme".into()),
        server: Some(status.base.clone()),
        ..StatusArgs::default()
    };
    let settings = &pipeline.settings;
    let inputs = Inputs {
        status: &settings.status,
        amqp: &settings.amqp,
        retry_delays: &settings.pipeline.retry_delays(),
        accounts: &settings.accounts,
    };
    let (asked, code) = relay_status::cli::render(&server, &inputs)
        .await
        .expect("asked");
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(
        asked.contains("FAILED at download with html_instead_of_file"),
        "{asked}"
    );
    assert!(
        asked.contains(failure["replay"].as_str().unwrap_or("?")),
        "{asked}"
    );
    assert!(
        asked.contains("state: failed (reached uploaded)"),
        "{asked}"
    );
    let direct = StatusArgs {
        server: None,
        direct: true,
        ..server
    };
    let (folded, _) = relay_status::cli::render(&direct, &inputs)
        .await
        .expect("folded");
    assert_eq!(
        folded, asked,
        "the streams folded here say what the server says"
    );
    let summary = StatusArgs {
        summary: true,
        server: Some(status.base.clone()),
        ..StatusArgs::default()
    };
    let (text, code) = relay_status::cli::render(&summary, &inputs)
        .await
        .expect("summary");
    assert_eq!(code, ExitCode::from(2), "something needs attention");
    assert!(text.contains("1 meeting failed"), "{text}");
}

#[tokio::test]
async fn a_filtered_out_webinar_is_skipped_with_the_reason() {
    let pipeline = TestPipeline::start(|settings| settings.accounts[0].webinars = false).await;
    let status = StatusApp::start(&pipeline.settings).await;
    let webinar = pipeline
        .create(&small(MeetingSpec {
            webinar: true,
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&webinar.recording_completed).await;
    let detail = status
        .wait_meeting(&webinar.uuid, |m| m["state"] == "skipped")
        .await;
    assert_eq!(
        detail["skipped_reason"],
        "webinars are off for this account"
    );
    assert_eq!(detail["pending_at"], Value::Null);
    assert_eq!(detail["kind"], "webinar");
    assert_every_stage_in_order(&detail, &[("received", "ingress"), ("skipped", "plan")]);
    let skipped = status.json("/api/meetings?state=skipped").await;
    assert_eq!(skipped["total"], 1);
}

#[tokio::test]
async fn a_restarted_or_second_status_server_shows_the_same_view() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let first = StatusApp::start(&pipeline.settings).await;
    let mut spec = small(MeetingSpec {
        transcript_later: false,
        ..MeetingSpec::default()
    });
    spec.faults.insert(
        "M4A".into(),
        FileFaults {
            deleted_html: true,
            ..FileFaults::default()
        },
    );
    let failing = pipeline.create(&spec).await;
    let fine = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&failing.recording_completed).await;
    pipeline.send(&fine.recording_completed).await;
    first
        .wait_meeting(&failing.uuid, |m| {
            m["reached"] == "uploaded" && m["state"] == "failed"
        })
        .await;
    first
        .wait_meeting(&fine.uuid, |m| m["state"] == "uploaded")
        .await;
    assert!(
        eventually(WAIT, || async { pipeline.quiet().await }).await,
        "the pipeline settles"
    );
    let paths = [
        "/api/meetings".to_owned(),
        StatusApp::meeting_path(&failing.uuid),
        StatusApp::meeting_path(&fine.uuid),
    ];
    let view = async |status: &StatusApp| {
        let mut seen = Vec::new();
        for path in &paths {
            seen.push(status.json(path).await);
        }
        seen
    };
    let before = view(&first).await;
    // A second replica, then the first one restarted.
    let second = StatusApp::start(&pipeline.settings).await;
    assert!(
        eventually(WAIT, || second.caught_up()).await,
        "second caught up"
    );
    assert_eq!(view(&second).await, before, "two replicas show the same");
    drop(first);
    let restarted = StatusApp::start(&pipeline.settings).await;
    assert!(
        eventually(WAIT, || restarted.caught_up()).await,
        "restarted caught up"
    );
    assert_eq!(
        view(&restarted).await,
        before,
        "a restart rebuilds the same view"
    );
}

#[tokio::test]
async fn an_account_with_a_wrong_client_secret_shows_the_authorization_error() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let status = StatusApp::start(&pipeline.settings).await;
    // A process whose configuration holds a wrong secret for globex (the simulator knows the
    // right one): it reports the refusal it gets.
    let mut wrong = pipeline.settings.clone();
    wrong.accounts[1].client_secret = SecretString::from("not-the-secret");
    let misconfigured = App::build(wrong, &[Component::Plan]).expect("plan starts");
    let shutdown = CancellationToken::new();
    tokio::spawn(misconfigured.run(shutdown.clone()));
    let refused = eventually(WAIT, || async {
        let accounts = status.json("/api/accounts").await;
        accounts["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|account| {
                account["account"] == "globex" && account["authorization"]["state"] == "failing"
            })
    })
    .await;
    shutdown.cancel();
    assert!(refused, "{:#}", status.json("/api/accounts").await);
    let accounts = status.json("/api/accounts").await;
    let account = |name: &str| {
        accounts["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|account| account["account"] == name)
            .cloned()
            .unwrap_or_default()
    };
    let globex = account("globex");
    assert!(
        globex["authorization"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("Invalid client_id or client_secret")),
        "{globex:#}"
    );
    assert!(
        !globex["authorization"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not-the-secret"),
        "never the secret"
    );
    assert_eq!(account("acme")["authorization"]["state"], "ok");
    let summary = status.json("/api/summary").await;
    assert!(
        summary["attention"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|line| line
                .as_str()
                .is_some_and(|line| line.contains("globex cannot get a Zoom access token"))),
        "{:#}",
        summary["attention"]
    );
}

#[tokio::test]
async fn each_accounts_last_reconciliation_pass_shows_with_what_it_found() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let status = StatusApp::start(&pipeline.settings).await;
    // A recording whose webhook never came: the pass finds it missing.
    pipeline.create(&small(MeetingSpec::default())).await;
    crate::reconcile::reconcile_once(&pipeline).await;
    let reconciled = eventually(WAIT, || async {
        let accounts = status.json("/api/accounts").await;
        accounts["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|account| account["account"] == "acme" && account["reconcile"].is_object())
    })
    .await;
    let accounts = status.json("/api/accounts").await;
    assert!(reconciled, "{accounts:#}");
    let acme = accounts["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|account| account["account"] == "acme")
        .cloned()
        .unwrap_or_default();
    let pass = &acme["reconcile"];
    assert_eq!(pass["ok"], true, "{pass:#}");
    assert_eq!(pass["missing"], 1, "{pass:#}");
    assert!(pass["listed"].as_u64().is_some_and(|n| n >= 1), "{pass:#}");
    assert!(pass["watermark"].is_string(), "{pass:#}");
    assert!(pass["lag_seconds"].is_number(), "{pass:#}");
}

#[tokio::test]
async fn the_status_readers_resume_after_their_connection_drops_without_folding_twice() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let proxy = TcpProxy::start(broker_address()).await;
    let mut through_proxy = pipeline.settings.clone();
    through_proxy.amqp.url = SecretString::from(proxy.amqp_url());
    let status = StatusApp::start(&through_proxy).await;
    let first = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&first.recording_completed).await;
    let before = status
        .wait_meeting(&first.uuid, |m| {
            m["state"] == "uploaded" && m["history"][0]["state"] == "received"
        })
        .await;
    proxy.cut();
    let second = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&second.recording_completed).await;
    pipeline
        .wait_for_manifest(&second.uuid, |m| m.files().count() == second.files.len())
        .await;
    proxy.restore();
    status
        .wait_meeting(&second.uuid, |m| m["state"] == "uploaded")
        .await;
    let after = status.json(&StatusApp::meeting_path(&first.uuid)).await;
    assert_eq!(
        after["history"], before["history"],
        "resumed after the last offset folded: nothing folded twice"
    );
}

#[tokio::test]
async fn zoom_relay_run_serves_the_status_page_too() {
    let staging = tempfile::tempdir().expect("dir");
    let destination = tempfile::tempdir().expect("dir");
    let settings = crate::pipeline::pipeline_settings(staging.path(), destination.path());
    let mut components = PIPELINE.to_vec();
    components.push(Component::Status);
    let app = App::build(settings.clone(), &components).expect("run starts");
    let port = app.status_port().expect("run serves status");
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    let page = eventually(WAIT, || async {
        reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await
            .is_ok_and(|response| response.status() == 200)
    })
    .await;
    shutdown.cancel();
    delete_topology(&topology(&settings), &[]);
    assert!(page);
    assert!(
        Component::ALL.contains(&Component::Status),
        "`run` runs every component"
    );
}

#[tokio::test]
async fn listening_beyond_loopback_without_a_credential_is_refused() {
    let staging = tempfile::tempdir().expect("dir");
    let destination = tempfile::tempdir().expect("dir");
    let mut settings = crate::pipeline::pipeline_settings(staging.path(), destination.path());
    settings.status.listen = "0.0.0.0:0".parse().expect("address");
    let refused = App::build(settings.clone(), &[Component::Status])
        .err()
        .expect("refused");
    delete_topology(&topology(&settings), &[]);
    assert!(
        refused.to_string().contains("status.bearer_token"),
        "{refused}"
    );
}

// ---- The page, in a real browser ----------------------------------------------------------

/// Debian's headless Chromium: the DOM after load, and a screenshot.
struct Browser {
    binary: String,
    profile: tempfile::TempDir,
}

impl Browser {
    fn find() -> Self {
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .expect(
                "no Chromium: apt-get install -y chromium (the page is tested in a real browser)",
            )
            .to_owned();
        Self {
            binary,
            profile: tempfile::tempdir().expect("profile dir"),
        }
    }

    async fn run(&self, extra: &[String], url: &str) -> Vec<u8> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(extra)
            .arg(url)
            .kill_on_drop(true)
            .stderr(std::process::Stdio::null());
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("Chromium finished within a minute")
            .expect("Chromium runs");
        assert!(
            output.status.success(),
            "Chromium failed: {:?}",
            output.status
        );
        output.stdout
    }

    async fn dom(&self, url: &str) -> String {
        String::from_utf8_lossy(&self.run(&["--dump-dom".into()], url).await).into_owned()
    }

    async fn screenshot(&self, url: &str, path: &std::path::Path, height: u32) {
        self.run(
            &[
                format!("--screenshot={}", path.display()),
                format!("--window-size=1366,{height}"),
            ],
            url,
        )
        .await;
    }
}

#[tokio::test]
async fn the_page_loads_in_a_browser_and_shows_the_meetings_and_a_failure_explained() {
    let browser = Browser::find();
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].webinars = false;
        settings.accounts[1].delete_after_upload = DeleteAfterUpload::Trash;
    })
    .await;
    let status = StatusApp::start(&pipeline.settings).await;
    let hostile = r#"Quarterly review <script>alert("x")</script> & "Q3""#;
    let fine = pipeline
        .create(&small(MeetingSpec {
            topic: hostile.into(),
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    let mut spec = small(MeetingSpec {
        topic: "Design sync".into(),
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
    let failing = pipeline.create(&spec).await;
    let webinar = pipeline
        .create(&small(MeetingSpec {
            topic: "All-hands webinar".into(),
            webinar: true,
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    let deleted = pipeline
        .create(&small(MeetingSpec {
            topic: "Customer onboarding".into(),
            account: Some("globex".into()),
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    for created in [&fine, &failing, &webinar] {
        pipeline.send(&created.recording_completed).await;
    }
    pipeline
        .send_as(GLOBEX_TOKEN, &deleted.recording_completed)
        .await;
    status
        .wait_meeting(&fine.uuid, |m| m["state"] == "uploaded")
        .await;
    status
        .wait_meeting(&failing.uuid, |m| {
            m["state"] == "failed" && m["reached"] == "uploaded"
        })
        .await;
    status
        .wait_meeting(&webinar.uuid, |m| m["state"] == "skipped")
        .await;
    let globex = |uuid: &str| {
        format!(
            "/api/meetings/{}?account=globex",
            percent_encoding::utf8_percent_encode(uuid, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    let gone = eventually(WAIT, || async {
        status.json(&globex(&deleted.uuid)).await["state"] == "deleted"
    })
    .await;
    assert!(gone);

    let index = browser.dom(&format!("{}/", status.base)).await;
    for topic in ["Design sync", "All-hands webinar", "Customer onboarding"] {
        assert!(index.contains(topic), "{topic} missing from the page");
    }
    assert!(
        index.contains("Quarterly review &lt;script&gt;alert(\"x\")&lt;/script&gt; &amp; \"Q3\""),
        "the hostile topic is shown as text: {index}"
    );
    assert!(!index.contains("<script"), "no script reached the page");
    assert!(
        index.contains("webinars are off for this account") || index.contains("Skipped on purpose")
    );
    assert!(index.contains("html_instead_of_file"));
    assert!(index.contains("Zoom served an HTML page instead of the file"));
    assert!(index.contains("id=\"accounts\""), "accounts at the top");
    let failing_page = format!(
        "{}/meetings/{}?account=acme",
        status.base,
        percent_encoding::utf8_percent_encode(&failing.uuid, percent_encoding::NON_ALPHANUMERIC)
    );
    let detail = browser.dom(&failing_page).await;
    assert!(detail.contains("Failed at download with"), "{detail}");
    assert!(detail.contains("What to do"));
    assert!(detail.contains("The rest of the meeting is archived without it"));
    assert!(detail.contains(&format!(
        "zoom-relay replay --from-dlq download --meeting {}",
        relay_status::words::shell_word(&failing.uuid)
    )));
    assert!(detail.contains("id=\"history\""));
    let searched = browser
        .dom(&format!("{}/?q=design&state=failed", status.base))
        .await;
    let table = searched
        .split_once("id=\"meetings\"")
        .map(|(_, table)| table)
        .unwrap_or_default();
    assert!(table.contains("Design sync"), "{searched}");
    assert!(!table.contains("Customer onboarding"), "the search filters");

    let shots = tempfile::tempdir().expect("dir");
    let shot = std::env::var_os("STATUS_SCREENSHOT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| shots.path().to_path_buf());
    browser
        .screenshot(&format!("{}/", status.base), &shot.join("status.png"), 1100)
        .await;
    browser
        .screenshot(&failing_page, &shot.join("status-meeting.png"), 1300)
        .await;
    for name in ["status.png", "status-meeting.png"] {
        let png = std::fs::read(shot.join(name)).expect("screenshot written");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}");
    }
}
