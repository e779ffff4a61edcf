//! Zoom's WebSocket event delivery, simulated: `GET /ws?subscriptionId=…&access_token=…`.
//!
//! As Zoom does it: the access token is checked at the handshake (401 otherwise); the first
//! frame is `{"module":"build_connection",…}`; `{"module":"heartbeat"}` is answered with
//! `{"module":"heartbeat","content":"live"}`; events arrive as `{"module":"message","content":
//! "<the event as a JSON string>"}`; and nothing is buffered: an event emitted while no socket of
//! the account is open is lost.
//!
//! Tests steer it through `/_sim/websocket/*`: emit an event, close sockets from the server's
//! side, make them go silent (open, but answering nothing), take the endpoint down (refusing
//! handshakes) and read what happened (`GET /_sim/websocket`).

// As in `routes`: helpers answer `Err(HttpResponse)` to short-circuit a handler with Zoom's
// answer; boxing it would only add noise to a test server.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::state::SimState;

type State = web::Data<Arc<SimState>>;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/ws", web::get().to(connect))
        .route("/_sim/websocket", web::get().to(figures))
        .route("/_sim/websocket/events", web::post().to(emit))
        .route("/_sim/websocket/close", web::post().to(close))
        .route("/_sim/websocket/silence", web::post().to(silence))
        .route("/_sim/websocket/outage", web::post().to(outage));
}

/// The simulated endpoint's sockets and what it has seen.
#[derive(Default)]
pub struct Sockets {
    next_id: u64,
    open: Vec<Socket>,
    /// While set, handshakes are refused with 503 (an outage on Zoom's side).
    down: bool,
    figures: Figures,
}

struct Socket {
    id: u64,
    account_id: String,
    subscription_id: String,
    silent: bool,
    commands: mpsc::UnboundedSender<Command>,
}

enum Command {
    Send(String),
    Close,
}

/// What `GET /_sim/websocket` answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Figures {
    /// Sockets open now.
    pub open: usize,
    /// Handshakes accepted since start.
    pub connections: u64,
    /// Handshakes refused (bad or expired token, no subscription id, outage).
    pub refused: u64,
    /// Heartbeats answered.
    pub heartbeats: u64,
    /// Events delivered to a socket.
    pub delivered: u64,
    /// Events emitted while no socket of their account could take them: lost, as with Zoom.
    pub lost: u64,
    /// The most sockets ever open at once, per subscription id.
    pub max_concurrent: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct ConnectQuery {
    #[serde(rename = "subscriptionId", default)]
    subscription_id: String,
    #[serde(default)]
    access_token: String,
}

async fn connect(
    request: HttpRequest,
    body: web::Payload,
    query: web::Query<ConnectQuery>,
    state: State,
) -> HttpResponse {
    let admitted = state.with(|inner| {
        let account_id = match inner.tokens.get(&query.access_token) {
            Some((account_id, expires)) if Instant::now() < *expires => Some(account_id.clone()),
            _ => None,
        };
        let sockets = &mut inner.websockets;
        if sockets.down {
            sockets.figures.refused += 1;
            return Err(HttpResponse::ServiceUnavailable().finish());
        }
        match account_id {
            Some(account_id) if !query.subscription_id.is_empty() => Ok(account_id),
            _ => {
                sockets.figures.refused += 1;
                Err(HttpResponse::Unauthorized()
                    .json(json!({"code": 124, "message": "Invalid access token."})))
            }
        }
    });
    let account_id = match admitted {
        Ok(account_id) => account_id,
        Err(refused) => return refused,
    };
    let (response, session, messages) = match actix_ws::handle(&request, body) {
        Ok(handshake) => handshake,
        Err(error) => return HttpResponse::BadRequest().body(error.to_string()),
    };
    let (commands, received) = mpsc::unbounded_channel();
    let subscription_id = query.subscription_id.clone();
    let id = state.with(|inner| {
        let sockets = &mut inner.websockets;
        sockets.next_id += 1;
        let id = sockets.next_id;
        sockets.open.push(Socket {
            id,
            account_id,
            subscription_id: subscription_id.clone(),
            silent: false,
            commands,
        });
        sockets.figures.connections += 1;
        let concurrent = sockets
            .open
            .iter()
            .filter(|socket| socket.subscription_id == subscription_id)
            .count();
        let max = sockets
            .figures
            .max_concurrent
            .entry(subscription_id)
            .or_default();
        *max = (*max).max(concurrent);
        id
    });
    actix_web::rt::spawn(serve(
        id,
        state.get_ref().clone(),
        session,
        messages,
        received,
    ));
    response
}

/// One socket: answers heartbeats and pings, forwards what the control routes send, until
/// either side closes it.
async fn serve(
    id: u64,
    state: Arc<SimState>,
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let silent = |state: &SimState| {
        state.with(|inner| {
            inner
                .websockets
                .open
                .iter()
                .any(|socket| socket.id == id && socket.silent)
        })
    };
    let built = json!({"module": "build_connection", "success": true, "content": "ok"});
    let mut open = session.text(built.to_string()).await.is_ok();
    while open {
        tokio::select! {
            message = messages.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    let heartbeat = serde_json::from_str::<Value>(&text)
                        .is_ok_and(|frame| frame["module"] == "heartbeat");
                    if heartbeat && !silent(&state) {
                        state.with(|inner| inner.websockets.figures.heartbeats += 1);
                        let answer = json!({"module": "heartbeat", "success": true, "content": "live"});
                        open = session.text(answer.to_string()).await.is_ok();
                    }
                }
                Some(Ok(Message::Ping(bytes))) => {
                    if !silent(&state) {
                        open = session.pong(&bytes).await.is_ok();
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => open = false,
                Some(Ok(_)) => {}
            },
            command = commands.recv() => match command {
                Some(Command::Send(text)) => open = session.text(text).await.is_ok(),
                Some(Command::Close) | None => {
                    let reason = CloseReason {
                        code: CloseCode::Restart,
                        description: Some("closed by the simulator".into()),
                    };
                    let _ = session.clone().close(Some(reason)).await;
                    open = false;
                }
            },
        }
    }
    state.with(|inner| inner.websockets.open.retain(|socket| socket.id != id));
    let _ = session.close(None).await;
}

/// Which sockets a control request is about: those of one account (name or id), or all.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Target {
    account: Option<String>,
}

fn account_id_of(state: &SimState, account: Option<&str>) -> Result<Option<String>, HttpResponse> {
    match account {
        None => Ok(None),
        Some(key) => state
            .account_by_name_or_id(key)
            .map(|account| Some(account.account_id.clone()))
            .ok_or_else(|| HttpResponse::NotFound().json(json!({"error": "no_such_account"}))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Emit {
    /// Account name or id; the first configured one when absent.
    account: Option<String>,
    event: Value,
}

/// Zoom emits `event`: every open, answering socket of the account receives it. With none, it
/// is lost (answers `delivered: 0`).
async fn emit(request: web::Json<Emit>, state: State) -> HttpResponse {
    let key = request
        .account
        .clone()
        .or_else(|| state.accounts.first().map(|account| account.name.clone()));
    let account_id = match account_id_of(&state, key.as_deref()) {
        Ok(Some(account_id)) => account_id,
        Ok(None) => return HttpResponse::NotFound().json(json!({"error": "no_such_account"})),
        Err(response) => return response,
    };
    let frame = json!({"module": "message", "success": true, "content": request.event.to_string()})
        .to_string();
    let delivered = state.with(|inner| {
        let sockets = &mut inner.websockets;
        let delivered = sockets
            .open
            .iter()
            .filter(|socket| socket.account_id == account_id && !socket.silent)
            .filter(|socket| socket.commands.send(Command::Send(frame.clone())).is_ok())
            .count();
        if delivered == 0 {
            sockets.figures.lost += 1;
        }
        sockets.figures.delivered += delivered as u64;
        delivered
    });
    HttpResponse::Ok().json(json!({ "delivered": delivered }))
}

/// Closes the sockets from the server's side (as Zoom does on a deploy).
async fn close(target: Option<web::Json<Target>>, state: State) -> HttpResponse {
    let target = target.map(web::Json::into_inner).unwrap_or_default();
    let account_id = match account_id_of(&state, target.account.as_deref()) {
        Ok(account_id) => account_id,
        Err(response) => return response,
    };
    let closed = state.with(|inner| {
        inner
            .websockets
            .open
            .iter()
            .filter(|socket| {
                account_id
                    .as_ref()
                    .is_none_or(|id| socket.account_id == *id)
            })
            .filter(|socket| socket.commands.send(Command::Close).is_ok())
            .count()
    });
    HttpResponse::Ok().json(json!({ "closed": closed }))
}

/// The sockets stay open but go silent: no heartbeat answer, no pong, no event, ever again (a
/// connection a middlebox dropped without a word).
async fn silence(target: Option<web::Json<Target>>, state: State) -> HttpResponse {
    let target = target.map(web::Json::into_inner).unwrap_or_default();
    let account_id = match account_id_of(&state, target.account.as_deref()) {
        Ok(account_id) => account_id,
        Err(response) => return response,
    };
    let silenced = state.with(|inner| {
        let mut silenced = 0;
        for socket in inner.websockets.open.iter_mut() {
            if account_id
                .as_ref()
                .is_none_or(|id| socket.account_id == *id)
            {
                socket.silent = true;
                silenced += 1;
            }
        }
        silenced
    });
    HttpResponse::Ok().json(json!({ "silenced": silenced }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outage {
    down: bool,
}

/// `down: true` closes every socket and refuses handshakes until `down: false`.
async fn outage(request: web::Json<Outage>, state: State) -> HttpResponse {
    state.with(|inner| {
        let sockets = &mut inner.websockets;
        sockets.down = request.down;
        if request.down {
            for socket in &sockets.open {
                let _ = socket.commands.send(Command::Close);
            }
        }
    });
    HttpResponse::NoContent().finish()
}

async fn figures(state: State) -> HttpResponse {
    let figures = state.with(|inner| Figures {
        open: inner.websockets.open.len(),
        ..inner.websockets.figures.clone()
    });
    HttpResponse::Ok().json(figures)
}
