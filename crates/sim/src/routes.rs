//! The simulated Zoom endpoints, and the `/_sim/*` control endpoints for tests and operators.

// Helpers answer `Err(HttpResponse)` to short-circuit a handler with the response Zoom would
// give; boxing it would only add noise to a test server.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use bytes::Bytes;
use chrono::NaiveDate;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use zoom_api::model::FileType;

use crate::scenario::MeetingSpec;
use crate::state::{ApiFaults, Deletion, FileFaults, PageCursor, SimState};

type State = web::Data<Arc<SimState>>;

/// The largest file a test may give the simulator to serve.
const CONTENT_LIMIT: usize = 256 * 1024 * 1024;

pub fn configure(config: &mut web::ServiceConfig) {
    crate::websocket::configure(config);
    crate::oauth::configure(config);
    crate::metadata::configure(config);
    config
        .route("/oauth/token", web::post().to(oauth_token))
        .route("/v2/users/me", web::get().to(me))
        .route("/v2/users", web::get().to(users))
        .route(
            "/v2/users/{user_id}/recordings",
            web::get().to(user_recordings),
        )
        .route(
            "/v2/accounts/{account_id}/recordings",
            web::get().to(account_recordings),
        )
        .route(
            "/v2/meetings/{meeting_id}/recordings",
            web::get().to(meeting_recordings),
        )
        .route(
            "/v2/past_meetings/{meeting_id}/instances",
            web::get().to(past_instances),
        )
        .route(
            "/v2/meetings/{meeting_id}/recordings",
            web::delete().to(delete_meeting),
        )
        .route(
            "/v2/meetings/{meeting_id}/recordings/{file_id}",
            web::delete().to(delete_file),
        )
        .route("/rec/{kind}/{file_id}", web::get().to(download))
        .route("/files/{file_id}", web::get().to(file_server))
        .route("/_sim/meetings", web::post().to(create_meeting))
        .route("/_sim/release", web::post().to(release))
        .route("/_sim/fixtures", web::post().to(import_fixture))
        .route("/_sim/faults", web::post().to(set_api_faults))
        .route(
            "/_sim/files/{file_id}/faults",
            web::post().to(set_file_faults),
        )
        .service(
            web::resource("/_sim/files/{file_id}/content")
                .app_data(web::PayloadConfig::new(CONTENT_LIMIT))
                .route(web::put().to(set_file_content)),
        )
        .route("/_sim/requests", web::get().to(requests))
        .route("/_sim/deletions", web::get().to(deletions))
        .route("/_sim/stats", web::get().to(stats));
}

pub(crate) fn zoom_error(status: StatusCode, code: i64, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "code": code, "message": message }))
}

/// The account a request's bearer token belongs to, after the API-wide faults.
pub(crate) fn authorize(request: &HttpRequest, state: &SimState) -> Result<String, HttpResponse> {
    let token = bearer(request.headers())
        .ok_or_else(|| zoom_error(StatusCode::UNAUTHORIZED, 124, "Invalid access token."))?;
    state.with(|inner| {
        let faults = &mut inner.api_faults;
        if faults.rate_limited > 0 {
            faults.rate_limited -= 1;
            let mut response = HttpResponse::TooManyRequests();
            response.insert_header(("X-RateLimit-Category", "Light"));
            if let Some(seconds) = faults.retry_after_secs {
                response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            }
            return Err(response.json(json!({"code": 429, "message": "You have reached the maximum per-second rate limit for this API. Try again later."})));
        }
        if faults.server_errors > 0 {
            faults.server_errors -= 1;
            return Err(zoom_error(StatusCode::INTERNAL_SERVER_ERROR, 500, "Internal error"));
        }
        match inner.tokens.get(&token) {
            Some((account_id, expires)) if Instant::now() < *expires => Ok(account_id.clone()),
            Some(_) => Err(zoom_error(StatusCode::UNAUTHORIZED, 124, "Access token is expired.")),
            None => Err(zoom_error(StatusCode::UNAUTHORIZED, 124, "Invalid access token.")),
        }
    })
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(|token| token.trim().to_owned())
}

/// The scopes a token carries unless a fault says otherwise.
pub(crate) const DEFAULT_SCOPES: &str =
    "recording:read:admin recording:write:admin user:read:admin";

async fn oauth_token(
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    body: Bytes,
    state: State,
) -> HttpResponse {
    let failing = state.with(|inner| {
        inner.token_requests += 1;
        if inner.api_faults.oauth_errors > 0 {
            inner.api_faults.oauth_errors -= 1;
            true
        } else {
            false
        }
    });
    if failing {
        return zoom_error(StatusCode::INTERNAL_SERVER_ERROR, 500, "Internal error");
    }
    // `client_credentials` (the WebSocket subscription's, in Zoom's current docs) names no
    // account: the app's credentials say which.
    let params = crate::oauth::params(&query, &body);
    let grant = params.get("grant_type").map(String::as_str);
    if !matches!(
        grant,
        Some("account_credentials" | "client_credentials" | "authorization_code" | "refresh_token")
    ) {
        return HttpResponse::BadRequest()
            .json(json!({"reason": "Unsupported grant type", "error": "unsupported_grant_type"}));
    }
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let Some((client_id, client_secret)) =
        credentials.as_deref().and_then(|text| text.split_once(':'))
    else {
        return HttpResponse::BadRequest().json(
            json!({"reason": "Invalid client_id or client_secret", "error": "invalid_client"}),
        );
    };
    let account = state
        .accounts
        .iter()
        .find(|a| a.client_id == client_id && a.client_secret == client_secret);
    let Some(account) = account else {
        return HttpResponse::BadRequest().json(
            json!({"reason": "Invalid client_id or client_secret", "error": "invalid_client"}),
        );
    };
    if let Some(response) = crate::oauth::token(&params, account, &state) {
        return response;
    }
    if grant == Some("account_credentials") && query.get("account_id") != Some(&account.account_id)
    {
        return HttpResponse::BadRequest()
            .json(json!({"reason": "Invalid account_id", "error": "invalid_request"}));
    }
    let token = hex::encode(rand::rng().random::<[u8; 24]>());
    let scopes = state.with(|inner| {
        inner.tokens.insert(
            token.clone(),
            (account.account_id.clone(), Instant::now() + state.token_ttl),
        );
        inner.api_faults.token_scopes.clone()
    });
    HttpResponse::Ok().json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": state.token_ttl.as_secs(),
        "scope": scopes.unwrap_or_else(|| DEFAULT_SCOPES.into()),
        "api_url": state.public_url,
    }))
}

async fn me(request: HttpRequest, state: State) -> HttpResponse {
    match authorize(&request, &state) {
        Ok(account_id) => HttpResponse::Ok().json(json!({
            "id": "sim-admin", "email": "admin@example.com", "account_id": account_id, "status": "active"
        })),
        Err(response) => response,
    }
}

/// Decodes a meeting id as Zoom does, and enforces its rule: a UUID that starts with `/` or
/// contains `//` must arrive encoded twice.
pub(crate) fn meeting_id_from_path(request: &HttpRequest) -> Option<String> {
    let raw = request.uri().path().split('/').nth(3)?;
    let once = percent_decode(raw)?;
    if once.contains('%') {
        return percent_decode(&once);
    }
    if once.starts_with('/') || once.contains("//") {
        return None;
    }
    Some(once)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The meeting's recordings as the API shows them now (deleted files gone, processing faults
/// applied), or `None` when Zoom would say 3301.
fn visible_recording(state: &SimState, account_id: &str, meeting_id: &str) -> Option<Value> {
    state.with(|inner| {
        let meeting = inner.meetings.iter().find(|m| {
            m.account_id == account_id
                && m.deleted.is_none()
                && (m.recording.uuid == meeting_id
                    || m.recording.id.map(|id| id.to_string()).as_deref() == Some(meeting_id))
        })?;
        let mut recording = meeting.recording.clone();
        let hidden = &meeting.hidden;
        recording
            .recording_files
            .retain(|file| file.id.as_ref().is_none_or(|id| !hidden.contains(id)));
        for file in recording
            .recording_files
            .iter_mut()
            .chain(recording.participant_audio_files.iter_mut())
        {
            let Some(state) = file.id.as_ref().and_then(|id| inner.files.get_mut(id)) else {
                continue;
            };
            if state.faults.processing_reads > 0 {
                state.faults.processing_reads -= 1;
                file.id = None;
                file.file_type = FileType::Pending;
                file.status = Some("processing".into());
                file.download_url = None;
            }
        }
        let files = &inner.files;
        let alive = |file: &zoom_api::model::RecordingFile| {
            file.id
                .as_ref()
                .is_none_or(|id| files.get(id).is_some_and(|state| !state.deleted))
        };
        recording.recording_files.retain(alive);
        recording.participant_audio_files.retain(alive);
        serde_json::to_value(recording).ok()
    })
}

async fn meeting_recordings(
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> HttpResponse {
    let account_id = match authorize(&request, &state) {
        Ok(account_id) => account_id,
        Err(response) => return response,
    };
    let Some(meeting_id) = meeting_id_from_path(&request) else {
        return zoom_error(
            StatusCode::NOT_FOUND,
            3301,
            "This recording does not exist.",
        );
    };
    let Some(mut recording) = visible_recording(&state, &account_id, &meeting_id) else {
        return zoom_error(
            StatusCode::NOT_FOUND,
            3301,
            "This recording does not exist.",
        );
    };
    if query
        .get("include_fields")
        .is_some_and(|fields| fields.contains("download_access_token"))
    {
        let ttl = query
            .get("ttl")
            .and_then(|ttl| ttl.parse::<i64>().ok())
            .unwrap_or(86_400)
            .clamp(1, 604_800);
        let uuid = recording["uuid"].as_str().unwrap_or_default().to_owned();
        recording["download_access_token"] = json!(state.issue_download_token(&uuid, ttl));
    }
    HttpResponse::Ok().json(recording)
}

#[derive(Deserialize)]
struct ListQuery {
    from: Option<String>,
    to: Option<String>,
    page_size: Option<usize>,
    next_page_token: Option<String>,
    status: Option<String>,
}

/// Serves one page, from a fresh listing or from a page token's cursor.
fn page(
    state: &SimState,
    query: &ListQuery,
    key: &str,
    fresh: impl FnOnce() -> Vec<Value>,
) -> Result<(Vec<Value>, String), HttpResponse> {
    let page_size = query
        .page_size
        .unwrap_or(30)
        .clamp(1, state.page_size_limit);
    let items = match query
        .next_page_token
        .as_deref()
        .filter(|token| !token.is_empty())
    {
        Some(token) => state.with(|inner| {
            let expired_by_fault = inner.api_faults.expired_page_tokens > 0;
            if expired_by_fault {
                inner.api_faults.expired_page_tokens -= 1;
            }
            match inner.pages.remove(token) {
                Some(cursor)
                    if !expired_by_fault && cursor.issued.elapsed() < state.page_token_ttl =>
                {
                    Ok(cursor.items)
                }
                _ => Err(zoom_error(
                    StatusCode::BAD_REQUEST,
                    300,
                    "The next page token is invalid or expired.",
                )),
            }
        })?,
        None => fresh(),
    };
    let mut items = items;
    let rest = if items.len() > page_size {
        items.split_off(page_size)
    } else {
        Vec::new()
    };
    let token = if rest.is_empty() {
        String::new()
    } else {
        let token = format!("{key}-{}", hex::encode(rand::rng().random::<[u8; 12]>()));
        state.with(|inner| {
            inner.pages.insert(
                token.clone(),
                PageCursor {
                    items: rest,
                    issued: Instant::now(),
                },
            )
        });
        token
    };
    Ok((items, token))
}

fn parse_range(query: &ListQuery) -> Result<(NaiveDate, NaiveDate), HttpResponse> {
    let date =
        |text: Option<&String>| text.and_then(|t| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok());
    let today = chrono::Utc::now().date_naive();
    let to = date(query.to.as_ref()).unwrap_or(today);
    let from = date(query.from.as_ref()).unwrap_or(to - chrono::TimeDelta::days(1));
    if from > to || (to - from).num_days() > 31 {
        return Err(zoom_error(
            StatusCode::BAD_REQUEST,
            300,
            "The range is invalid: at most one month.",
        ));
    }
    Ok((from, to))
}

fn list_meetings(
    query: &ListQuery,
    state: &SimState,
    account_id: &str,
    host: Option<&str>,
) -> HttpResponse {
    let (from, to) = match parse_range(query) {
        Ok(range) => range,
        Err(response) => return response,
    };
    let fresh = || {
        let uuids: Vec<String> = state.with(|inner| {
            inner
                .meetings
                .iter()
                .filter(|m| m.account_id == account_id && m.deleted.is_none())
                .filter(|m| {
                    host.is_none_or(|host| {
                        host == "me"
                            || m.recording.host_email.as_deref() == Some(host)
                            || m.recording.host_id.as_deref() == Some(host)
                    })
                })
                .filter(|m| {
                    m.recording
                        .start_time
                        .as_deref()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| {
                            let day = t.date_naive();
                            day >= from && day <= to
                        })
                })
                .map(|m| m.recording.uuid.clone())
                .collect()
        });
        uuids
            .iter()
            .filter_map(|uuid| visible_recording(state, account_id, uuid))
            .collect()
    };
    match page(state, query, "rec", fresh) {
        Ok((meetings, next_page_token)) => HttpResponse::Ok().json(json!({
            "from": from.to_string(), "to": to.to_string(),
            "page_size": query.page_size.unwrap_or(30),
            "next_page_token": next_page_token,
            "meetings": meetings,
        })),
        Err(response) => response,
    }
}

async fn user_recordings(
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
    state: State,
) -> HttpResponse {
    match authorize(&request, &state) {
        Ok(account_id) => list_meetings(&query, &state, &account_id, Some(path.as_str())),
        Err(response) => response,
    }
}

async fn account_recordings(
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
    state: State,
) -> HttpResponse {
    let refused = state.with(|inner| inner.api_faults.refuse_account_listing);
    match authorize(&request, &state) {
        Ok(_) if refused => zoom_error(StatusCode::BAD_REQUEST, 200, "No permission."),
        Ok(account_id) if account_id == *path || path.as_str() == "me" => {
            list_meetings(&query, &state, &account_id, None)
        }
        Ok(_) => zoom_error(StatusCode::BAD_REQUEST, 200, "No permission."),
        Err(response) => response,
    }
}

/// `GET /past_meetings/{id}/instances`: every occurrence of a numeric meeting id.
async fn past_instances(
    request: HttpRequest,
    path: web::Path<String>,
    state: State,
) -> HttpResponse {
    let account_id = match authorize(&request, &state) {
        Ok(account_id) => account_id,
        Err(response) => return response,
    };
    let meetings: Vec<Value> = state.with(|inner| {
        inner
            .meetings
            .iter()
            .filter(|m| {
                m.account_id == account_id
                    && m.recording.id.map(|id| id.to_string()).as_deref() == Some(path.as_str())
            })
            .map(|m| json!({ "uuid": m.recording.uuid, "start_time": m.recording.start_time }))
            .collect()
    });
    if meetings.is_empty() {
        return zoom_error(StatusCode::NOT_FOUND, 3001, "Meeting does not exist.");
    }
    HttpResponse::Ok().json(json!({ "meetings": meetings }))
}

async fn users(request: HttpRequest, query: web::Query<ListQuery>, state: State) -> HttpResponse {
    let account_id = match authorize(&request, &state) {
        Ok(account_id) => account_id,
        Err(response) => return response,
    };
    let status = query.status.clone().unwrap_or_else(|| "active".into());
    let fresh = || {
        let mut emails: Vec<String> = state.with(|inner| {
            inner
                .meetings
                .iter()
                .filter(|m| m.account_id == account_id)
                .filter_map(|m| m.recording.host_email.clone())
                .collect()
        });
        emails.sort();
        emails.dedup();
        let inactive = crate::state::INACTIVE_HOST;
        let listed: Vec<(String, &str)> = if status == "inactive" {
            vec![(inactive.into(), "inactive")]
        } else if status == "active" {
            emails
                .into_iter()
                .filter(|email| email != inactive)
                .map(|email| (email, "active"))
                .collect()
        } else {
            vec![]
        };
        listed
            .into_iter()
            .map(|(email, status)| json!({"id": format!("host-{email}"), "email": email, "status": status, "type": 2}))
            .collect()
    };
    match page(&state, &query, "usr", fresh) {
        Ok((users, next_page_token)) => HttpResponse::Ok().json(json!({
            "page_size": query.page_size.unwrap_or(30), "next_page_token": next_page_token, "users": users
        })),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct DeleteQuery {
    action: Option<String>,
}

async fn delete_meeting(
    request: HttpRequest,
    query: web::Query<DeleteQuery>,
    state: State,
) -> HttpResponse {
    let account_id = match authorize(&request, &state) {
        Ok(account_id) => account_id,
        Err(response) => return response,
    };
    let action = query.action.clone().unwrap_or_else(|| "trash".into());
    let Some(meeting_id) = meeting_id_from_path(&request) else {
        return zoom_error(
            StatusCode::NOT_FOUND,
            3301,
            "This recording does not exist.",
        );
    };
    let deleted = state.with(|inner| {
        let meeting = inner.meetings.iter_mut().find(|m| {
            m.account_id == account_id && m.deleted.is_none() && m.recording.uuid == meeting_id
        })?;
        meeting.deleted = Some(action.clone());
        let uuid = meeting.recording.uuid.clone();
        for file in inner.files.values_mut().filter(|f| f.meeting_uuid == uuid) {
            file.deleted = true;
        }
        inner.deletions.push(Deletion {
            meeting_uuid: uuid,
            file_id: None,
            action: action.clone(),
        });
        Some(())
    });
    match deleted {
        Some(()) => HttpResponse::NoContent().finish(),
        None => zoom_error(
            StatusCode::NOT_FOUND,
            3301,
            "This recording does not exist.",
        ),
    }
}

async fn delete_file(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<DeleteQuery>,
    state: State,
) -> HttpResponse {
    let account_id = match authorize(&request, &state) {
        Ok(account_id) => account_id,
        Err(response) => return response,
    };
    let action = query.action.clone().unwrap_or_else(|| "trash".into());
    let file_id = path.1.clone();
    let deleted = state.with(|inner| {
        let file = inner
            .files
            .get_mut(&file_id)
            .filter(|f| f.account_id == account_id && !f.deleted)?;
        file.deleted = true;
        let meeting_uuid = file.meeting_uuid.clone();
        inner.deletions.push(Deletion {
            meeting_uuid,
            file_id: Some(file_id.clone()),
            action: action.clone(),
        });
        Some(())
    });
    match deleted {
        Some(()) => HttpResponse::NoContent().finish(),
        None => zoom_error(
            StatusCode::NOT_FOUND,
            3301,
            "This recording does not exist.",
        ),
    }
}

fn url_signature(secret: &str, file_id: &str, expires: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(format!("{file_id}:{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// `download_url`: checks the bearer (event token, access token or download access token), then
/// redirects to a signed file-server URL, as Zoom does.
async fn download(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> HttpResponse {
    let (kind, file_id) = path.into_inner();
    if kind != "download" && kind != "webhook_download" {
        return zoom_error(
            StatusCode::NOT_FOUND,
            3301,
            "This recording does not exist.",
        );
    }
    let token = bearer(request.headers()).or_else(|| query.get("access_token").cloned());
    let verdict = state.with(|inner| {
        let file = inner.files.get_mut(&file_id)?;
        let authorized = token.as_ref().is_some_and(|token| {
            let now = Instant::now();
            let access_token = !file.faults.refuse_access_tokens
                && inner.tokens.get(token).is_some_and(|(account, expires)| {
                    *account == file.account_id && now < *expires
                });
            access_token
                || inner
                    .download_tokens
                    .get(token)
                    .is_some_and(|(meeting, expires)| {
                        *meeting == file.meeting_uuid && now < *expires
                    })
        });
        if !authorized {
            return Some(Err(StatusCode::UNAUTHORIZED));
        }
        if file.faults.deleted_html {
            return Some(Err(StatusCode::OK));
        }
        if file.deleted || file.faults.not_found {
            return Some(Err(StatusCode::NOT_FOUND));
        }
        if file.faults.rate_limited > 0 {
            file.faults.rate_limited -= 1;
            return Some(Err(StatusCode::TOO_MANY_REQUESTS));
        }
        if file.faults.server_errors > 0 {
            file.faults.server_errors -= 1;
            return Some(Err(StatusCode::INTERNAL_SERVER_ERROR));
        }
        Some(Ok(()))
    });
    match verdict {
        None => zoom_error(StatusCode::NOT_FOUND, 3301, "This recording does not exist."),
        Some(Err(StatusCode::UNAUTHORIZED)) => zoom_error(StatusCode::UNAUTHORIZED, 124, "Invalid access token."),
        Some(Err(StatusCode::OK)) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body("<!doctype html><html><head><title>Error - Zoom</title></head><body><h1>This recording does not exist.</h1></body></html>"),
        Some(Err(StatusCode::TOO_MANY_REQUESTS)) => HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(json!({"code": 429, "message": "Too many requests"})),
        Some(Err(status)) => zoom_error(status, status.as_u16() as i64, "Error"),
        Some(Ok(())) => {
            let expires = unix_now() + 3600;
            let signature = url_signature(&state.url_secret, &file_id, expires);
            HttpResponse::Found()
                .insert_header((
                    header::LOCATION,
                    format!("{}/files/{file_id}?expires={expires}&signature={signature}", state.public_url),
                ))
                .finish()
        }
    }
}

/// `bytes=START-` or `bytes=START-END`.
fn requested_range(headers: &HeaderMap, size: u64) -> Option<(u64, u64)> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    let (start, end) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = start.parse().ok()?;
    let end: u64 = if end.is_empty() {
        size.saturating_sub(1)
    } else {
        end.parse().ok()?
    };
    (start <= end && start < size).then_some((start, end.min(size.saturating_sub(1)) + 1))
}

fn content_type(file_type: &str) -> &'static str {
    match file_type {
        "MP4" => "video/mp4",
        "M4A" => "audio/mp4",
        "TRANSCRIPT" | "CC" => "text/vtt",
        _ => "application/octet-stream",
    }
}

/// The file server behind the redirect: signed URLs, `Range`, content generated on the fly.
async fn file_server(
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> HttpResponse {
    let file_id = path.into_inner();
    let expires: u64 = query
        .get("expires")
        .and_then(|e| e.parse().ok())
        .unwrap_or_default();
    let signed = query
        .get("signature")
        .is_some_and(|s| *s == url_signature(&state.url_secret, &file_id, expires));
    if !signed || expires < unix_now() {
        return HttpResponse::Forbidden()
            .content_type("application/xml")
            .body("<Error><Code>AccessDenied</Code></Error>");
    }
    let Some((size, seed, cut_after, rate, file_type, content)) = state.with(|inner| {
        let file = inner.files.get_mut(&file_id).filter(|file| !file.deleted)?;
        let cut = (file.faults.cut_times > 0).then(|| {
            file.faults.cut_times -= 1;
            file.faults.cut_after.unwrap_or(0)
        });
        let file_type = inner
            .meetings
            .iter()
            .flat_map(|m| m.recording.all_files())
            .find(|f| f.id.as_deref() == Some(file_id.as_str()))
            .map(|f| f.file_type.as_str().to_owned())
            .unwrap_or_default();
        let content = file.content.clone();
        Some((
            file.size,
            file.seed,
            cut,
            file.faults.bytes_per_second,
            file_type,
            content,
        ))
    }) else {
        return HttpResponse::NotFound()
            .content_type("application/xml")
            .body("<Error><Code>NoSuchKey</Code></Error>");
    };
    let (start, end, mut response) = match requested_range(request.headers(), size) {
        Some((start, end)) => {
            let mut response = HttpResponse::PartialContent();
            response.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{size}", end - 1),
            ));
            (start, end, response)
        }
        None if request.headers().contains_key(header::RANGE) => {
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .finish();
        }
        None => (0, size, HttpResponse::Ok()),
    };
    response
        .content_type(content_type(&file_type))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    let body = body_stream(seed, content, start, end, cut_after, rate);
    response.no_chunking(end - start).streaming(body)
}

/// The file's bytes (given, or generated from `seed`), cut after `cut_after` bytes or throttled
/// to `rate` bytes per second.
fn body_stream(
    seed: u64,
    content: Option<Bytes>,
    start: u64,
    end: u64,
    cut_after: Option<u64>,
    rate: Option<u64>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let stop = cut_after.map_or(end, |cut| (start + cut).min(end));
    let step = if rate.is_some() { 16 * 1024 } else { u64::MAX };
    let bytes: Box<dyn Iterator<Item = Bytes> + Send> = match content {
        Some(content) => Box::new(std::iter::once(
            content.slice(start as usize..stop as usize),
        )),
        None => Box::new(crate::content::chunks(seed, start, stop)),
    };
    let chunks = bytes.flat_map(move |chunk| {
        let pieces: Vec<Bytes> = (0..chunk.len())
            .step_by(step.min(chunk.len() as u64).max(1) as usize)
            .map(|offset| chunk.slice(offset..(offset + step as usize).min(chunk.len())))
            .collect();
        pieces
    });
    let cut = cut_after.is_some() && stop < end;
    futures_util::stream::iter(chunks.map(Ok))
        .then(move |chunk: Result<Bytes, std::io::Error>| async move {
            if let (Some(rate), Ok(bytes)) = (rate, &chunk) {
                tokio::time::sleep(Duration::from_secs_f64(
                    bytes.len() as f64 / rate.max(1) as f64,
                ))
                .await;
            }
            chunk
        })
        .chain(futures_util::stream::iter(cut.then(|| {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated cut",
            ))
        })))
}

async fn create_meeting(spec: web::Json<MeetingSpec>, state: State) -> HttpResponse {
    match state.create_meeting(&spec) {
        Ok(created) => HttpResponse::Created().json(created),
        Err(message) => {
            HttpResponse::BadRequest().json(json!({"error": "bad_spec", "message": message}))
        }
    }
}

#[derive(Deserialize)]
struct ReleaseRequest {
    uuid: String,
}

/// Zoom finishes what it held back (a later transcript); answers the event it sends about it.
async fn release(request: web::Json<ReleaseRequest>, state: State) -> HttpResponse {
    match state.release(&request.uuid) {
        Some(event) => HttpResponse::Ok().json(event),
        None => HttpResponse::NotFound().json(json!({"error": "no_such_meeting"})),
    }
}

async fn import_fixture(
    spec: web::Json<crate::scenario::FixtureSpec>,
    state: State,
) -> HttpResponse {
    match state.import_fixture(&spec) {
        Ok(imported) => HttpResponse::Created().json(imported),
        Err(message) => {
            HttpResponse::BadRequest().json(json!({"error": "bad_fixture", "message": message}))
        }
    }
}

async fn set_api_faults(faults: web::Json<ApiFaults>, state: State) -> HttpResponse {
    state.with(|inner| {
        if faults.revoke_tokens {
            inner.tokens.clear();
        }
        inner.api_faults = faults.into_inner();
    });
    HttpResponse::NoContent().finish()
}

async fn set_file_faults(
    path: web::Path<String>,
    faults: web::Json<FileFaults>,
    state: State,
) -> HttpResponse {
    let found = state.with(|inner| {
        inner
            .files
            .get_mut(path.as_str())
            .map(|file| file.faults = faults.into_inner())
    });
    match found {
        Some(()) => HttpResponse::NoContent().finish(),
        None => HttpResponse::NotFound().json(json!({"error": "no_such_file"})),
    }
}

/// Serves these bytes (a real MP4, say) for the file from now on; Zoom's API lists their size.
/// Answers what is served, as `CreatedMeeting.files` tells it.
async fn set_file_content(path: web::Path<String>, body: Bytes, state: State) -> HttpResponse {
    let file_id = path.into_inner();
    let size = body.len() as u64;
    let sha256 = hex::encode(<Sha256 as sha2::Digest>::digest(&body));
    let file_type = state.with(|inner| {
        let file = inner.files.get_mut(&file_id)?;
        file.size = size;
        file.content = Some(body);
        let listed = inner
            .meetings
            .iter_mut()
            .flat_map(|meeting| {
                meeting
                    .recording
                    .recording_files
                    .iter_mut()
                    .chain(meeting.recording.participant_audio_files.iter_mut())
            })
            .find(|listed| listed.id.as_deref() == Some(file_id.as_str()))?;
        listed.file_size = Some(size);
        Some(listed.file_type.as_str().to_owned())
    });
    match file_type {
        Some(file_type) => HttpResponse::Ok().json(crate::scenario::ServedFile {
            file_type,
            size,
            sha256,
        }),
        None => HttpResponse::NotFound().json(json!({"error": "no_such_file"})),
    }
}

async fn requests(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.with(|inner| inner.requests.clone()))
}

async fn deletions(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.with(|inner| inner.deletions.clone()))
}

async fn stats(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.with(|inner| json!({ "token_requests": inner.token_requests })))
}
