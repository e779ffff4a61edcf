//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the receiver verifies
//! `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"))
//! with the key it shares, given as `whsec_` + base64 of 24 to 64 random bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

const PREFIX: &str = "whsec_";

/// A signing key, decoded once.
pub struct SigningKey(SecretBox<Vec<u8>>);

impl SigningKey {
    /// Parses `whsec_…`; the error never quotes the secret.
    pub fn parse(secret: &SecretString) -> Result<Self, String> {
        let text = secret.expose_secret().trim();
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("must start with `{PREFIX}` (a Standard Webhooks secret)"))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| format!("must be `{PREFIX}` followed by base64"))?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "must hold 24 to 64 bytes after `{PREFIX}` (it holds {})",
                key.len()
            ));
        }
        Ok(Self(SecretBox::new(Box::new(key))))
    }

    /// The `webhook-signature` value for one delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_example_as_its_reference_libraries_do() {
        // The example of the Standard Webhooks specification and its libraries' tests.
        let key = SigningKey::parse(&SecretString::from(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ))
        .expect("key");
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_secrets_of_another_form_without_quoting_them() {
        for secret in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_***",
            "whsec_c2hvcnQ=",
        ] {
            let error = SigningKey::parse(&SecretString::from(secret))
                .err()
                .unwrap_or_default();
            assert!(!error.is_empty(), "{secret} refused");
            assert!(!error.contains(secret), "{error}");
        }
    }
}
