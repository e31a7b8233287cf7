//! Standard Webhooks signatures: every request carries `webhook-id`, `webhook-timestamp` and
//! `webhook-signature`, so a receiver can tell the service's requests from anyone else's.
//!
//! Secrets are in the specification's `whsec_<base64>` form. With two secrets configured (during
//! a rotation) every request carries a signature by each, separated by a space, and a receiver
//! holding either secret accepts it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::BTreeMap;
use std::fmt;
use tasks_core::model::task::is_valid_signing_name;
use tasks_core::request::signing::SigningSecretNames;
use tasks_core::{DeliveryError, Webhook};

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

/// Every secret requests may be signed with: the deployment's, and the ones the operator created
/// by name for tasks that choose one (`"signing": {"secret": "<name>"}`). Each rotates on its
/// own: a name's value may hold its current and its previous secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    deployment: SigningKeys,
    named: BTreeMap<String, SigningKeys>,
}

impl From<SigningKeys> for Keyring {
    fn from(deployment: SigningKeys) -> Self {
        Keyring {
            deployment,
            named: BTreeMap::new(),
        }
    }
}

impl Keyring {
    /// The deployment's secrets and the named ones.
    pub fn new(deployment: SigningKeys, named: BTreeMap<String, SigningKeys>) -> Self {
        Keyring { deployment, named }
    }

    /// Named secrets as local mode configures them: `name=secret[,previous]` entries separated by
    /// `;` (each secret as [`SigningKeys::parse`] takes it).
    pub fn parse_named(text: &str) -> Result<BTreeMap<String, SigningKeys>, NamedSecretError> {
        let mut named = BTreeMap::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, secrets) = entry.split_once('=').ok_or(NamedSecretError::NotAnEntry)?;
            let name = name.trim();
            if !is_valid_signing_name(name) {
                return Err(NamedSecretError::BadName(name.to_string()));
            }
            let keys = SigningKeys::parse(secrets).map_err(|error| NamedSecretError::Secret {
                name: name.to_string(),
                error,
            })?;
            if named.insert(name.to_string(), keys).is_some() {
                return Err(NamedSecretError::Twice(name.to_string()));
            }
        }
        Ok(named)
    }

    /// The names of the operator's secrets, for the API to accept.
    pub fn names(&self) -> SigningSecretNames {
        self.named.keys().cloned().collect()
    }

    /// The secrets `webhook` is signed with. A name the deployment does not have (removed since
    /// the task chose it) is an attempt that cannot be made: it is never signed with another
    /// secret instead.
    pub fn keys_for(&self, webhook: &Webhook) -> Result<&SigningKeys, DeliveryError> {
        match &webhook.signing {
            None => Ok(&self.deployment),
            Some(signing) => self.named.get(&signing.secret).ok_or_else(|| {
                DeliveryError::Invalid(format!(
                    "the signing secret `{}` is not configured in this deployment",
                    signing.secret
                ))
            }),
        }
    }

    /// Reads the deployment's secret (`deployment_id`) and each named one (`<prefix><name>`)
    /// from AWS Secrets Manager, all at once (done at cold start).
    pub async fn from_secrets_manager(
        config: &aws_config::SdkConfig,
        deployment_id: &str,
        prefix: &str,
        names: &SigningSecretNames,
    ) -> Result<Self, SecretError> {
        let named = names.iter().map(|name| async move {
            let keys = SigningKeys::from_secrets_manager(config, &format!("{prefix}{name}"))
                .await
                .map_err(|error| SecretError::Unreadable(format!("`{name}`: {error}")))?;
            Ok::<_, SecretError>((name.to_string(), keys))
        });
        let (deployment, named) = futures::join!(
            SigningKeys::from_secrets_manager(config, deployment_id),
            futures::future::try_join_all(named)
        );
        Ok(Keyring {
            deployment: deployment?,
            named: named?.into_iter().collect(),
        })
    }
}

/// A local `WEBHOOK_NAMED_SIGNING_SECRETS` that cannot be used; never says a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamedSecretError {
    #[error("an entry is not `name=secret`")]
    NotAnEntry,
    #[error("`{0}` is not a name of 1 to 64 letters, digits, - and _")]
    BadName(String),
    #[error("`{0}` is given twice")]
    Twice(String),
    #[error("`{name}`: {error}")]
    Secret { name: String, error: SecretError },
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

    #[test]
    fn named_secrets_are_parsed_each_with_its_rotation_and_never_shown() {
        let other = SigningKeys::generate().unwrap().secrets()[0].clone();
        let named =
            Keyring::parse_named(&format!(" billing={other},{SECRET} ; crm={SECRET};")).unwrap();
        assert_eq!(
            named["billing"].secrets(),
            vec![other.clone(), SECRET.to_string()]
        );
        assert_eq!(named["crm"].secrets(), vec![SECRET]);
        assert_eq!(Keyring::parse_named("").unwrap(), BTreeMap::new());
        for (text, error) in [
            ("billing", NamedSecretError::NotAnEntry),
            (
                &format!("a/b={SECRET}"),
                NamedSecretError::BadName("a/b".into()),
            ),
            (
                &format!("a={SECRET};a={SECRET}"),
                NamedSecretError::Twice("a".into()),
            ),
        ] {
            assert_eq!(Keyring::parse_named(text).unwrap_err(), error, "{text}");
        }
        let malformed = Keyring::parse_named("a=whsec_c2VjcmV0").unwrap_err();
        assert!(!malformed.to_string().contains("c2VjcmV0"), "{malformed}");
        let keyring = Keyring::new(SigningKeys::parse(SECRET).unwrap(), named);
        assert!(!format!("{keyring:?}").contains(&other));
    }
}
