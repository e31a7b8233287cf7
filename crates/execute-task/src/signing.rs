//! Standard Webhooks signatures: every request carries `webhook-id`, `webhook-timestamp` and
//! `webhook-signature`, so a receiver can tell the service's requests from anyone else's.
//!
//! Secrets are in the specification's `whsec_<base64>` form. With two secrets configured (during
//! a rotation) every request carries a signature by each, separated by a space, and a receiver
//! holding either secret accepts it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt;

pub const SECRET_PREFIX: &str = "whsec_";
/// The specification asks for secrets of 24 to 64 random bytes.
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;
const GENERATED_SECRET_BYTES: usize = 32;
/// At most the current secret and the one being replaced.
pub const MAX_SECRETS: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("no webhook signing secret is configured")]
    Missing,
    #[error("at most {MAX_SECRETS} webhook signing secrets may be configured (current, previous)")]
    TooMany,
    /// Never says the secret itself.
    #[error("webhook signing secret {position} is not `whsec_` followed by base64 of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")]
    Malformed { position: usize },
    #[error("cannot read the webhook signing secret: {0}")]
    Unreadable(String),
}

/// The secrets requests are signed with, the first being the current one.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeys {
    keys: Vec<Vec<u8>>,
}

/// Keeps secrets out of debug output and logs.
impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeys({} secret(s))", self.keys.len())
    }
}

impl SigningKeys {
    /// One or two comma-separated secrets, each `whsec_<base64>` (the prefix may be left out:
    /// Secrets Manager generates bare base64).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let secrets: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        match secrets.len() {
            0 => return Err(SecretError::Missing),
            n if n > MAX_SECRETS => return Err(SecretError::TooMany),
            _ => {}
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(index, secret)| {
                let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
                STANDARD
                    .decode(encoded)
                    .ok()
                    .filter(|bytes| (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()))
                    .ok_or(SecretError::Malformed {
                        position: index + 1,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(SigningKeys { keys })
    }

    /// A fresh random secret (32 bytes).
    pub fn generate() -> Result<Self, SecretError> {
        let mut bytes = vec![0u8; GENERATED_SECRET_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| SecretError::Unreadable(e.to_string()))?;
        Ok(SigningKeys { keys: vec![bytes] })
    }

    /// The secrets in `whsec_` form, current first: for the operator to hand to receivers.
    pub fn secrets(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|key| format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
            .collect()
    }

    /// The `webhook-signature` value for a message: one `v1,<base64>` per secret.
    pub fn signature(&self, id: &str, timestamp: i64, body: &str) -> String {
        self.keys
            .iter()
            .map(|key| {
                standardwebhooks::Webhook::from_bytes(key.clone())
                    .and_then(|signer| signer.sign(id, timestamp, body.as_bytes()))
                    .expect("raw key bytes and a UTF-8 body are all signing checks")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Reads the secret from AWS Secrets Manager (done once, at cold start).
    pub async fn from_secrets_manager(
        config: &aws_config::SdkConfig,
        secret_id: &str,
    ) -> Result<Self, SecretError> {
        let client = aws_sdk_secretsmanager::Client::new(config);
        let output = client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|error| {
                SecretError::Unreadable(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(error).to_string(),
                )
            })?;
        Self::parse(output.secret_string().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    #[test]
    fn signs_as_the_specification_s_example() {
        let keys = SigningKeys::parse(SECRET).unwrap();
        assert_eq!(
            keys.signature(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                r#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn two_secrets_give_two_signatures_current_first() {
        let other = SigningKeys::generate().unwrap();
        let both = SigningKeys::parse(&format!("{}, {SECRET}", other.secrets()[0])).unwrap();
        assert_eq!(both.secrets()[1], SECRET);
        let signature = both.signature("id", 1, "body");
        let parts: Vec<&str> = signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], other.signature("id", 1, "body"));
        assert_eq!(
            parts[1],
            SigningKeys::parse(SECRET)
                .unwrap()
                .signature("id", 1, "body")
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_being_repeated() {
        let short = format!("{SECRET_PREFIX}{}", STANDARD.encode([7u8; 16]));
        for (text, error) in [
            ("", SecretError::Missing),
            (" , ", SecretError::Missing),
            ("whsec_!!!", SecretError::Malformed { position: 1 }),
            (short.as_str(), SecretError::Malformed { position: 1 }),
        ] {
            assert_eq!(SigningKeys::parse(text).unwrap_err(), error, "{text}");
        }
        let three = [SECRET; 3].join(",");
        assert_eq!(
            SigningKeys::parse(&three).unwrap_err(),
            SecretError::TooMany
        );
        let error = SigningKeys::parse(&format!("{SECRET},whsec_c2VjcmV0")).unwrap_err();
        assert_eq!(error, SecretError::Malformed { position: 2 });
        assert!(!error.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn generated_secrets_are_random_whsec_secrets_of_32_bytes() {
        let (a, b) = (
            SigningKeys::generate().unwrap(),
            SigningKeys::generate().unwrap(),
        );
        assert_ne!(a.secrets(), b.secrets());
        let secret = a.secrets()[0].clone();
        let bytes = STANDARD
            .decode(secret.strip_prefix(SECRET_PREFIX).unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(
            SigningKeys::parse(&secret).unwrap().secrets(),
            vec![secret.clone()]
        );
        assert!(!format!("{a:?}").contains(&secret));
    }

    #[test]
    fn bare_base64_from_secrets_manager_is_accepted() {
        let bare = SECRET.strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(SigningKeys::parse(bare).unwrap().secrets(), vec![SECRET]);
    }
}
