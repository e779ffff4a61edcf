//! The HTTP surface without a broker: the view is fed directly, the readers point at a port where
//! nothing listens. Credentials, percent-encoded uuids, stable error codes, escaping.

use std::time::Duration;

use relay_core::binding::{Binding, Origin};
use relay_core::broker::Topology;
use relay_core::settings::AmqpSettings;
use relay_core::status::{State, StatusMessage, Transition};
use relay_status::StatusSettings;
use relay_status::fold::FoldSettings;
use relay_status::server::StatusServer;
use relay_status::state::StatusState;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const UUID: &str = "/ab+Cd//eF==";
const HOSTILE: &str = r#"<script>alert("topic")</script> & 'more'"#;

struct Served {
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn serve(configure: impl FnOnce(&mut StatusSettings)) -> Served {
    let mut settings = StatusSettings {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..StatusSettings::default()
    };
    configure(&mut settings);
    let amqp = AmqpSettings {
        // Nothing listens there: the readers retry in the background, the view is fed here.
        url: SecretString::from("amqp://guest:guest@127.0.0.1:1/%2f"),
        connect_timeout: Duration::from_millis(200),
        ..AmqpSettings::default()
    };
    let state = StatusState::new(FoldSettings::default(), Topology::new(&amqp, &[]));
    let binding = Binding::new("acme", "acme-id", Origin::Webhook);
    let planned = Transition::new(&binding, UUID, State::Planned, "plan").detail(json!({
        "topic": HOSTILE, "host_email": "host@example.com",
        "wanted": [{"file_id": "f1", "file_type": "MP4"}],
    }));
    let mut failed = Transition::new(&binding, UUID, State::Failed, "download").file("f1");
    failed.code = Some("html_instead_of_file".into());
    failed.reason = Some("Zoom served an HTML page <b>instead</b> of the file".into());
    failed.attempt = Some(1);
    state.with_view(|view| {
        view.apply(StatusMessage::Transition(planned));
        view.apply(StatusMessage::Transition(failed));
    });
    state.set_caught_up();
    let server = StatusServer::build(&settings, state, &amqp, None).expect("binds");
    let base = format!("http://127.0.0.1:{}", server.port());
    let shutdown = CancellationToken::new();
    tokio::spawn(server.run(shutdown.clone()));
    Served {
        base,
        http: reqwest::Client::new(),
        shutdown,
    }
}

impl Served {
    async fn get(&self, path: &str, auth: Auth<'_>) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        request = match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
        };
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.expect("body"))
    }

    async fn json(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = self.get(path, Auth::None).await;
        (status, serde_json::from_str(&body).expect("JSON"))
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

#[tokio::test]
async fn a_meeting_is_found_by_its_percent_encoded_uuid_and_errors_have_stable_codes() {
    let served = serve(|_| {}).await;
    let (status, detail) = served.json("/api/meetings/%2Fab%2BCd%2F%2FeF%3D%3D").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["meeting_uuid"], UUID);
    assert_eq!(detail["state"], "failed");
    assert_eq!(detail["failure"]["code"], "html_instead_of_file");
    assert_eq!(
        detail["failure"]["replay"],
        "zoom-relay replay --from-dlq download --meeting /ab+Cd//eF== --account acme"
    );
    let (status, error) = served.json("/api/meetings/nope").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (404, Some("meeting_not_found"))
    );
    let (status, error) = served.json("/api/meetings?state=lost").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_state"))
    );
    let (status, error) = served.json("/api/meetings?limit=0").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_limit"))
    );
    let (status, error) = served.json("/api/meetings?since=yesterday-ish").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_since"))
    );
    let (status, error) = served.json("/api/nothing").await;
    assert_eq!((status, error["error"].as_str()), (404, Some("not_found")));
    let (status, page) = served
        .json("/api/meetings?q=HOST%40example&since=1h&state=failed")
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 1);
    assert_eq!(
        page["meetings"][0]["topic"], HOSTILE,
        "JSON carries the text as it is"
    );
}

#[tokio::test]
async fn the_page_escapes_hostile_topics_and_reasons_and_forbids_scripts() {
    let served = serve(|_| {}).await;
    let (status, headers, index) = served.get("/", Auth::None).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-security-policy"]
            .to_str()
            .is_ok_and(|policy| policy.contains("default-src 'none'")),
        "{headers:?}"
    );
    assert!(!index.contains("<script"), "{index}");
    assert!(
        index
            .contains("&lt;script&gt;alert(&quot;topic&quot;)&lt;/script&gt; &amp; &#39;more&#39;")
    );
    assert!(index.contains("/meetings/%2Fab%2BCd%2F%2FeF%3D%3D?account=acme"));
    let (status, _, detail) = served
        .get(
            "/meetings/%2Fab%2BCd%2F%2FeF%3D%3D?account=acme",
            Auth::None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(!detail.contains("<b>instead</b>"), "the reason is escaped");
    assert!(detail.contains("&lt;b&gt;instead&lt;/b&gt;"));
    assert!(
        detail.contains(
            "zoom-relay replay --from-dlq download --meeting /ab+Cd//eF== --account acme"
        )
    );
}

#[tokio::test]
async fn a_configured_credential_is_required_on_every_route() {
    let served = serve(|settings| {
        settings.bearer_token = Some("s3cret-token".into());
        settings.username = Some("ops".into());
        settings.password = Some("pa55".into());
    })
    .await;
    for path in [
        "/",
        "/api/summary",
        "/api/meetings",
        "/api/accounts",
        "/api/queues",
    ] {
        let (status, headers, body) = served.get(path, Auth::None).await;
        assert_eq!(status, 401, "{path}");
        assert!(
            body.contains("\"error\":\"unauthorized\""),
            "{path}: {body}"
        );
        assert!(
            headers["www-authenticate"]
                .to_str()
                .is_ok_and(|value| value.starts_with("Basic")),
            "browsers are asked for basic credentials"
        );
        for wrong in [
            Auth::Bearer("s3cret-tokeN"),
            Auth::Basic("ops", "pa56"),
            Auth::Basic("op", "pa55"),
        ] {
            assert_eq!(served.get(path, wrong).await.0, 401, "{path}");
        }
        for right in [Auth::Bearer("s3cret-token"), Auth::Basic("ops", "pa55")] {
            assert_eq!(served.get(path, right).await.0, 200, "{path}");
        }
    }
}

#[tokio::test]
async fn listening_beyond_loopback_without_a_credential_is_refused_naming_the_key() {
    let amqp = AmqpSettings::default();
    let state = StatusState::new(FoldSettings::default(), Topology::new(&amqp, &[]));
    let settings = StatusSettings {
        listen: "0.0.0.0:0".parse().expect("address"),
        ..StatusSettings::default()
    };
    let refused = StatusServer::build(&settings, state, &amqp, None)
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("status.bearer_token"),
        "{refused}"
    );
}
