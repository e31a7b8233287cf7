//! Signing secrets by name: an operator may create a signing secret for a receiver (or a group of
//! them) and a task names it (`"signing": {"secret": "<name>"}`), so that a receiver holding its
//! own secret cannot forge requests another receiver accepts. The API knows the names only;
//! execute-task alone reads the values.

use crate::config::{env_optional, ConfigError, SIGNING_SECRET_NAMES};
use crate::model::task::{is_valid_signing_name, Webhook};
use crate::request::new_task::ValidationError;
use std::collections::BTreeSet;

/// At most this many named secrets: execute-task reads each one when it starts.
pub const MAX_NAMES: usize = 20;

/// The names of the signing secrets the operator created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigningSecretNames(BTreeSet<String>);

impl SigningSecretNames {
    /// Comma-separated names; blanks between commas are ignored.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let names: BTreeSet<String> = text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        if names.len() > MAX_NAMES || !names.iter().all(|name| is_valid_signing_name(name)) {
            return Err(ConfigError {
                name: SIGNING_SECRET_NAMES,
                expected: "at most 20 comma-separated names of 1 to 64 letters, digits, - and _",
                value: text.to_string(),
            });
        }
        Ok(SigningSecretNames(names))
    }

    /// From [`SIGNING_SECRET_NAMES`]; none when unset.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse(&env_optional(SIGNING_SECRET_NAMES).unwrap_or_default())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Refuses a task's webhook or callback that names a secret the operator did not create: its
    /// attempts could only fail.
    pub fn check_requests(
        &self,
        webhook: Option<&Webhook>,
        on_failure: Option<&Webhook>,
    ) -> Result<(), ValidationError> {
        self.check(webhook, "webhook")?;
        self.check(on_failure, "onFailure")
    }

    fn check(&self, request: Option<&Webhook>, field: &str) -> Result<(), ValidationError> {
        let Some(signing) = request.and_then(|request| request.signing.as_ref()) else {
            return Ok(());
        };
        if self.0.contains(&signing.secret) {
            return Ok(());
        }
        let known = if self.0.is_empty() {
            "this deployment has none".to_string()
        } else {
            format!(
                "this deployment has {}",
                self.iter().collect::<Vec<_>>().join(", ")
            )
        };
        Err(ValidationError::new(
            "unknown_signing_secret",
            Some(&format!("{field}.signing.secret")),
            format!(
                "`{field}.signing.secret` names no signing secret of this deployment ({known}); \
                 leave `signing` out to sign with the deployment's own"
            ),
        ))
    }
}

impl<S: Into<String>> FromIterator<S> for SigningSecretNames {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> Self {
        SigningSecretNames(names.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::Signing;

    #[test]
    fn names_are_parsed_and_checked() {
        let names = SigningSecretNames::parse(" billing, crm-eu ,,").unwrap();
        assert_eq!(names.iter().collect::<Vec<_>>(), vec!["billing", "crm-eu"]);
        assert_eq!(
            SigningSecretNames::parse("").unwrap(),
            SigningSecretNames::default()
        );
        for bad in ["a/b", "name with space", &"x".repeat(65)] {
            assert!(SigningSecretNames::parse(bad).is_err(), "{bad}");
        }
        let too_many: Vec<String> = (0..=MAX_NAMES).map(|n| format!("s{n}")).collect();
        assert!(SigningSecretNames::parse(&too_many.join(",")).is_err());
    }

    #[test]
    fn a_request_may_name_only_a_secret_the_operator_created() {
        let names: SigningSecretNames = ["billing"].into_iter().collect();
        let signed = |secret: &str| Webhook {
            signing: Some(Signing {
                secret: secret.into(),
            }),
            ..Webhook::new("https://example.com/", "POST")
        };
        assert_eq!(names.check_requests(None, None), Ok(()));
        let unsigned = Webhook::new("https://example.com/", "POST");
        let billing = signed("billing");
        assert_eq!(
            names.check_requests(Some(&unsigned), Some(&billing)),
            Ok(())
        );
        let crm = signed("crm");
        let error = names.check_requests(Some(&crm), None).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("webhook.signing.secret"));
        let error = names
            .check_requests(Some(&billing), Some(&crm))
            .unwrap_err();
        assert_eq!(error.code, "unknown_signing_secret");
        assert_eq!(error.field.as_deref(), Some("onFailure.signing.secret"));
        assert!(error.message.contains("has billing"), "{}", error.message);
    }
}
