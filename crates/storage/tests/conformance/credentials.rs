//! Credentials the way each store's users give them: S3 keys from the standard environment (on a
//! moto that checks every signature), the instance's role when no keys are given, options winning
//! over the environment, an Azure SAS URL; and no secret in any error.
//!
//! The environment is the process's own, so each S3 case runs this test binary again as a child
//! with a prepared environment (`child_uses_the_environment`, ignored otherwise).

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use hmac::{Hmac, Mac};
use relay_storage::{Location, StoreUrl};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::servers::{AZURITE_ACCOUNT, AZURITE_KEY, Azurite, Moto, MotoUser};

const BUCKET: &str = "credentials";
const CHILD: &str = "credentials::child_uses_the_environment";

fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), SecretString::from(*value)))
        .collect()
}

struct ChildRun {
    success: bool,
    output: String,
}

/// This binary's `CHILD` test, with `env` as the only `AWS_*` variables and `options` (JSON)
/// as the store's options.
fn run_child(env: &[(&str, &str)], options: &[(&str, &str)]) -> ChildRun {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command.args([CHILD, "--exact", "--ignored", "--nocapture"]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    let options: BTreeMap<&str, &str> = options.iter().copied().collect();
    command
        .envs(env.iter().copied())
        .env("RELAY_STORAGE_CHILD_BUCKET", BUCKET)
        .env(
            "RELAY_STORAGE_CHILD_OPTIONS",
            serde_json::to_string(&options).expect("JSON"),
        );
    // Output to a file, so a child that hangs can be waited for with a deadline and killed.
    let log = tempfile::NamedTempFile::new().expect("child log");
    let out = log.reopen().expect("child log");
    // One open file for both: they share its offset, neither overwrites the other.
    command
        .stderr(out.try_clone().expect("child log"))
        .stdout(out);
    let mut child = command.spawn().expect("child runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let success = loop {
        if let Some(status) = child.try_wait().expect("child") {
            break status.success();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    ChildRun {
        success,
        output: std::fs::read_to_string(log.path()).unwrap_or_default(),
    }
}

/// Run by `run_child` only: writes and reads back through a store configured by the environment
/// (and the options its parent passed), failing, with the error printed, if the store refuses.
#[tokio::test]
#[ignore = "run by the credentials tests in a child process with a prepared environment"]
async fn child_uses_the_environment() {
    let (Ok(bucket), Ok(options)) = (
        std::env::var("RELAY_STORAGE_CHILD_BUCKET"),
        std::env::var("RELAY_STORAGE_CHILD_OPTIONS"),
    ) else {
        return;
    };
    let options: BTreeMap<String, String> = serde_json::from_str(&options).expect("options");
    let options = options
        .into_iter()
        .map(|(key, value)| (key, SecretString::from(value)))
        .collect();
    let location = Location::parse(&StoreUrl::new(format!("s3://{bucket}/env")), &options)
        .unwrap_or_else(|error| panic!("store refused: {error} / {error:?}"));
    let path = location.path("record.json").expect("key");
    if let Err(error) = location.put_json(&path, &json!({ "through": "env" })).await {
        panic!("write refused: {error} / {error:?}");
    }
    let read: Option<Value> = location.get_json(&path).await.expect("read back");
    assert_eq!(read, Some(json!({ "through": "env" })));
    // More than a part: the multipart calls are signed too.
    let big = location.path("big.bin").expect("key");
    let bytes = crate::pattern(6 * crate::MIB);
    let mut writer = location.writer(&big, bytes.len() as u64);
    writer.write(bytes.clone().into()).await.expect("write");
    writer.finish().await.expect("finish");
    assert_eq!(
        location.digest(&big).await.expect("digest").1,
        crate::sha256(&bytes)
    );
    println!("CHILD-OK");
}

fn refs<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect()
}

fn user_options(moto: &Moto, user: &MotoUser) -> BTreeMap<String, SecretString> {
    options(&[
        ("aws_endpoint", moto.endpoint()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", &user.key_id),
        ("aws_secret_access_key", &user.secret),
    ])
}

#[tokio::test]
async fn s3_configured_only_through_the_environment() {
    let (moto, user) = Moto::start_authenticating(BUCKET).await;
    let env = |secret: &str| {
        [
            ("AWS_ACCESS_KEY_ID", user.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", moto.endpoint().to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    };
    let right = env(&user.secret);
    let run = run_child(&refs(&right), &[]);
    assert!(
        run.success && run.output.contains("CHILD-OK"),
        "{}",
        run.output
    );
    assert!(!run.output.contains(&user.secret), "{}", run.output);

    // What the child wrote is there for a client given the same keys as options.
    let location = Location::parse(
        &StoreUrl::new(format!("s3://{BUCKET}/env")),
        &user_options(&moto, &user),
    )
    .expect("store");
    let record: Option<Value> = location
        .get_json(&location.path("record.json").expect("key"))
        .await
        .expect("read");
    assert_eq!(record, Some(json!({ "through": "env" })));

    // A wrong secret in the environment: refused by the store, and never printed.
    let wrong = "WRONG-SECRET-0123456789abcdefghijklmnopqrs";
    let wrong_env = env(wrong);
    let run = run_child(&refs(&wrong_env), &[]);
    assert!(!run.success, "a wrong secret was accepted: {}", run.output);
    assert!(run.output.contains("write refused"), "{}", run.output);
    assert!(!run.output.contains(wrong), "{}", run.output);

    // Keys in the options win over the environment's, whole: the wrong secret and a session
    // token left in the environment are not used with them.
    let mut stale = refs(&wrong_env);
    stale.push(("AWS_SESSION_TOKEN", "a-token-of-another-tool"));
    let run = run_child(
        &stale,
        &[
            ("aws_access_key_id", &user.key_id),
            ("aws_secret_access_key", &user.secret),
        ],
    );
    assert!(
        run.success && run.output.contains("CHILD-OK"),
        "{}",
        run.output
    );
}

#[tokio::test]
async fn s3_without_keys_uses_the_instance_role() {
    // moto serves the instance metadata API too: it stands in for IMDS here.
    let moto = Moto::start();
    moto.create_bucket(BUCKET).await;
    let base = [
        ("aws_endpoint", moto.endpoint()),
        ("aws_allow_http", "true"),
        ("aws_region", "us-east-1"),
    ];
    let mut with_imds = base.to_vec();
    with_imds.push(("aws_metadata_endpoint", moto.endpoint()));
    let run = run_child(&[], &with_imds);
    assert!(
        run.success && run.output.contains("CHILD-OK"),
        "{}",
        run.output
    );

    // With no metadata service answering, no credentials: the same store cannot write.
    let closed = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("port")
            .port()
    );
    let mut without = base.to_vec();
    without.push(("aws_metadata_endpoint", &closed));
    // Whether it fails at once or retries until the deadline, it never writes.
    let run = run_child(&[], &without);
    assert!(!run.success, "wrote without credentials: {}", run.output);
    assert!(!run.output.contains("CHILD-OK"), "{}", run.output);
}

/// An account SAS for Azurite's development account, as `az` or the portal would hand one out.
fn account_sas(permissions: &str) -> String {
    let (version, services, types, expiry, protocol) = (
        "2020-08-04",
        "b",
        "sco",
        "2099-01-01T00:00:00Z",
        "https,http",
    );
    let to_sign = format!(
        "{AZURITE_ACCOUNT}\n{permissions}\n{services}\n{types}\n\n{expiry}\n\n{protocol}\n{version}\n"
    );
    let key = BASE64_STANDARD.decode(AZURITE_KEY).expect("key");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(to_sign.as_bytes());
    let signature = BASE64_STANDARD.encode(mac.finalize().into_bytes());
    let query: String = reqwest::Url::parse_with_params(
        "http://sas/",
        [
            ("sv", version),
            ("ss", services),
            ("srt", types),
            ("sp", permissions),
            ("se", expiry),
            ("spr", protocol),
            ("sig", signature.as_str()),
        ],
    )
    .expect("query")
    .query()
    .unwrap_or_default()
    .to_owned();
    query
}

#[tokio::test]
async fn azure_takes_a_sas_url_and_never_prints_it() {
    let azurite = Azurite::start();
    azurite.create_container("sas").await;
    let no_key = options(&[
        ("azure_storage_account_name", AZURITE_ACCOUNT),
        ("azure_storage_endpoint", &azurite.account_endpoint()),
        ("azure_allow_http", "true"),
    ]);
    let sas = account_sas("rwdlac");
    let url = StoreUrl::new(format!("az://sas/prefix?{sas}"));
    let location = Location::parse(&url, &no_key).expect("store");
    let path = location.path("record.json").expect("key");
    location
        .put_json(&path, &json!({ "through": "sas" }))
        .await
        .expect("written with the SAS");
    let read: Option<Value> = location.get_json(&path).await.expect("read");
    assert_eq!(read, Some(json!({ "through": "sas" })));

    // A SAS that does not allow writing: refused, and neither the token nor its signature shows.
    let read_only = account_sas("rl");
    let signature = reqwest::Url::parse(&format!("http://sas/?{read_only}"))
        .expect("query")
        .query_pairs()
        .find(|(key, _)| key == "sig")
        .map(|(_, value)| value.into_owned())
        .expect("sig");
    let url = StoreUrl::new(format!("az://sas/prefix?{read_only}"));
    let location = Location::parse(&url, &no_key).expect("store");
    let error = location
        .put_json(&location.path("refused.json").expect("key"), &json!({}))
        .await
        .expect_err("a read-only SAS cannot write");
    let printed = format!("{error} / {error:?} / {url} / {url:?}");
    for secret in [signature.as_str(), &read_only, &url_encoded(&signature)] {
        assert!(!printed.contains(secret), "{printed}");
    }
}

fn url_encoded(value: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", [("v", value)])
        .ok()
        .and_then(|url| {
            url.query()
                .map(|query| query.trim_start_matches("v=").to_owned())
        })
        .unwrap_or_default()
}
