//! Object-store servers for tests: moto's S3 server and Azurite's Blob server, each started by the
//! test on a free port of 127.0.0.1 with a temp directory of its own, and stopped on drop.
//!
//! Shared by `crates/storage/tests/conformance` and `tests/it/stores.rs` (which includes this
//! file with `#[path]`): it uses only what both have (std, tempfile, reqwest, hmac, sha2, base64,
//! chrono, secrecy).
//!
//! The executables come from `scripts/stores.sh` (`ensure_stores`, run by `scripts/setup.sh`):
//! `$MOTO_SERVER` / `$AZURITE_BLOB` when set, else where that script installs them, under
//! `${XDG_CACHE_HOME:-$HOME/.cache}/zoom-relay/`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;

/// Where `scripts/stores.sh` installs the servers.
fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("zoom-relay")
}

fn executable(variable: &str, installed: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(installed));
    assert!(
        path.is_file(),
        "{what} not found at {}: run scripts/setup.sh (or `. scripts/stores.sh; ensure_stores`), \
         or point {variable} at it",
        path.display()
    );
    path
}

pub fn moto_executable() -> PathBuf {
    executable("MOTO_SERVER", "moto/bin/moto_server", "moto's S3 server")
}

pub fn azurite_executable() -> PathBuf {
    executable(
        "AZURITE_BLOB",
        "azurite/node_modules/.bin/azurite-blob",
        "Azurite's Blob server",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

/// A server process on 127.0.0.1, killed (and reaped) on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub endpoint: String,
    log: PathBuf,
    /// The server's working and data directory, removed after it stops.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `program` with `args(port, dir)` until its port accepts connections. A port taken
    /// between choosing and binding it is retried on another.
    fn start(
        program: &std::path::Path,
        args: impl Fn(u16, &std::path::Path) -> Vec<String>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("server dir");
            let port = free_port();
            let log = dir.path().join("server.log");
            let out = std::fs::File::create(&log).expect("server log");
            let err = out.try_clone().expect("server log");
            let mut command = Command::new(program);
            command
                .args(args(port, dir.path()))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            for (name, value) in env {
                command.env(name, value);
            }
            let mut child = command
                .spawn()
                .unwrap_or_else(|error| panic!("{} does not start: {error}", program.display()));
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                // A connection only: a request would count towards moto's unauthenticated ones.
                if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                    return Self {
                        child,
                        port,
                        endpoint: format!("http://127.0.0.1:{port}"),
                        log,
                        dir,
                    };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    failures.push(format!(
                        "exited with {status}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ));
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push("did not listen within 60 s".into());
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("{} did not start: {failures:?}", program.display());
    }

    /// What the server printed, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Credentials moto accepts from anyone while it checks none.
pub const MOTO_KEY_ID: &str = "moto-test-key";
pub const MOTO_SECRET: &str = "moto-test-secret";
pub const MOTO_REGION: &str = "us-east-1";

/// moto's S3 server (every AWS service moto has, on one port).
pub struct Moto {
    pub server: Server,
    http: reqwest::Client,
}

/// Keys of a user of an authenticating moto.
pub struct MotoUser {
    pub key_id: String,
    pub secret: String,
}

impl Moto {
    /// A moto that checks no signature: any keys pass.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(env: &[(&str, &str)]) -> Self {
        let server = Server::start(
            &moto_executable(),
            |port, _| {
                vec![
                    "-H".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.to_string(),
                ]
            },
            env,
        );
        Self {
            server,
            http: reqwest::Client::new(),
        }
    }

    /// A moto that checks every request's signature against its IAM users, after creating one
    /// user with full rights and the bucket `bucket` (moto lets a set number of requests through
    /// unauthenticated: exactly those).
    pub async fn start_authenticating(bucket: &str) -> (Self, MotoUser) {
        let moto = Self::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "4")]);
        // An Authorization header only routes the request to IAM; it is not checked yet.
        let iam = |form: Vec<(&'static str, String)>| {
            moto.http
                .post(&moto.server.endpoint)
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=bootstrap/20240101/us-east-1/iam/aws4_request, \
                     SignedHeaders=host, Signature=0",
                )
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_body(&form))
                .send()
        };
        let version = || ("Version", "2010-05-08".to_owned());
        let user = || ("UserName", "relay".to_owned());
        let created = iam(vec![("Action", "CreateUser".into()), user(), version()])
            .await
            .expect("CreateUser");
        assert!(created.status().is_success(), "{:?}", created.text().await);
        let key = iam(vec![
            ("Action", "CreateAccessKey".into()),
            user(),
            version(),
        ])
        .await
        .expect("CreateAccessKey")
        .text()
        .await
        .expect("CreateAccessKey body");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        let allowed = iam(vec![
            ("Action", "PutUserPolicy".into()),
            user(),
            ("PolicyName", "everything".into()),
            ("PolicyDocument", policy.into()),
            version(),
        ])
        .await
        .expect("PutUserPolicy");
        assert!(allowed.status().is_success(), "{:?}", allowed.text().await);
        moto.create_bucket(bucket).await;
        let user = MotoUser {
            key_id: xml_values(&key, "AccessKeyId").remove(0),
            secret: xml_values(&key, "SecretAccessKey").remove(0),
        };
        (moto, user)
    }

    pub fn endpoint(&self) -> &str {
        &self.server.endpoint
    }

    pub async fn create_bucket(&self, bucket: &str) {
        let response = self
            .http
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .expect("CreateBucket");
        assert!(
            response.status().is_success(),
            "CreateBucket {bucket}: {:?}",
            response.text().await
        );
    }

    /// The options zoom-relay is given for a bucket on this server, as object_store names them.
    pub fn options(&self) -> BTreeMap<String, SecretString> {
        [
            ("aws_endpoint", self.endpoint()),
            ("aws_allow_http", "true"),
            ("aws_region", MOTO_REGION),
            ("aws_access_key_id", MOTO_KEY_ID),
            ("aws_secret_access_key", MOTO_SECRET),
            ("aws_virtual_hosted_style_request", "false"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), SecretString::from(value)))
        .collect()
    }

    /// Keys of the multipart uploads started and neither completed nor aborted in `bucket`
    /// (ListMultipartUploads, unsigned: this moto checks no signature).
    pub async fn pending_uploads(&self, bucket: &str) -> Vec<String> {
        let body = self
            .http
            .get(format!("{}/{bucket}?uploads", self.endpoint()))
            .send()
            .await
            .expect("ListMultipartUploads")
            .text()
            .await
            .expect("ListMultipartUploads body");
        assert!(body.contains("ListMultipartUploadsResult"), "{body}");
        xml_values(&body, "Key")
    }

    /// Every key in `bucket` under `prefix`, as S3 itself lists them (ListObjectsV2, unsigned).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = self
            .http
            .get(format!("{}/{bucket}", self.endpoint()))
            .query(&[("list-type", "2"), ("prefix", prefix)])
            .send()
            .await
            .expect("ListObjectsV2")
            .text()
            .await
            .expect("ListObjectsV2 body");
        assert!(body.contains("ListBucketResult"), "{body}");
        xml_values(&body, "Key")
    }
}

/// `application/x-www-form-urlencoded`, as reqwest's `form` would (a feature not enabled here).
fn form_body(form: &[(&str, String)]) -> String {
    reqwest::Url::parse_with_params("http://form/", form)
        .ok()
        .and_then(|url| url.query().map(str::to_owned))
        .unwrap_or_default()
}

/// The text of every `<tag>` element, unescaped.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        values.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end + close.len()..];
    }
    values
}

/// Azurite's Blob service, with its well-known development account.
pub struct Azurite {
    pub server: Server,
    http: reqwest::Client,
}

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key (not a secret).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const AZURE_API_VERSION: &str = "2021-08-06";

impl Azurite {
    pub fn start() -> Self {
        let server = Server::start(
            &azurite_executable(),
            |port, dir| {
                vec![
                    "--blobHost".into(),
                    "127.0.0.1".into(),
                    "--blobPort".into(),
                    port.to_string(),
                    "--location".into(),
                    dir.display().to_string(),
                    "--silent".into(),
                    // No phoning home from a test, and object_store's API version may be newer.
                    "--disableTelemetry".into(),
                    "--skipApiVersionCheck".into(),
                ]
            },
            &[],
        );
        Self {
            server,
            http: reqwest::Client::new(),
        }
    }

    /// The account's endpoint, path-style as Azurite serves it.
    pub fn account_endpoint(&self) -> String {
        format!("{}/{AZURITE_ACCOUNT}", self.server.endpoint)
    }

    /// The options zoom-relay is given for a container on this server, as object_store names them.
    pub fn options(&self) -> BTreeMap<String, SecretString> {
        [
            ("azure_storage_account_name", AZURITE_ACCOUNT.to_owned()),
            ("azure_storage_account_key", AZURITE_KEY.to_owned()),
            ("azure_storage_endpoint", self.account_endpoint()),
            ("azure_allow_http", "true".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), SecretString::from(value)))
        .collect()
    }

    /// A request signed with the account key (Shared Key), for what object_store does not do.
    async fn signed(
        &self,
        method: reqwest::Method,
        resource_path: &str,
        query: &[(&str, &str)],
    ) -> reqwest::Response {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut sorted: Vec<(String, &str)> = query
            .iter()
            .map(|(key, value)| (key.to_ascii_lowercase(), *value))
            .collect();
        sorted.sort();
        let mut resource = format!("/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{resource_path}");
        for (key, value) in &sorted {
            resource.push_str(&format!("\n{key}:{value}"));
        }
        let to_sign = format!(
            "{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{AZURE_API_VERSION}\n{resource}"
        );
        let key = BASE64_STANDARD.decode(AZURITE_KEY).expect("account key");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(to_sign.as_bytes());
        let signature = BASE64_STANDARD.encode(mac.finalize().into_bytes());
        self.http
            .request(
                method,
                format!("{}/{resource_path}", self.account_endpoint()),
            )
            .query(query)
            .header("x-ms-date", date)
            .header("x-ms-version", AZURE_API_VERSION)
            .header(
                "authorization",
                format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
            )
            .header("content-length", "0")
            .send()
            .await
            .expect("Azurite")
    }

    pub async fn create_container(&self, container: &str) {
        let response = self
            .signed(reqwest::Method::PUT, container, &[("restype", "container")])
            .await;
        assert!(
            response.status().is_success(),
            "Create Container {container}: {:?}",
            response.text().await
        );
    }

    /// Every blob name in `container`, including blobs that have only uncommitted blocks (List
    /// Blobs with `include=uncommittedblobs`).
    pub async fn blobs_including_uncommitted(&self, container: &str) -> Vec<String> {
        let response = self
            .signed(
                reqwest::Method::GET,
                container,
                &[
                    ("restype", "container"),
                    ("comp", "list"),
                    ("include", "uncommittedblobs"),
                ],
            )
            .await;
        let status = response.status();
        let body = response.text().await.expect("List Blobs body");
        assert!(status.is_success(), "List Blobs: {body}");
        xml_values(&body, "Name")
    }

    /// The uncommitted blocks of `blob` (a name of plain characters) in `container` (Get Block
    /// List): what an unfinished block upload leaves, invisible to every read and listing.
    pub async fn uncommitted_blocks(&self, container: &str, blob: &str) -> usize {
        let response = self
            .signed(
                reqwest::Method::GET,
                &format!("{container}/{blob}"),
                &[("comp", "blocklist"), ("blocklisttype", "uncommitted")],
            )
            .await;
        let status = response.status();
        let body = response.text().await.expect("Get Block List body");
        if status == reqwest::StatusCode::NOT_FOUND {
            return 0;
        }
        assert!(status.is_success(), "Get Block List: {status} {body}");
        xml_values(&body, "Name").len()
    }
}
