//! `zoom-relay check` against the simulator: the scopes an account's features lack, which
//! optional features each missing one disables, and the granted scopes nothing configured uses.

use std::io::Write;
use std::process::Command;

use relay_core::shutdown::CancellationToken;
use zoom_sim::{SimAccount, SimSettings, Simulator};

/// Runs `zoom-relay check` with an account whose token carries `scopes`; (success, stdout).
async fn check(extra: &str, scopes: &str) -> (bool, String) {
    let settings = SimSettings {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..SimSettings::default()
    };
    let simulator = Simulator::build(
        &settings,
        vec![SimAccount {
            name: "acme".into(),
            account_id: "acme-id".into(),
            client_id: "acme-client".into(),
            client_secret: "acme-secret".into(),
            secret_token: "acme-token".into(),
        }],
    )
    .expect("simulator binds");
    let base = simulator.base_url();
    let shutdown = CancellationToken::new();
    tokio::spawn(simulator.run(shutdown.clone()));
    let response = reqwest::Client::new()
        .post(format!("{base}/_sim/faults"))
        .json(&serde_json::json!({ "token_scopes": scopes }))
        .send()
        .await
        .expect("simulator reachable");
    assert_eq!(response.status(), 204);
    let staging = tempfile::tempdir().expect("staging");
    let mut config = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("config file");
    write!(
        config,
        r#"
[zoom]
oauth_url = "{base}/oauth/token"
api_base = "{base}/v2"
[pipeline]
staging = "file://{staging}"
[[accounts]]
name = "acme"
account_id = "acme-id"
client_id = "acme-client"
client_secret = "acme-secret"
secret_tokens = ["acme-token"]
{extra}
"#,
        staging = staging.path().display()
    )
    .expect("config written");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_zoom-relay"))
            .arg("--config")
            .arg(config.path())
            .arg("check")
            .output()
            .expect("zoom-relay runs")
    })
    .await
    .expect("joined");
    shutdown.cancel();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test]
async fn reports_missing_optional_scopes_with_the_features_they_disable_and_unneeded_ones() {
    let (ok, out) = check(
        r#"metadata = ["participants", "summary"]"#,
        "recording:read:admin user:read:admin recording:write:admin meeting:read:admin",
    )
    .await;
    assert!(ok, "optional scopes do not fail the check:\n{out}");
    assert!(out.contains("ok      acme"), "{out}");
    assert!(
        out.contains("missing meeting_summary:read:admin")
            && out.contains("disables metadata \"summary\""),
        "{out}"
    );
    assert!(
        out.contains("missing webinar:read:admin")
            && out.contains("disables metadata \"participants\" (webinar"),
        "{out}"
    );
    assert!(
        out.contains("not needed: recording:write:admin"),
        "delete_after_upload is off: {out}"
    );
    assert!(
        !out.contains("not needed: meeting:read:admin"),
        "participants use it: {out}"
    );
}

#[tokio::test]
async fn a_missing_required_scope_fails_naming_the_feature() {
    let (ok, out) = check(
        r#"delete_after_upload = "trash""#,
        "recording:read:admin user:read:admin",
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("FAILED  acme: missing scopes"), "{out}");
    assert!(
        out.contains(
            "needs recording:write:admin (or cloud_recording:delete:*) for delete_after_upload"
        ),
        "{out}"
    );
}
