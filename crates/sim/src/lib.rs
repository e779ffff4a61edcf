//! `zoom-relay sim`: a Zoom stand-in faithful enough to run the whole system against in tests,
//! demos, benchmarks and staging.
//!
//! - [`routes`]: OAuth (`/oauth/token`), the recordings and users API under `/v2`, download URLs
//!   (`/rec/download/{id}`, `/rec/webhook_download/{id}`) that redirect to a signed file server
//!   (`/files/{id}`, with `Range`), and the `/_sim/*` control endpoints (create meetings, import
//!   real event bodies, release a later transcript, set faults, read what was asked).
//! - [`websocket`]: Zoom's WebSocket event delivery (`/ws`), with `/_sim/websocket/*` to emit
//!   events, close sockets, silence them or take the endpoint down.
//! - [`metadata`]: a past meeting's participants, a webinar's panelists, attendees and Q&A, the
//!   AI Companion summary, each refused without its scope as Zoom does (code 4711).
//! - [`oauth`]: user-managed OAuth (authorization code, refresh tokens rotated on every use).
//! - [`scenario`]: meetings with segments, views, transcripts, participant audio, and the events
//!   Zoom sends about them (JWT-shaped `download_token`, UUIDs with `/` and `+`, hostile topics).
//! - [`content`]: deterministic file content of any size, generated on the fly.
//! - [`send`]: signs events exactly as Zoom does and posts them.
//! - [`state`]: accounts, tokens, meetings, faults and the request log.
//! - [`settings`]: the `[sim]` section.
//!
//! It depends on the Zoom crate only: it knows nothing of the relay it stands in front of.

pub mod content;
pub mod metadata;
pub mod oauth;
pub mod routes;
pub mod scenario;
pub mod send;
pub mod settings;
pub mod state;
pub mod websocket;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::dev::Service;
use actix_web::{App, HttpServer, web};
use rand::Rng;
use tokio_util::sync::CancellationToken;

pub use scenario::{CreatedMeeting, FixtureSpec, ImportedFixture, MeetingSpec, ServedFile};
pub use settings::SimSettings;
pub use state::{ApiFaults, FileFaults, SimAccount, SimState};

pub struct Simulator {
    server: actix_web::dev::Server,
    port: u16,
    state: Arc<SimState>,
}

impl Simulator {
    /// Binds `sim.listen` and serves `accounts`.
    pub fn build(settings: &SimSettings, accounts: Vec<SimAccount>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen)?;
        let address = listener.local_addr()?;
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"))
            .trim_end_matches('/')
            .to_owned();
        let state = Arc::new(SimState {
            accounts,
            public_url,
            token_ttl: settings.token_ttl,
            page_token_ttl: settings.page_token_ttl,
            download_token_ttl: settings.download_token_ttl,
            page_size_limit: settings.page_size_limit.max(1),
            url_secret: hex::encode(rand::rng().random::<[u8; 16]>()),
            inner: Mutex::new(state::Mutable {
                tokens: HashMap::new(),
                ..Default::default()
            }),
        });
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            let log = data.clone();
            App::new()
                .app_data(data.clone())
                .wrap_fn(move |request, service| {
                    let method = request.method().to_string();
                    let path = request.path().to_owned();
                    let query = request.query_string().to_owned();
                    let range = request
                        .headers()
                        .get(actix_web::http::header::RANGE)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    let log = log.clone();
                    let response = service.call(request);
                    async move {
                        let response = response.await?;
                        if !path.starts_with("/_sim/") {
                            let status = response.status().as_u16();
                            log.with(|inner| {
                                inner.requests.push(state::RecordedRequest {
                                    method,
                                    path,
                                    query,
                                    range,
                                    status,
                                })
                            });
                        }
                        Ok(response)
                    }
                })
                .configure(routes::configure)
        })
        .disable_signals()
        .shutdown_timeout(2)
        .listen(listener)?
        .run();
        Ok(Self {
            server,
            port: address.port(),
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn base_url(&self) -> String {
        self.state.public_url.clone()
    }

    pub fn state(&self) -> Arc<SimState> {
        self.state.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let handle = self.server.handle();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        tracing::info!(url = %self.state.public_url, "Zoom simulator listening");
        self.server.await
    }
}
