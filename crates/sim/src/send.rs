//! Posting events exactly as Zoom does: `x-zm-request-timestamp`, `x-zm-signature`
//! (`v0=` + HMAC-SHA256 of `v0:{ts}:{body}` keyed by the secret token), a tracking id, Zoom's
//! user agent.

use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use zoom_api::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, TRACKING_ID_HEADER, sign};

/// What the receiver answered.
#[derive(Debug)]
pub struct Delivery {
    pub status: u16,
    pub body: String,
}

pub async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    secret: &SecretString,
    body: &str,
) -> Result<Delivery, reqwest::Error> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default();
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "Zoom Marketplace/1.0a")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, sign(secret, timestamp, body.as_bytes()))
        .header(TRACKING_ID_HEADER, uuid::Uuid::new_v4().to_string())
        .body(body.to_owned())
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Ok(Delivery { status, body })
}
