//! User-managed OAuth, as Zoom serves it: a user's consent gives an authorization code
//! (`POST /_sim/oauth/authorize` stands in for the browser round trip), the code is exchanged
//! once (`grant_type=authorization_code`), and every `grant_type=refresh_token` answers a new
//! refresh token and kills the one sent: using it again is `400 invalid_grant` ("Invalid Token!").
//! Parameters are read from the form body, and from the query as older clients send them.

#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::Instant;

use actix_web::{HttpResponse, web};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use crate::state::{SimAccount, SimState};

/// The user-OAuth grants the simulator has handed out.
#[derive(Default)]
pub struct UserOAuth {
    /// authorization code → account id; one exchange each.
    codes: HashMap<String, String>,
    /// live refresh token → account id; one use each.
    refresh_tokens: HashMap<String, String>,
    /// Refresh-token grants answered.
    pub refreshes: u64,
    /// Refresh-token grants refused (a dead or unknown refresh token).
    pub refused: u64,
}

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/_sim/oauth/authorize", web::post().to(authorize))
        .route("/_sim/oauth", web::get().to(counts));
}

#[derive(Deserialize)]
struct Authorize {
    /// The account's name or Zoom id.
    account: String,
}

/// What the consent screen's redirect would carry: a fresh authorization code.
async fn authorize(
    body: web::Json<Authorize>,
    state: web::Data<std::sync::Arc<SimState>>,
) -> HttpResponse {
    let Some(account) = state.account_by_name_or_id(&body.account) else {
        return HttpResponse::NotFound().json(json!({"error": "no such account"}));
    };
    let code = random_token();
    let account_id = account.account_id.clone();
    state.with(|inner| inner.user_oauth.codes.insert(code.clone(), account_id));
    HttpResponse::Ok().json(json!({ "code": code }))
}

async fn counts(state: web::Data<std::sync::Arc<SimState>>) -> HttpResponse {
    HttpResponse::Ok().json(state.with(|inner| {
        json!({
            "refreshes": inner.user_oauth.refreshes,
            "refused": inner.user_oauth.refused,
            "live_refresh_tokens": inner.user_oauth.refresh_tokens.len(),
        })
    }))
}

/// Answers the `authorization_code` and `refresh_token` grants; `None` for any other grant.
/// `app` is the account whose app's client credentials authenticated the request.
pub fn token(
    params: &HashMap<String, String>,
    app: &SimAccount,
    state: &SimState,
) -> Option<HttpResponse> {
    let invalid = || {
        HttpResponse::BadRequest()
            .json(json!({"reason": "Invalid Token!", "error": "invalid_grant"}))
    };
    let granted = match params.get("grant_type").map(String::as_str)? {
        "authorization_code" => {
            let code = params.get("code")?;
            state.with(|inner| inner.user_oauth.codes.remove(code))
        }
        "refresh_token" => {
            let sent = params.get("refresh_token")?;
            state.with(|inner| {
                let grant = &mut inner.user_oauth;
                match grant.refresh_tokens.remove(sent) {
                    Some(account_id) => {
                        grant.refreshes += 1;
                        Some(account_id)
                    }
                    None => {
                        grant.refused += 1;
                        None
                    }
                }
            })
        }
        _ => return None,
    };
    let Some(account_id) = granted.filter(|id| *id == app.account_id) else {
        return Some(invalid());
    };
    let access = random_token();
    let refresh = random_token();
    let scopes = state.with(|inner| {
        inner.tokens.insert(
            access.clone(),
            (account_id.clone(), Instant::now() + state.token_ttl),
        );
        inner
            .user_oauth
            .refresh_tokens
            .insert(refresh.clone(), account_id);
        inner.api_faults.token_scopes.clone()
    });
    Some(HttpResponse::Ok().json(json!({
        "access_token": access,
        "token_type": "bearer",
        "refresh_token": refresh,
        "expires_in": state.token_ttl.as_secs(),
        "scope": scopes.unwrap_or_else(|| crate::routes::DEFAULT_SCOPES.into()),
        "api_url": state.public_url,
    })))
}

/// The request's parameters: the form body's, then the query's.
pub fn params(query: &HashMap<String, String>, body: &[u8]) -> HashMap<String, String> {
    let mut params = query.clone();
    if let Ok(text) = std::str::from_utf8(body)
        && let Ok(form) = web::Query::<HashMap<String, String>>::from_query(text)
    {
        params.extend(form.into_inner());
    }
    params
}

fn random_token() -> String {
    hex::encode(rand::rng().random::<[u8; 24]>())
}
