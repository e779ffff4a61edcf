//! Zoom event-notification signatures.
//!
//! Zoom signs `v0:{x-zm-request-timestamp}:{raw body}` with HMAC-SHA256 keyed by the app's secret
//! token and sends `x-zm-signature: v0={lowercase hex}`. The headers' form and the timestamp's
//! freshness are checked first ([`SignedHeaders::parse`], before the body is even read); then the
//! signature, on the raw bytes before any parsing, in constant time, against the candidate tokens
//! (one account's, or every configured one; the previous token during a rotation). Only a
//! successful verification turns a request into a [`Verified`] one.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SIGNATURE_HEADER: &str = "x-zm-signature";
pub const TIMESTAMP_HEADER: &str = "x-zm-request-timestamp";
pub const TRACKING_ID_HEADER: &str = "x-zm-trackingid";
pub const URL_VALIDATION_EVENT: &str = "endpoint.url_validation";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the x-zm-request-timestamp or x-zm-signature header is missing")]
    MissingHeaders,
    #[error("x-zm-signature does not match the body with any configured secret token")]
    InvalidSignature,
    #[error("x-zm-request-timestamp is outside the accepted window")]
    StaleTimestamp,
}

/// A secret token together with whatever the caller wants back when it matches (an account).
pub struct SigningKey<T> {
    pub owner: T,
    pub secret: SecretString,
}

/// A request as received: nothing in it is trusted yet.
pub struct Unverified<'a> {
    timestamp: Option<&'a str>,
    signature: Option<&'a str>,
    body: &'a [u8],
}

/// The signature headers, checked for form and freshness: what can be refused before the body
/// is read or any HMAC is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    timestamp: String,
    sent_at: i64,
    digest: [u8; 32],
}

/// A request whose signature matched one of the keys, within the time window.
#[derive(Debug)]
pub struct Verified<'a, T> {
    owner: &'a T,
    secret: &'a SecretString,
    body: &'a [u8],
}

impl SignedHeaders {
    /// `x-zm-request-timestamp` within `now_secs ± tolerance_secs`, and `x-zm-signature` of the
    /// form `v0=` + 64 hex digits. Cheap: run it before reading the body.
    pub fn parse(
        timestamp: Option<&str>,
        signature: Option<&str>,
        now_secs: i64,
        tolerance_secs: u64,
    ) -> Result<Self, VerifyError> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(VerifyError::MissingHeaders);
        };
        let mut digest = [0u8; 32];
        signature
            .strip_prefix("v0=")
            .filter(|hex_digest| hex_digest.len() == 64)
            .and_then(|hex_digest| hex::decode_to_slice(hex_digest, &mut digest).ok())
            .ok_or(VerifyError::InvalidSignature)?;
        let sent_at: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::StaleTimestamp)?;
        if now_secs.abs_diff(sent_at) > tolerance_secs {
            return Err(VerifyError::StaleTimestamp);
        }
        Ok(Self {
            timestamp: timestamp.to_owned(),
            sent_at,
            digest,
        })
    }

    /// `x-zm-request-timestamp` as sent.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }

    /// `x-zm-request-timestamp`, in seconds.
    pub fn sent_at(&self) -> i64 {
        self.sent_at
    }

    /// The signature's bytes: names this exact delivery (same body, same timestamp).
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Checks the signature over `body` against each key, in constant time per comparison.
    pub fn verify<'k, T>(
        &self,
        body: &'k [u8],
        keys: &'k [SigningKey<T>],
    ) -> Result<Verified<'k, T>, VerifyError> {
        let key = keys
            .iter()
            .find(|key| {
                let mut mac = mac(&key.secret);
                mac.update(b"v0:");
                mac.update(self.timestamp.as_bytes());
                mac.update(b":");
                mac.update(body);
                mac.verify_slice(&self.digest).is_ok()
            })
            .ok_or(VerifyError::InvalidSignature)?;
        Ok(Verified {
            owner: &key.owner,
            secret: &key.secret,
            body,
        })
    }
}

impl<'a> Unverified<'a> {
    pub fn new(timestamp: Option<&'a str>, signature: Option<&'a str>, body: &'a [u8]) -> Self {
        Self {
            timestamp,
            signature,
            body,
        }
    }

    /// The headers' form and freshness first, then the signature against each key.
    pub fn verify<'k, T>(
        self,
        keys: &'k [SigningKey<T>],
        now_secs: i64,
        tolerance_secs: u64,
    ) -> Result<Verified<'k, T>, VerifyError>
    where
        'a: 'k,
    {
        SignedHeaders::parse(self.timestamp, self.signature, now_secs, tolerance_secs)?
            .verify(self.body, keys)
    }
}

impl<'a, T> Verified<'a, T> {
    /// Who the matching key belongs to.
    pub fn owner(&self) -> &'a T {
        self.owner
    }

    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The `encryptedToken` answering an `endpoint.url_validation` challenge, keyed by the same
    /// secret token that signed the challenge.
    pub fn answer_url_validation(&self, plain_token: &str) -> String {
        encrypted_token(self.secret, plain_token)
    }

    /// Whether `signature` (hex) is the HMAC of `message` under the secret token that verified
    /// this request: for claims a sender adds alongside the body (see [`sign_message`]).
    pub fn same_key_signed(&self, message: &[u8], signature: &str) -> bool {
        let mut digest = [0u8; 32];
        if signature.len() != 64 || hex::decode_to_slice(signature, &mut digest).is_err() {
            return false;
        }
        let mut mac = mac(self.secret);
        mac.update(message);
        mac.verify_slice(&digest).is_ok()
    }
}

/// hex HMAC-SHA256(secret token, message).
pub fn sign_message(secret: &SecretString, message: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn mac(secret: &SecretString) -> HmacSha256 {
    // HMAC accepts keys of any length: this cannot fail.
    HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`: what Zoom sends in `x-zm-signature`.
pub fn sign(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// hex HMAC-SHA256(secret token, plainToken).
pub fn encrypted_token(secret: &SecretString, plain_token: &str) -> String {
    sign_message(secret, plain_token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(tokens: &[&str]) -> Vec<SigningKey<usize>> {
        tokens
            .iter()
            .enumerate()
            .map(|(owner, token)| SigningKey {
                owner,
                secret: SecretString::from(*token),
            })
            .collect()
    }

    #[test]
    fn sign_matches_independent_vector() {
        // printf 'v0:1700000000:{"event":"x"}' | openssl dgst -sha256 -hmac secret
        let expected = "v0=aaaddc2382ce58a607b298ab6361ae1667ddff72c622b1993fd76c02908634c3";
        let signature = sign(
            &SecretString::from("secret"),
            1_700_000_000,
            br#"{"event":"x"}"#,
        );
        assert_eq!(signature, expected);
    }

    #[test]
    fn encrypted_token_matches_independent_vector() {
        // printf 'qgg8vlvZRS6UYooatFL8Aw' | openssl dgst -sha256 -hmac zoom-secret-token
        let expected = "d9e0d764a78494688ba3f2d5c0ed4ca311394b4834d959759213424d2df961e3";
        let token = encrypted_token(
            &SecretString::from("zoom-secret-token"),
            "qgg8vlvZRS6UYooatFL8Aw",
        );
        assert_eq!(token, expected);
    }

    #[test]
    fn accepts_any_configured_token_and_reports_its_owner() {
        let body = br#"{"event":"x"}"#;
        let signature = sign(&SecretString::from("new"), 1_700_000_000, body);
        let keys = keys(&["old", "new"]);
        let verified = Unverified::new(Some("1700000000"), Some(&signature), body)
            .verify(&keys, 1_700_000_010, 300)
            .expect("verifies");
        assert_eq!(*verified.owner(), 1);
    }

    #[test]
    fn rejects_missing_headers_before_anything_else() {
        let keys = keys(&["secret"]);
        let result = Unverified::new(None, Some("v0=00"), b"{}").verify(&keys, 0, 300);
        assert_eq!(result.unwrap_err(), VerifyError::MissingHeaders);
    }

    #[test]
    fn rejects_non_hex_and_wrong_scheme() {
        let keys = keys(&["secret"]);
        let short = format!("v0={}", "a".repeat(62));
        for signature in ["v0=zz", "v1=00", "", "00", short.as_str()] {
            let result = Unverified::new(Some("1"), Some(signature), b"{}").verify(&keys, 1, 300);
            assert_eq!(
                result.unwrap_err(),
                VerifyError::InvalidSignature,
                "{signature}"
            );
        }
    }

    #[test]
    fn a_stale_timestamp_is_refused_before_any_hmac() {
        // A malformed or stale request is refused from its headers alone.
        let signature = format!("v0={}", "0".repeat(64));
        assert_eq!(
            SignedHeaders::parse(Some("1000"), Some(&signature), 5_000, 300),
            Err(VerifyError::StaleTimestamp)
        );
        assert!(SignedHeaders::parse(Some("1000"), Some(&signature), 1_100, 300).is_ok());
    }

    #[test]
    fn rejects_stale_and_future_timestamps() {
        let keys = keys(&["secret"]);
        let signature = sign(&SecretString::from("secret"), 1_000, b"{}");
        for now in [1_000 + 301, 1_000 - 301] {
            let result =
                Unverified::new(Some("1000"), Some(&signature), b"{}").verify(&keys, now, 300);
            assert_eq!(result.unwrap_err(), VerifyError::StaleTimestamp);
        }
    }
}
