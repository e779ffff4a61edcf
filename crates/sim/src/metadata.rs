//! What Zoom knows about a meeting beside its recordings, in the shapes of Zoom's API: a past
//! meeting's participants (`GET /past_meetings/{uuid}/participants`), a webinar's panelists
//! (`GET /webinars/{id}/panelists`), its attendees (`GET /past_webinars/{uuid}/participants`)
//! and Q&A (`GET /past_webinars/{uuid}/qa`), and the AI Companion summary
//! (`GET /meetings/{uuid}/meeting_summary`). Each answers only a token with its scope (the
//! `token_scopes` fault, as tokens are issued) and otherwise refuses as Zoom does: HTTP 400,
//! code 4711, naming the scopes missing. The content is derived from the meeting: its host,
//! two attendees, one question.

#![allow(clippy::result_large_err)]

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::routes::{authorize, meeting_id_from_path, zoom_error};
use crate::state::SimState;

type State = web::Data<Arc<SimState>>;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route(
            "/v2/past_meetings/{meeting_id}/participants",
            web::get().to(meeting_participants),
        )
        .route(
            "/v2/past_webinars/{webinar_id}/participants",
            web::get().to(webinar_participants),
        )
        .route(
            "/v2/webinars/{webinar_id}/panelists",
            web::get().to(panelists),
        )
        .route("/v2/past_webinars/{webinar_id}/qa", web::get().to(qa))
        .route(
            "/v2/meetings/{meeting_id}/meeting_summary",
            web::get().to(summary),
        )
        .route("/v2/meetings/{meeting_id}", web::get().to(meeting_details))
        .route("/v2/webinars/{webinar_id}", web::get().to(webinar_details));
}

/// The meeting a request names (uuid, or numeric id for its latest instance), after the token
/// and its scopes: `(uuid, numeric id, topic, host email, start time)`.
fn meeting(
    request: &HttpRequest,
    state: &SimState,
    classic: &str,
    granular: &str,
) -> Result<(String, Option<u64>, String, String, String), HttpResponse> {
    let account_id = authorize(request, state)?;
    let granted = state
        .with(|inner| inner.api_faults.token_scopes.clone())
        .unwrap_or_else(|| crate::routes::DEFAULT_SCOPES.into());
    let allowed = granted
        .split_whitespace()
        .any(|scope| scope == classic || scope.starts_with(granular));
    if !allowed {
        return Err(zoom_error(
            StatusCode::BAD_REQUEST,
            4711,
            &format!("Invalid access token, does not contain scopes:[{classic}, {granular}admin]."),
        ));
    }
    let key = meeting_id_from_path(request)
        .ok_or_else(|| zoom_error(StatusCode::NOT_FOUND, 3001, "Meeting does not exist."))?;
    state.with(|inner| {
        inner
            .meetings
            .iter()
            .rev()
            .find(|m| {
                m.account_id == account_id
                    && (m.recording.uuid == key
                        || m.recording.id.map(|id| id.to_string()) == Some(key.clone()))
            })
            .map(|m| {
                (
                    m.recording.uuid.clone(),
                    m.recording.id,
                    m.recording.topic.clone(),
                    m.recording
                        .host_email
                        .clone()
                        .unwrap_or_else(|| "host@example.com".into()),
                    m.recording
                        .start_time
                        .clone()
                        .unwrap_or_else(|| "2026-01-15T10:00:00Z".into()),
                )
            })
            .ok_or_else(|| zoom_error(StatusCode::NOT_FOUND, 3001, "Meeting does not exist."))
    })
}

fn attendees(host: &str, start: &str) -> Vec<Value> {
    [
        ("Meeting Host", host),
        ("Ada Attendee", "ada@example.com"),
        ("Bo Guest", ""),
    ]
    .iter()
    .enumerate()
    .map(|(index, (name, email))| {
        json!({
            "id": format!("participant-{index}"),
            "user_id": format!("{}", 16778240 + index),
            "name": name,
            "user_email": email,
            "join_time": start,
            "leave_time": start,
            "duration": 1800 - 60 * index,
            "registrant_id": "",
            "failover": false,
            "status": "in_meeting",
        })
    })
    .collect()
}

fn page(key: &str, items: Vec<Value>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "page_count": 1,
        "page_size": 300,
        "total_records": items.len(),
        "next_page_token": "",
        key: items,
    }))
}

async fn meeting_participants(request: HttpRequest, state: State) -> HttpResponse {
    match meeting(
        &request,
        &state,
        "meeting:read:admin",
        "meeting:read:list_past_participants:",
    ) {
        Ok((_, _, _, host, start)) => page("participants", attendees(&host, &start)),
        Err(response) => response,
    }
}

async fn webinar_participants(request: HttpRequest, state: State) -> HttpResponse {
    match meeting(
        &request,
        &state,
        "webinar:read:admin",
        "webinar:read:list_past_participants:",
    ) {
        Ok((_, _, _, host, start)) => page("participants", attendees(&host, &start)),
        Err(response) => response,
    }
}

async fn panelists(request: HttpRequest, state: State) -> HttpResponse {
    match meeting(
        &request,
        &state,
        "webinar:read:admin",
        "webinar:read:list_panelists:",
    ) {
        Ok((_, id, _, _, _)) => HttpResponse::Ok().json(json!({
            "total_records": 1,
            "panelists": [{
                "id": "panelist-1",
                "email": "panelist@example.com",
                "name": "Pat Panelist",
                "join_url": format!("https://example.zoom.us/w/{}", id.unwrap_or_default()),
                "name_tag_name": "",
                "name_tag_description": "",
            }],
        })),
        Err(response) => response,
    }
}

async fn qa(request: HttpRequest, state: State) -> HttpResponse {
    match meeting(
        &request,
        &state,
        "webinar:read:admin",
        "webinar:read:list_past_qa:",
    ) {
        Ok((uuid, id, _, _, start)) => HttpResponse::Ok().json(json!({
            "id": id,
            "uuid": uuid,
            "start_time": start,
            "questions": [{
                "name": "Ada Attendee",
                "email": "ada@example.com",
                "question_details": [{
                    "question": "Will the slides be shared?",
                    "answer": "Yes, with the recording.",
                }],
            }],
        })),
        Err(response) => response,
    }
}

async fn summary(request: HttpRequest, state: State) -> HttpResponse {
    match meeting(
        &request,
        &state,
        "meeting_summary:read:admin",
        "meeting:read:summary:",
    ) {
        Ok((uuid, id, topic, host, start)) => HttpResponse::Ok().json(json!({
            "meeting_host_id": "host-id",
            "meeting_host_email": host,
            "meeting_uuid": uuid,
            "meeting_id": id,
            "meeting_topic": topic,
            "meeting_start_time": start,
            "meeting_end_time": start,
            "summary_start_time": start,
            "summary_end_time": start,
            "summary_created_time": start,
            "summary_last_modified_time": start,
            "summary_title": format!("Meeting summary for {topic}"),
            "summary_overview": "The team reviewed the quarter and agreed on next steps.",
            "summary_details": [
                {"label": "Quarter review", "summary": "Revenue grew; hiring is on plan."}
            ],
            "next_steps": ["Share the slides", "Book the follow-up"],
        })),
        Err(response) => response,
    }
}

/// A scheduled meeting or webinar as `GET /meetings/{id}` and `GET /webinars/{id}` answer it,
/// abridged: its alternative hosts are two, one of them in another case and with a space.
fn details(id: Option<u64>, uuid: &str, topic: &str, host: &str, start: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "uuid": uuid,
        "id": id,
        "host_email": host,
        "topic": topic,
        "start_time": start,
        "settings": {
            "host_video": true,
            "alternative_hosts": "alt-host@example.com; Second.Host@Example.com",
            "auto_recording": "cloud",
        },
    }))
}

async fn meeting_details(request: HttpRequest, state: State) -> HttpResponse {
    match meeting(
        &request,
        &state,
        "meeting:read:admin",
        "meeting:read:meeting:",
    ) {
        Ok((uuid, id, topic, host, start)) => details(id, &uuid, &topic, &host, &start),
        Err(response) => response,
    }
}

async fn webinar_details(request: HttpRequest, state: State) -> HttpResponse {
    match meeting(
        &request,
        &state,
        "webinar:read:admin",
        "webinar:read:webinar:",
    ) {
        Ok((uuid, id, topic, host, start)) => details(id, &uuid, &topic, &host, &start),
        Err(response) => response,
    }
}
