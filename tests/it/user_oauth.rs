//! A user-managed OAuth app against the simulator, whose refresh tokens die on first use as
//! Zoom's do: the chain of rotated tokens lives in staging and survives restarts, store
//! outages and two processes refreshing at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use relay_app::Settings;
use relay_core::shutdown::CancellationToken;
use relay_pipeline::Staging;
use relay_pipeline::oauth::StagingGrantStore;
use relay_pipeline::settings::{AccountSettings, UserOAuthSettings};
use relay_storage::StoreUrl;
use secrecy::SecretString;
use serde_json::Value;
use zoom_api::ZoomClient;
use zoom_api::client::ZoomError;
use zoom_api::client::grant::{GrantLock, GrantStore, GrantStoreError, StoredGrant};
use zoom_sim::{ApiFaults, Simulator};

use crate::helpers::*;
use crate::zoom_client::point_at_simulator;

/// The simulator, an `acme` account switched to a user-managed app, and a staging directory
/// that every "process" (client) of the test shares.
struct UserApp {
    base: String,
    http: reqwest::Client,
    settings: Settings,
    staging: Staging,
    _staging_dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for UserApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl UserApp {
    async fn start() -> Self {
        init_test_log();
        let mut settings = test_settings(&unique_namespace(), &TestOptions::default());
        settings.sim.listen = "127.0.0.1:0".parse().expect("address");
        let simulator = Simulator::build(&settings.sim, relay_app::sim_accounts(&settings))
            .expect("simulator binds");
        let base = simulator.base_url();
        let shutdown = CancellationToken::new();
        tokio::spawn(simulator.run(shutdown.clone()));
        point_at_simulator(&mut settings, &base);
        let staging_dir = tempfile::tempdir().expect("staging dir");
        let staging = Staging::new(
            &StoreUrl::new(format!("file://{}", staging_dir.path().display())),
            &Default::default(),
        )
        .expect("staging");
        let mut app = Self {
            base,
            http: reqwest::Client::new(),
            settings,
            staging,
            _staging_dir: staging_dir,
            shutdown,
        };
        let refresh_token = app.authorize().await;
        // The sim's app credentials now belong to a user-managed app.
        let account = &mut app.settings.accounts[0];
        account.user_oauth = Some(UserOAuthSettings {
            client_id: std::mem::take(&mut account.client_id),
            client_secret: std::mem::replace(&mut account.client_secret, SecretString::from("")),
            refresh_token: SecretString::from(refresh_token),
        });
        relay_pipeline::settings::validate_accounts(&app.settings.accounts)
            .expect("a user-managed account is valid");
        app
    }

    /// What an admin does once: consent, then exchange the code for the first refresh token.
    async fn authorize(&self) -> String {
        let code: Value = self
            .http
            .post(format!("{}/_sim/oauth/authorize", self.base))
            .json(&serde_json::json!({"account": "acme"}))
            .send()
            .await
            .expect("simulator")
            .json()
            .await
            .expect("code");
        let account = &self.settings.accounts[0];
        let (client_id, client_secret) = match &account.user_oauth {
            Some(app) => (app.client_id.clone(), app.client_secret.clone()),
            None => (account.client_id.clone(), account.client_secret.clone()),
        };
        let answer: Value = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(
                client_id,
                Some(secrecy::ExposeSecret::expose_secret(&client_secret)),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=authorization_code&code={}&redirect_uri=https%3A%2F%2Fexample.com",
                code["code"].as_str().expect("code")
            ))
            .send()
            .await
            .expect("simulator")
            .json()
            .await
            .expect("token answer");
        answer["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned()
    }

    /// One process's client: its own token cache, the shared staging.
    fn process(&self) -> Arc<ZoomClient> {
        self.process_with(Arc::new(StagingGrantStore::new(
            self.staging.clone(),
            "acme",
        )))
    }

    fn process_with(&self, store: Arc<dyn GrantStore>) -> Arc<ZoomClient> {
        self.process_configured(&self.settings.accounts[0], store)
    }

    fn process_configured(
        &self,
        account: &AccountSettings,
        store: Arc<dyn GrantStore>,
    ) -> Arc<ZoomClient> {
        let mut credentials = account.credentials();
        credentials.grant_store = Some(store);
        ZoomClient::new(&self.settings.zoom, &account.name, credentials).expect("client")
    }

    /// Every access token issued so far stops working: the next call renews.
    async fn revoke_access_tokens(&self) {
        let response = self
            .http
            .post(format!("{}/_sim/faults", self.base))
            .json(&ApiFaults {
                revoke_tokens: true,
                ..ApiFaults::default()
            })
            .send()
            .await
            .expect("faults set");
        assert_eq!(response.status(), 204);
    }

    /// `(refreshes answered, refreshes refused)` by the simulated Zoom.
    async fn refreshes(&self) -> (u64, u64) {
        let counts: Value = self
            .http
            .get(format!("{}/_sim/oauth", self.base))
            .send()
            .await
            .expect("simulator")
            .json()
            .await
            .expect("counts");
        (
            counts["refreshes"].as_u64().expect("refreshes"),
            counts["refused"].as_u64().expect("refused"),
        )
    }
}

async fn works(client: &ZoomClient) -> Result<(), ZoomError> {
    client
        .users(zoom_api::client::UserStatus::Active)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn the_rotated_refresh_token_survives_a_restart() {
    let app = UserApp::start().await;
    let first = app.process();
    works(&first)
        .await
        .expect("the configured token starts the chain");
    app.revoke_access_tokens().await;
    works(&first).await.expect("renewed with the rotated token");
    assert_eq!(app.refreshes().await, (2, 0));
    drop(first);

    // Restarted with the same configuration: the configured token is dead at Zoom by now, so
    // the process must carry on from the chain in staging, never send it again.
    let restarted = app.process();
    app.revoke_access_tokens().await;
    works(&restarted).await.expect("carries on from staging");
    assert_eq!(app.refreshes().await, (3, 0), "no dead token was ever sent");
}

#[tokio::test]
async fn a_fresh_stored_access_token_is_shared_instead_of_refreshing_again() {
    let app = UserApp::start().await;
    works(&app.process()).await.expect("first process");
    works(&app.process()).await.expect("second process");
    assert_eq!(
        app.refreshes().await,
        (1, 0),
        "the second process used the stored access token"
    );
}

#[tokio::test]
async fn two_processes_refreshing_at_once_do_not_invalidate_each_other() {
    let app = UserApp::start().await;
    let processes = [app.process(), app.process(), app.process()];
    for round in 0..3 {
        app.revoke_access_tokens().await;
        let calls = processes.iter().flat_map(|client| {
            (0..4).map(move |_| {
                let client = client.clone();
                async move { works(&client).await }
            })
        });
        for result in futures_util::future::join_all(calls).await {
            result.unwrap_or_else(|error| panic!("round {round}: {error}"));
        }
    }
    let (answered, refused) = app.refreshes().await;
    assert_eq!(refused, 0, "no process sent a token another had used");
    assert!(
        answered <= 3,
        "one refresh per renewal, not one per process: {answered}"
    );
}

/// A grant store whose writes can be made to fail, like a staging store that is down.
struct FlakyStore {
    inner: StagingGrantStore,
    failing: AtomicBool,
}

impl GrantStore for FlakyStore {
    fn latest(&self) -> BoxFuture<'_, Result<Option<StoredGrant>, GrantStoreError>> {
        self.inner.latest()
    }

    fn create<'a>(
        &'a self,
        grant: &'a StoredGrant,
    ) -> BoxFuture<'a, Result<bool, GrantStoreError>> {
        if self.failing.load(Ordering::SeqCst) {
            return Box::pin(async { Err(GrantStoreError("store down".into())) });
        }
        self.inner.create(grant)
    }

    fn lock(&self, ttl: Duration) -> BoxFuture<'_, Result<Option<GrantLock>, GrantStoreError>> {
        self.inner.lock(ttl)
    }
}

#[tokio::test]
async fn a_rotated_token_the_store_refused_is_kept_and_stored_when_the_store_is_back() {
    let app = UserApp::start().await;
    let store = Arc::new(FlakyStore {
        inner: StagingGrantStore::new(app.staging.clone(), "acme"),
        failing: AtomicBool::new(false),
    });
    let process = app.process_with(store.clone());
    works(&process).await.expect("seeded");

    store.failing.store(true, Ordering::SeqCst);
    app.revoke_access_tokens().await;
    works(&process)
        .await
        .expect("Zoom rotated the token: the process goes on with it while the store is down");

    store.failing.store(false, Ordering::SeqCst);
    app.revoke_access_tokens().await;
    works(&process).await.expect("renewed from the kept token");

    // A restart finds the chain complete in staging.
    let restarted = app.process();
    app.revoke_access_tokens().await;
    works(&restarted).await.expect("restart carries on");
    assert_eq!(app.refreshes().await.1, 0, "no dead token was ever sent");
}

#[tokio::test]
async fn a_rotation_lost_in_a_crash_is_reported_and_a_new_authorization_takes_over() {
    let mut app = UserApp::start().await;
    // The crashed process's refresh lock expires after twice this plus 5 s.
    app.settings.zoom.request_timeout = Duration::from_secs(1);
    let store = Arc::new(FlakyStore {
        inner: StagingGrantStore::new(app.staging.clone(), "acme"),
        failing: AtomicBool::new(false),
    });
    let crashing = app.process_with(store.clone());
    works(&crashing).await.expect("seeded");
    // Zoom rotates, the store never takes the new token, and the process dies with it.
    store.failing.store(true, Ordering::SeqCst);
    app.revoke_access_tokens().await;
    works(&crashing).await.expect("rotated");
    drop(crashing);

    let restarted = app.process();
    app.revoke_access_tokens().await;
    let error = works(&restarted)
        .await
        .expect_err("the stored token is dead");
    assert!(
        error.to_string().contains("user_oauth.refresh_token"),
        "says what to do: {error}"
    );

    // The admin authorizes the app again and configures the new token: it replaces the chain.
    let old_configuration = app.settings.accounts[0].clone();
    let renewed = app.authorize().await;
    if let Some(user) = app.settings.accounts[0].user_oauth.as_mut() {
        user.refresh_token = SecretString::from(renewed);
    }
    let reauthorized = app.process();
    works(&reauthorized)
        .await
        .expect("the new authorization takes over");
    let refused = app.refreshes().await.1;
    // A replica still configured with the old token follows the new chain, not its own.
    let stale = app.process_configured(
        &old_configuration,
        Arc::new(StagingGrantStore::new(app.staging.clone(), "acme")),
    );
    app.revoke_access_tokens().await;
    works(&stale).await.expect("follows the new chain");
    assert_eq!(
        app.refreshes().await.1,
        refused,
        "the old token was not sent again"
    );
}

#[test]
fn both_kinds_of_credentials_are_refused_naming_the_keys() {
    let mut settings = test_settings("unused", &TestOptions::default());
    settings.accounts[0].user_oauth = Some(UserOAuthSettings {
        client_id: "user-app".into(),
        client_secret: SecretString::from("user-secret"),
        refresh_token: SecretString::from("refresh"),
    });
    let error =
        relay_pipeline::settings::validate_accounts(&settings.accounts).expect_err("refused");
    assert_eq!(error.key, "accounts[0].user_oauth");
    for key in ["accounts[0].client_id", "accounts[0].client_secret"] {
        assert!(error.reason.contains(key), "{error}");
    }
    assert!(!error.to_string().contains("user-secret"));
}
