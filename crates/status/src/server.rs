//! `zoom-relay status` as a component: the stream readers, the queue poller, and the listener
//! serving the page (`/`, `/meetings/{uuid}`) and the JSON API (`/api/…`).
//!
//! Every request needs a credential when one is configured (`status.bearer_token`, or
//! `status.username` and `status.password` for browsers); one is required to listen beyond
//! loopback. Errors are JSON with a stable `error` code (HTML on the page's routes).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use percent_encoding::percent_decode_str;
use relay_core::broker::Management;
use relay_core::settings::{AmqpSettings, InvalidSetting};
use relay_core::status::State;
use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::ErrorBody;
use crate::fold::Filter;
use crate::page;
use crate::reader::StreamReader;
use crate::settings::StatusSettings;
use crate::state::StatusState;

/// Default and largest `limit` of `/api/meetings`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Exposed(#[from] InvalidSetting),
    #[error("binding the status listener on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// The credentials a request may carry, as digests (compared in constant time).
#[derive(Clone, Default)]
struct Credentials {
    bearer: Option<[u8; 32]>,
    basic: Option<[u8; 32]>,
}

fn digest(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Credentials {
    fn new(settings: &StatusSettings) -> Self {
        Self {
            bearer: settings
                .bearer_token
                .as_ref()
                .map(|token| digest(token.expose_secret().as_bytes())),
            basic: match (&settings.username, &settings.password) {
                (Some(user), Some(password)) => Some(digest(
                    format!("{user}:{}", password.expose_secret()).as_bytes(),
                )),
                _ => None,
            },
        }
    }

    fn required(&self) -> bool {
        self.bearer.is_some() || self.basic.is_some()
    }

    fn admits(&self, request: &HttpRequest) -> bool {
        if !self.required() {
            return true;
        }
        let Some(value) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
        else {
            return false;
        };
        let (scheme, credential) = value.trim().split_once(' ').unwrap_or((value, ""));
        let credential = credential.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self
                .bearer
                .as_ref()
                .is_some_and(|expected| same(expected, &digest(credential.as_bytes())));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credential) else {
                return false;
            };
            return self
                .basic
                .as_ref()
                .is_some_and(|expected| same(expected, &digest(&decoded)));
        }
        false
    }
}

struct Shared {
    state: StatusState,
    credentials: Credentials,
}

/// The status component, bound and ready to run.
pub struct StatusServer {
    server: actix_web::dev::Server,
    port: u16,
    state: StatusState,
    amqp: AmqpSettings,
    management: Option<Management>,
    poll: Duration,
}

impl StatusServer {
    /// Binds `status.listen`; refuses a non-loopback address without a credential. The readers
    /// connect with `amqp` on their own connection; queue figures come from `management`.
    pub fn build(
        settings: &StatusSettings,
        state: StatusState,
        amqp: &AmqpSettings,
        management: Option<Management>,
    ) -> Result<Self, StartError> {
        settings.check_exposure()?;
        let bind = |source| StartError::Bind {
            address: settings.listen,
            source,
        };
        let listener = TcpListener::bind(settings.listen).map_err(bind)?;
        let port = listener.local_addr().map_err(bind)?.port();
        let shared = web::Data::new(Shared {
            state: state.clone(),
            credentials: Credentials::new(settings),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .wrap(
                    // Topics are hostile input and the page holds personal data: no script,
                    // no framing, nothing cached or leaked through a Referer.
                    DefaultHeaders::new()
                        .add((
                            header::CONTENT_SECURITY_POLICY,
                            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                             frame-ancestors 'none'; base-uri 'none'",
                        ))
                        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                        .add((header::REFERRER_POLICY, "no-referrer"))
                        .add((header::X_FRAME_OPTIONS, "DENY"))
                        .add((header::CACHE_CONTROL, "no-store")),
                )
                .route("/", web::get().to(index))
                .route("/meetings/{uuid:.*}", web::get().to(meeting_page))
                .route("/api/summary", web::get().to(summary))
                .route("/api/meetings", web::get().to(meetings))
                .route("/api/meetings/{uuid:.*}", web::get().to(meeting))
                .route("/api/accounts", web::get().to(accounts))
                .route("/api/queues", web::get().to(queues))
                .default_service(web::to(not_found))
        })
        .disable_signals()
        .workers(1)
        .shutdown_timeout(2)
        .listen(listener)
        .map_err(bind)?
        .run();
        Ok(Self {
            server,
            port,
            state,
            amqp: amqp.clone(),
            management,
            poll: settings.queue_poll_interval,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &StatusState {
        &self.state
    }

    /// Reads the streams, polls the queues and serves until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let reader = StreamReader::new(&self.amqp, self.state.clone());
        let readers = tokio::spawn(reader.run(shutdown.clone()));
        let poller = tokio::spawn(poll_queues(
            self.management,
            self.state.clone(),
            self.poll,
            shutdown.clone(),
        ));
        let handle = self.server.handle();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            handle.stop(true).await;
        });
        info!(port = self.port, "status page and API listening");
        let served = self.server.await;
        shutdown.cancel();
        let _ = readers.await;
        let _ = poller.await;
        served
    }
}

/// Looks at every stage queue's figures every `interval` until `shutdown`.
pub async fn poll_queues(
    management: Option<Management>,
    state: StatusState,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let Some(management) = management else {
        state.set_queues(Err("not configured (set amqp.management_url)".to_owned()));
        return;
    };
    let prefix = state
        .topology()
        .stage_queue(relay_core::broker::StageName::Plan);
    let prefix = prefix.trim_end_matches("plan").to_owned();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let looked = management
            .queues(&prefix)
            .await
            .map_err(|error| error.to_string());
        if let Err(error) = &looked {
            warn!(%error, "queue figures unavailable");
        }
        state.set_queues(looked);
    }
}

/// An error answer: JSON with a stable code on the API, a page on the page's routes.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this status server needs credentials: a bearer token or basic authentication",
        )
    }

    fn json(self, shared: &Shared) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED && shared.credentials.basic.is_some() {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"zoom-relay status\", charset=\"UTF-8\""),
            ));
        }
        response.json(ErrorBody {
            error: self.code.to_owned(),
            message: self.message,
        })
    }

    fn page(self, shared: &Shared) -> HttpResponse {
        if self.status == StatusCode::UNAUTHORIZED {
            return self.json(shared);
        }
        HttpResponse::build(self.status)
            .content_type("text/html; charset=utf-8")
            .body(page::error(self.code, &self.message, Utc::now()))
    }
}

fn json<T: Serialize>(value: &T) -> HttpResponse {
    HttpResponse::Ok().json(value)
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// The query string's parameters (lossy: a malformed escape is kept as text, never an error).
fn parameters(request: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(request.query_string().as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

fn parameter<'a>(parameters: &'a [(String, String)], name: &str) -> Option<&'a str> {
    parameters
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// `since`: an RFC 3339 time, a date (UTC midnight), or a duration back from now (`24h`).
fn parse_since(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|at| at.and_utc());
    }
    let back = humantime_serde::re::humantime::parse_duration(text).ok()?;
    Some(now - chrono::TimeDelta::from_std(back).ok()?)
}

fn filter(parameters: &[(String, String)], now: DateTime<Utc>) -> Result<Filter, Failure> {
    let state = match parameter(parameters, "state") {
        Some(text) => Some(State::parse(text).ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid_state",
                format!(
                    "state must be one of {}",
                    State::ALL.map(State::as_str).join(", ")
                ),
            )
        })?),
        None => None,
    };
    let since = match parameter(parameters, "since") {
        Some(text) => Some(parse_since(text, now).ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid_since",
                "since must be an RFC 3339 time, a date (YYYY-MM-DD) or a duration (24h)",
            )
        })?),
        None => None,
    };
    let limit = match parameter(parameters, "limit") {
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_limit",
                    format!("limit must be a number from 1 to {MAX_LIMIT}"),
                )
            })?,
        None => DEFAULT_LIMIT,
    };
    Ok(Filter {
        account: parameter(parameters, "account").map(str::to_owned),
        state,
        query: parameter(parameters, "q").map(str::to_owned),
        since,
        limit,
    })
}

/// The uuid in the path after `prefix`, percent-decoded once: uuids hold `/` and `+`, so
/// clients send them encoded (`%2F`, `%2B`); an unencoded `/` is accepted too.
fn uuid_from_path(request: &HttpRequest, prefix: &str) -> Result<String, Failure> {
    let raw = request
        .uri()
        .path()
        .strip_prefix(prefix)
        .unwrap_or_default();
    let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_uuid",
            "the meeting uuid is not valid percent-encoded UTF-8",
        )
    })?;
    if decoded.is_empty() {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "meeting_not_found",
            "no meeting uuid in the path",
        ));
    }
    Ok(decoded.into_owned())
}

fn find_meeting(
    shared: &Shared,
    request: &HttpRequest,
    prefix: &str,
) -> Result<crate::api::MeetingDetail, Failure> {
    let uuid = uuid_from_path(request, prefix)?;
    let parameters = parameters(request);
    let account = parameter(&parameters, "account");
    shared.state.read_view(|view| {
        let found = view.find(&uuid, account);
        match found.as_slice() {
            [meeting] => Ok(view.detail(meeting)),
            [] => Err(Failure::new(
                StatusCode::NOT_FOUND,
                "meeting_not_found",
                format!(
                    "no meeting {uuid}{} in the status stream (older than its retention, or never received)",
                    account.map(|account| format!(" of account {account}")).unwrap_or_default()
                ),
            )),
            several => Err(Failure::new(
                StatusCode::CONFLICT,
                "ambiguous_meeting",
                format!(
                    "meeting {uuid} is known in several accounts ({}): add ?account=NAME",
                    several
                        .iter()
                        .map(|meeting| meeting.account.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    })
}

async fn index(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if !shared.credentials.admits(&request) {
        return Failure::unauthorized().page(&shared);
    }
    let now = Utc::now();
    let parameters = parameters(&request);
    let filter = match filter(&parameters, now) {
        Ok(filter) => filter,
        Err(failure) => return failure.page(&shared),
    };
    let search = page::Search {
        query: parameter(&parameters, "q").unwrap_or_default().to_owned(),
        account: parameter(&parameters, "account")
            .unwrap_or_default()
            .to_owned(),
        state: parameter(&parameters, "state")
            .unwrap_or_default()
            .to_owned(),
    };
    let summary = shared.state.summary(now);
    let meetings = shared.state.meetings(&filter);
    html(page::index(&summary, &meetings, &search, now))
}

async fn meeting_page(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if !shared.credentials.admits(&request) {
        return Failure::unauthorized().page(&shared);
    }
    match find_meeting(&shared, &request, "/meetings/") {
        Ok(detail) => html(page::meeting(&detail, Utc::now())),
        Err(failure) => failure.page(&shared),
    }
}

async fn summary(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if !shared.credentials.admits(&request) {
        return Failure::unauthorized().json(&shared);
    }
    json(&shared.state.summary(Utc::now()))
}

async fn meetings(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if !shared.credentials.admits(&request) {
        return Failure::unauthorized().json(&shared);
    }
    match filter(&parameters(&request), Utc::now()) {
        Ok(filter) => json(&shared.state.meetings(&filter)),
        Err(failure) => failure.json(&shared),
    }
}

async fn meeting(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if !shared.credentials.admits(&request) {
        return Failure::unauthorized().json(&shared);
    }
    match find_meeting(&shared, &request, "/api/meetings/") {
        Ok(detail) => json(&detail),
        Err(failure) => failure.json(&shared),
    }
}

async fn accounts(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if !shared.credentials.admits(&request) {
        return Failure::unauthorized().json(&shared);
    }
    json(&shared.state.accounts(Utc::now()))
}

async fn queues(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if !shared.credentials.admits(&request) {
        return Failure::unauthorized().json(&shared);
    }
    json(&shared.state.queues(Utc::now()))
}

async fn not_found(shared: web::Data<Shared>) -> HttpResponse {
    Failure::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").json(&shared)
}
