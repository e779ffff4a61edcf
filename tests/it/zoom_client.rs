//! The Zoom client against the simulator, and against wiremock where a precise fault is easier
//! to script.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use relay_app::Settings;
use relay_core::shutdown::CancellationToken;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use zoom_api::ZoomClient;
use zoom_api::client::{
    Capability, DeleteAction, Deletion, DownloadError, Downloaded, FileSource, ZoomError,
};
use zoom_api::model::{FileType, RecordingEvent, Sensitive};
use zoom_sim::{ApiFaults, CreatedMeeting, FileFaults, MeetingSpec, Simulator};

use crate::helpers::*;

/// A running simulator and a client for its `acme` account.
pub struct TestZoom {
    pub base: String,
    pub http: reqwest::Client,
    pub client: Arc<ZoomClient>,
    shutdown: CancellationToken,
}

impl Drop for TestZoom {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn point_at_simulator(settings: &mut Settings, base: &str) {
    settings.zoom.oauth_url = format!("{base}/oauth/token");
    settings.zoom.api_base = format!("{base}/v2");
    settings.websocket.url = format!("{}/ws", base.replacen("http", "ws", 1));
    settings.zoom.download_hosts = vec!["127.0.0.1".into()];
    settings.zoom.retry_base = Duration::from_millis(20);
    settings.zoom.retry_max = Duration::from_millis(200);
    settings.zoom.rate_limits.light_per_second = 1000;
    settings.zoom.rate_limits.medium_per_second = 1000;
}

impl TestZoom {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Settings)) -> Self {
        init_test_log();
        let mut settings = test_settings(&unique_namespace(), &TestOptions::default());
        settings.sim.listen = "127.0.0.1:0".parse().expect("address");
        configure(&mut settings);
        let simulator = Simulator::build(&settings.sim, relay_app::sim_accounts(&settings))
            .expect("simulator binds");
        let base = simulator.base_url();
        let shutdown = CancellationToken::new();
        tokio::spawn(simulator.run(shutdown.clone()));
        point_at_simulator(&mut settings, &base);
        let account = &settings.accounts[0];
        let client =
            ZoomClient::new(&settings.zoom, &account.name, account.credentials()).expect("client");
        Self {
            base,
            http: reqwest::Client::new(),
            client,
            shutdown,
        }
    }

    pub async fn create(&self, spec: &MeetingSpec) -> CreatedMeeting {
        let response = self
            .http
            .post(format!("{}/_sim/meetings", self.base))
            .json(spec)
            .send()
            .await
            .expect("simulator reachable");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.expect("created meeting")
    }

    pub async fn faults(&self, faults: ApiFaults) {
        let response = self
            .http
            .post(format!("{}/_sim/faults", self.base))
            .json(&faults)
            .send()
            .await
            .expect("faults set");
        assert_eq!(response.status(), 204);
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("reachable")
            .json()
            .await
            .expect("JSON")
    }

    /// Downloads the whole file, discarding the bytes: size and SHA-256 tell what arrived.
    pub async fn fetch(&self, source: FileSource) -> Result<Downloaded, DownloadError> {
        self.client
            .download(source)
            .await?
            .copy_to(&mut tokio::io::sink())
            .await
    }

    /// `(path, query, status)` of every request the simulator served under `prefix`.
    pub async fn requests_under(&self, prefix: &str) -> Vec<(String, String, u64)> {
        sim_requests(&self.http, &self.base, prefix).await
    }

    pub async fn token_requests(&self) -> u64 {
        self.get("/_sim/stats").await["token_requests"]
            .as_u64()
            .expect("count")
    }
}

fn file_source(event: &Value, file_type: FileType) -> (FileSource, String) {
    let event: RecordingEvent = serde_json::from_value(event.clone()).expect("event parses");
    let meeting = &event.payload.object;
    let file = meeting
        .all_files()
        .find(|file| file.file_type == file_type)
        .expect("a file of that type");
    let id = file.id.clone().expect("id");
    (
        FileSource {
            meeting_uuid: meeting.uuid.clone(),
            file_id: id.clone(),
            download_url: file.download_url.clone().expect("url"),
            download_token: event.download_token.clone(),
            expected_size: file.file_size,
            start_at: 0,
            end_at: None,
        },
        id,
    )
}

fn small_meeting() -> MeetingSpec {
    MeetingSpec {
        media_size: 3 * 1024 * 1024 + 17,
        segments: 1,
        views: vec!["shared_screen_with_speaker_view".into()],
        ..MeetingSpec::default()
    }
}

#[tokio::test]
async fn one_token_renewal_serves_100_concurrent_callers() {
    let zoom = TestZoom::start().await;
    let created = zoom.create(&small_meeting()).await;
    let calls = (0..100).map(|_| {
        let (client, uuid) = (zoom.client.clone(), created.uuid.clone());
        tokio::spawn(async move { client.meeting_recordings(&uuid, false).await })
    });
    for call in calls {
        call.await.expect("task").expect("call succeeds");
    }
    assert_eq!(zoom.token_requests().await, 1);
    assert_eq!(zoom.client.tokens().renewals(), 1);
}

#[tokio::test]
async fn renews_a_revoked_token_and_retries_once() {
    let zoom = TestZoom::start().await;
    let created = zoom.create(&small_meeting()).await;
    zoom.client
        .meeting_recordings(&created.uuid, false)
        .await
        .expect("first call");
    zoom.faults(ApiFaults {
        revoke_tokens: true,
        ..ApiFaults::default()
    })
    .await;
    let recording = zoom
        .client
        .meeting_recordings(&created.uuid, false)
        .await
        .expect("retried");
    assert_eq!(recording.uuid, created.uuid);
    assert_eq!(zoom.token_requests().await, 2);
}

#[tokio::test]
async fn retries_rate_limits_and_server_errors() {
    let zoom = TestZoom::start().await;
    let created = zoom.create(&small_meeting()).await;
    zoom.faults(ApiFaults {
        rate_limited: 2,
        server_errors: 2,
        ..ApiFaults::default()
    })
    .await;
    zoom.client
        .meeting_recordings(&created.uuid, false)
        .await
        .expect("eventually served");
    let statuses: Vec<u64> = zoom
        .requests_under("/v2/meetings")
        .await
        .into_iter()
        .map(|(_, _, status)| status)
        .collect();
    assert_eq!(statuses, vec![429, 429, 500, 500, 200]);
}

#[tokio::test]
async fn waits_for_retry_after_before_retrying() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "t", "token_type": "bearer", "expires_in": 3600, "scope": ""
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/meetings/123/recordings"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/meetings/123/recordings"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"uuid": "u", "recording_files": []})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut settings = test_settings("unused.", &TestOptions::default());
    point_at_simulator(&mut settings, &server.uri());
    let account = &settings.accounts[0];
    let client =
        ZoomClient::new(&settings.zoom, &account.name, account.credentials()).expect("client");
    let started = std::time::Instant::now();
    client
        .meeting_recordings("123", false)
        .await
        .expect("served after waiting");
    // A lower bound on correctness (it waited as told), not a performance figure.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "did not honour Retry-After"
    );
}

#[tokio::test]
async fn reports_zoom_error_code_and_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "t", "expires_in": 3600})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/meetings/123/recordings"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"code": 1010, "message": "User does not belong to this account."}),
        ))
        .mount(&server)
        .await;
    let mut settings = test_settings("unused.", &TestOptions::default());
    point_at_simulator(&mut settings, &server.uri());
    let account = &settings.accounts[0];
    let client =
        ZoomClient::new(&settings.zoom, &account.name, account.credentials()).expect("client");
    match client.meeting_recordings("123", false).await {
        Err(ZoomError::Api {
            status: 400,
            code: Some(1010),
            message,
        }) => {
            assert!(message.contains("does not belong"));
        }
        other => panic!("expected a typed Zoom error, got {other:?}"),
    }
}

#[tokio::test]
async fn lists_every_page_of_every_month_window() {
    let zoom = TestZoom::start_with(|settings| settings.sim.page_size_limit = 2).await;
    let starts = [
        "2026-01-03T10:00:00Z",
        "2026-01-20T10:00:00Z",
        "2026-01-25T10:00:00Z",
        "2026-02-10T10:00:00Z",
        "2026-02-11T10:00:00Z",
        "2026-02-12T10:00:00Z",
        "2026-03-30T10:00:00Z",
    ];
    let mut expected = Vec::new();
    for start in starts {
        let created = zoom
            .create(&MeetingSpec {
                start_time: Some(start.into()),
                host_email: "lister@example.com".into(),
                ..small_meeting()
            })
            .await;
        expected.push(created.uuid);
    }
    // Elsewhere in time, and another host: not listed.
    zoom.create(&MeetingSpec {
        start_time: Some("2025-06-01T10:00:00Z".into()),
        host_email: "lister@example.com".into(),
        ..small_meeting()
    })
    .await;
    zoom.create(&MeetingSpec {
        start_time: Some("2026-01-05T10:00:00Z".into()),
        host_email: "other@example.com".into(),
        ..small_meeting()
    })
    .await;

    let date = |text| NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date");
    let listed = zoom
        .client
        .user_recordings("lister@example.com", date("2026-01-01"), date("2026-03-31"))
        .await
        .expect("listed");
    let mut uuids: Vec<String> = listed.into_iter().map(|m| m.uuid).collect();
    uuids.sort();
    expected.sort();
    assert_eq!(uuids, expected);

    let account = zoom
        .client
        .account_recordings(date("2026-01-01"), date("2026-03-31"))
        .await
        .expect("listed");
    assert_eq!(
        account.len(),
        expected.len() + 1,
        "the other host's meeting too"
    );
}

#[tokio::test]
async fn an_expired_page_token_restarts_its_window() {
    let zoom = TestZoom::start_with(|settings| settings.sim.page_size_limit = 2).await;
    for day in 1..=5 {
        zoom.create(&MeetingSpec {
            start_time: Some(format!("2026-05-0{day}T10:00:00Z")),
            ..small_meeting()
        })
        .await;
    }
    zoom.faults(ApiFaults {
        expired_page_tokens: 1,
        ..ApiFaults::default()
    })
    .await;
    let date = |text| NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date");
    let listed = zoom
        .client
        .account_recordings(date("2026-05-01"), date("2026-05-10"))
        .await
        .expect("listed");
    assert_eq!(listed.len(), 5);
}

#[tokio::test]
async fn lists_active_and_inactive_users() {
    let zoom = TestZoom::start().await;
    zoom.create(&small_meeting()).await;
    let users = zoom.client.all_users().await.expect("users");
    let statuses: Vec<_> = users.iter().filter_map(|u| u.status.clone()).collect();
    assert!(statuses.contains(&"active".into()) && statuses.contains(&"inactive".into()));
}

#[tokio::test]
async fn double_encodes_uuids_with_slashes_as_zoom_requires() {
    let zoom = TestZoom::start().await;
    for uuid in ["/ajXp112QmuoKj4854875==", "ab//cd+ef=="] {
        zoom.create(&MeetingSpec {
            uuid: Some(uuid.into()),
            ..small_meeting()
        })
        .await;
        let recording = zoom
            .client
            .meeting_recordings(uuid, false)
            .await
            .expect("found");
        assert_eq!(recording.uuid, uuid);
    }
}

#[tokio::test]
async fn deleting_twice_is_one_deletion_and_already_gone() {
    let zoom = TestZoom::start().await;
    let created = zoom.create(&small_meeting()).await;
    let first = zoom
        .client
        .delete_meeting_recordings(&created.uuid, DeleteAction::Trash)
        .await;
    let second = zoom
        .client
        .delete_meeting_recordings(&created.uuid, DeleteAction::Trash)
        .await;
    assert_eq!(first.expect("deleted"), Deletion::Deleted);
    assert_eq!(second.expect("gone is fine"), Deletion::AlreadyGone);
    let deletions = zoom.get("/_sim/deletions").await;
    assert_eq!(deletions.as_array().map(Vec::len), Some(1));
    assert_eq!(deletions[0]["action"], "trash");
}

#[tokio::test]
async fn check_reports_missing_scopes() {
    let zoom = TestZoom::start().await;
    let report = zoom
        .client
        .check(&[Capability::ReadRecordings, Capability::ReadUsers])
        .await;
    assert!(
        report.result.is_ok() && report.missing.is_empty(),
        "{report:?}"
    );

    let zoom = TestZoom::start().await;
    zoom.faults(ApiFaults {
        token_scopes: Some("recording:read:admin".into()),
        ..ApiFaults::default()
    })
    .await;
    let report = zoom
        .client
        .check(&[
            Capability::ReadRecordings,
            Capability::DeleteRecordings,
            Capability::ReadUsers,
        ])
        .await;
    assert_eq!(
        report.missing,
        vec![Capability::DeleteRecordings, Capability::ReadUsers]
    );
}

#[tokio::test]
async fn downloads_the_served_bytes_with_their_digest() {
    let zoom = TestZoom::start().await;
    let created = zoom.create(&small_meeting()).await;
    let (source, id) = file_source(&created.recording_completed, FileType::Mp4);
    let download = zoom.client.download(source).await.expect("starts");
    let mut bytes = Vec::new();
    let downloaded = download.copy_to(&mut bytes).await.expect("completes");
    assert_eq!(downloaded.bytes, created.files[&id].size);
    assert_eq!(
        downloaded.sha256.as_deref(),
        Some(created.files[&id].sha256.as_str())
    );
    use sha2::Digest;
    assert_eq!(
        Some(hex::encode(sha2::Sha256::digest(&bytes))),
        downloaded.sha256
    );
}

#[tokio::test]
async fn a_range_is_exactly_its_bytes_and_a_range_at_or_past_the_end_is_complete_and_empty() {
    let zoom = TestZoom::start().await;
    let created = zoom.create(&small_meeting()).await;
    let (whole, id) = file_source(&created.recording_completed, FileType::Mp4);
    let size = created.files[&id].size;
    let mut file = Vec::new();
    zoom.client
        .download(whole.clone())
        .await
        .expect("starts")
        .copy_to(&mut file)
        .await
        .expect("completes");

    let mut middle = Vec::new();
    let ranged = zoom
        .client
        .download(FileSource {
            start_at: 100_000,
            end_at: Some(1_100_000),
            ..whole.clone()
        })
        .await
        .expect("starts")
        .copy_to(&mut middle)
        .await
        .expect("completes");
    assert_eq!(
        middle,
        file[100_000..1_100_000],
        "the range's bytes, no more"
    );
    assert_eq!(ranged.bytes, 1_100_000, "ends where the range ends");
    assert_eq!(ranged.sha256, None, "a range is not the file: no digest");

    // Zoom's listed size can exceed the file: a range split from it may start at or past the
    // end. The server's 416 says so, and the range is complete with nothing in it.
    for start in [size, size + 4096] {
        let mut nothing = Vec::new();
        let empty = zoom
            .client
            .download(FileSource {
                start_at: start,
                end_at: Some(start + 1_000_000),
                ..whole.clone()
            })
            .await
            .expect("a range past the end is not an error")
            .copy_to(&mut nothing)
            .await
            .expect("completes");
        assert!(nothing.is_empty());
        assert_eq!(empty.bytes, start);
    }
}

#[tokio::test]
async fn resumes_after_cut_connections_with_identical_bytes() {
    let zoom = TestZoom::start().await;
    let mut spec = small_meeting();
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            cut_after: Some(1_000_000),
            cut_times: 2,
            ..FileFaults::default()
        },
    );
    let created = zoom.create(&spec).await;
    let (source, id) = file_source(&created.recording_completed, FileType::Mp4);
    let downloaded = zoom
        .fetch(source)
        .await
        .expect("completes despite two cuts");
    assert_eq!(
        downloaded.sha256.as_deref(),
        Some(created.files[&id].sha256.as_str())
    );
    let partials = zoom
        .requests_under("/files/")
        .await
        .into_iter()
        .filter(|(_, _, status)| *status == 206)
        .count();
    assert_eq!(partials, 2, "each cut resumed with a Range request");
}

#[tokio::test]
async fn a_body_shorter_than_promised_is_an_error_never_a_file() {
    let zoom = TestZoom::start_with(|settings| settings.zoom.download_resumes = 1).await;
    let mut spec = small_meeting();
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            cut_after: Some(100_000),
            cut_times: 10,
            ..FileFaults::default()
        },
    );
    let created = zoom.create(&spec).await;
    let (source, _) = file_source(&created.recording_completed, FileType::Mp4);
    let result = zoom.fetch(source).await;
    // How much of a cut response arrives before the connection drops varies; that it is short
    // of what was promised, and an error, does not.
    match result {
        Err(DownloadError::Incomplete {
            received,
            promised: Some(promised),
        }) => {
            assert!(received < promised, "{received} of {promised}");
        }
        other => panic!("expected an incomplete download, got {other:?}"),
    }
}

#[tokio::test]
async fn an_html_page_answered_200_is_an_error() {
    let zoom = TestZoom::start().await;
    let mut spec = small_meeting();
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            deleted_html: true,
            ..FileFaults::default()
        },
    );
    let created = zoom.create(&spec).await;
    let (source, _) = file_source(&created.recording_completed, FileType::Mp4);
    let error = zoom.client.download(source).await.err().expect("refused");
    assert!(
        matches!(error, DownloadError::HtmlInsteadOfFile { status: 200 }),
        "{error:?}"
    );
    assert!(!relay_core::StageError::from(error).code().is_retryable());
}

#[tokio::test]
async fn a_file_size_a_few_bytes_off_passes_and_far_off_fails() {
    let zoom = TestZoom::start().await;
    let mut spec = small_meeting();
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            size_off_by: 7,
            ..FileFaults::default()
        },
    );
    spec.faults.insert(
        "M4A".into(),
        FileFaults {
            size_off_by: 600_000,
            ..FileFaults::default()
        },
    );
    let created = zoom.create(&spec).await;
    let (near, _) = file_source(&created.recording_completed, FileType::Mp4);
    let near_source = near.clone();
    zoom.fetch(near).await.expect("complete");
    let (far, _) = file_source(&created.recording_completed, FileType::M4a);
    let error = zoom
        .client
        .download(far.clone())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(error, DownloadError::SizeMismatch { .. }),
        "{error:?}"
    );
    // The same for a range of each: its answer's total is held to the listed size too.
    let range = |source: FileSource| FileSource {
        start_at: 1_000,
        end_at: Some(2_000),
        ..source
    };
    zoom.fetch(range(near_source))
        .await
        .expect("a range of the near one");
    let error = zoom
        .client
        .download(range(far))
        .await
        .err()
        .expect("a range of the far one refused");
    assert!(
        matches!(error, DownloadError::SizeMismatch { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_refused_event_token_falls_back_to_the_access_token() {
    let zoom = TestZoom::start().await;
    let created = zoom.create(&small_meeting()).await;
    let (mut source, id) = file_source(&created.recording_completed, FileType::Mp4);
    source.download_token = Some(Sensitive::new("opaque-token-zoom-no-longer-knows"));
    let downloaded = zoom.fetch(source).await.expect("complete");
    assert_eq!(
        downloaded.sha256.as_deref(),
        Some(created.files[&id].sha256.as_str())
    );
    let download_statuses: Vec<u64> = zoom
        .requests_under("/rec/")
        .await
        .into_iter()
        .map(|(_, _, status)| status)
        .collect();
    assert_eq!(download_statuses, vec![401, 302]);
}

#[tokio::test]
async fn refused_tokens_end_with_a_fresh_url_and_download_access_token() {
    let zoom = TestZoom::start().await;
    let mut spec = small_meeting();
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            refuse_access_tokens: true,
            ..FileFaults::default()
        },
    );
    let created = zoom.create(&spec).await;
    let (mut source, id) = file_source(&created.recording_completed, FileType::Mp4);
    source.download_token = Some(Sensitive::new("opaque-token-zoom-no-longer-knows"));
    let downloaded = zoom.fetch(source).await.expect("complete");
    assert_eq!(
        downloaded.sha256.as_deref(),
        Some(created.files[&id].sha256.as_str())
    );
    let steps: Vec<(String, u64)> = zoom
        .requests_under("/")
        .await
        .into_iter()
        .filter(|(path, _, _)| !path.starts_with("/files/") && path != "/oauth/token")
        .map(|(_, query, status)| (query, status))
        .collect();
    let statuses: Vec<u64> = steps.iter().map(|(_, status)| *status).collect();
    assert_eq!(
        statuses,
        vec![401, 401, 200, 302],
        "event token, access token, fresh URL, download"
    );
    assert!(steps[2].0.contains("include_fields=download_access_token"));
}

#[tokio::test]
async fn an_expired_event_token_is_skipped_without_a_request() {
    let zoom = TestZoom::start().await;
    let created = zoom
        .create(&MeetingSpec {
            expired_download_token: true,
            ..small_meeting()
        })
        .await;
    let (source, id) = file_source(&created.recording_completed, FileType::Mp4);
    let downloaded = zoom.fetch(source).await.expect("complete");
    assert_eq!(
        downloaded.sha256.as_deref(),
        Some(created.files[&id].sha256.as_str())
    );
    let statuses: Vec<u64> = zoom
        .requests_under("/rec/")
        .await
        .into_iter()
        .map(|(_, _, status)| status)
        .collect();
    assert_eq!(
        statuses,
        vec![302],
        "the expired event token was never sent: the access token opened the file at once"
    );
}

#[tokio::test]
async fn refuses_download_urls_and_redirects_outside_the_allowlist() {
    let zoom = TestZoom::start().await;
    let source = |url: &str| FileSource {
        meeting_uuid: "m".into(),
        file_id: "f".into(),
        download_url: Sensitive::new(url),
        download_token: Some(Sensitive::new("t")),
        expected_size: None,
        start_at: 0,
        end_at: None,
    };
    let error = zoom
        .client
        .download(source("http://169.254.169.254/latest/meta-data"))
        .await
        .err()
        .expect("refused");
    assert!(matches!(error, DownloadError::NotAllowed(_)), "{error:?}");

    let server = MockServer::start().await;
    let port = server.address().port();
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("Location", format!("http://localhost:{port}/elsewhere")),
        )
        .mount(&server)
        .await;
    let error = zoom
        .client
        .download(source(&format!("{}/rec/download/x", server.uri())))
        .await
        .err()
        .expect("refused");
    assert!(matches!(error, DownloadError::NotAllowed(_)), "{error:?}");
}

#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn never_logs_tokens_or_download_urls() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let zoom = TestZoom::start().await;
    let mut spec = small_meeting();
    spec.faults.insert(
        "MP4".into(),
        FileFaults {
            cut_after: Some(500_000),
            cut_times: 1,
            server_errors: 1,
            ..FileFaults::default()
        },
    );
    let created = zoom.create(&spec).await;
    let (mut source, _) = file_source(&created.recording_completed, FileType::Mp4);
    source.download_token = Some(Sensitive::new("opaque-event-token-value"));
    let url = source.download_url.expose().to_owned();
    zoom.fetch(source).await.expect("complete");
    zoom.faults(ApiFaults {
        revoke_tokens: true,
        ..ApiFaults::default()
    })
    .await;
    zoom.client
        .meeting_recordings(&created.uuid, true)
        .await
        .expect("renews");

    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(
        text.contains("resuming download"),
        "the test must exercise the logging paths:\n{text}"
    );
    for secret in [
        "opaque-event-token-value",
        url.as_str(),
        "/rec/download/",
        "/files/",
        "signature=",
        "access_token",
        "acme-client-secret",
    ] {
        assert!(
            !text.contains(secret),
            "`{secret}` leaked into logs:\n{text}"
        );
    }
}
