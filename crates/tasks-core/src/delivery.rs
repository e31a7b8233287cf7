//! A delivery: the webhook request, the receiver's answer, why an attempt failed, and how a
//! task's retry policy answers that failure.

use crate::model::retry_policy::{RetryOn, RetryPolicy};
use crate::model::task::{Task, Webhook};
use chrono::{DateTime, Duration, Utc};

/// Why a webhook attempt failed. Each kind has a stable name (`error_types::delivery_error_type`),
/// the prefix of the task's `lastError`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// The target resolves to a loopback, private or link-local address.
    #[error("refused: {0}")]
    Refused(String),
    /// The receiver answered, but not 2xx.
    #[error("the receiver answered HTTP {status}")]
    Status {
        status: u16,
        /// `Retry-After` in seconds, when the receiver gave one.
        retry_after: Option<u32>,
    },
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("could not connect: {0}")]
    Connection(String),
    #[error("the request could not be built: {0}")]
    Invalid(String),
}

/// One webhook request: an attempt of the task's webhook, or its failure callback.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookCall<'a> {
    pub task: &'a Task,
    pub webhook: &'a Webhook,
    pub attempt: u32,
    /// The message's id (`webhook-id`, `Idempotency-Key`): the series' for its webhook
    /// ([`Task::message_id`]), another for each of its other messages.
    pub message_id: String,
}

/// The receiver's answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebhookResponse {
    pub status: u16,
    /// `Retry-After` in seconds, when given.
    pub retry_after: Option<u32>,
    /// The start of the body (at most [`RESPONSE_BODY_BYTES`], cut at a character boundary).
    pub body: String,
}

/// How much of a response body an attempt keeps.
pub const RESPONSE_BODY_BYTES: usize = 256;

impl WebhookResponse {
    /// A non-2xx answer is a failed attempt.
    pub fn failure(&self) -> Option<DeliveryError> {
        (!(200..=299).contains(&self.status)).then_some(DeliveryError::Status {
            status: self.status,
            retry_after: self.retry_after,
        })
    }
}

/// How a task's retry policy answers a failed attempt.
impl RetryPolicy {
    /// Whether a failed attempt is worth another. A refused target, a request that cannot be
    /// built, 410 Gone and any status the policy does not name are final.
    pub fn retries(&self, failure: &DeliveryError) -> bool {
        let named = |wanted: &RetryOn| match (failure, wanted) {
            (DeliveryError::Timeout(_), RetryOn::Class(class)) => class == "timeout",
            (DeliveryError::Connection(_), RetryOn::Class(class)) => class == "connection",
            (DeliveryError::Status { status, .. }, RetryOn::Status(code)) => status == code,
            (DeliveryError::Status { status, .. }, RetryOn::Class(class)) => {
                class == "5xx" && (500..=599).contains(status)
            }
            _ => false,
        };
        !matches!(failure, DeliveryError::Status { status: 410, .. })
            && self.retry_on.iter().any(named)
    }

    /// After attempt `attempt` (1-based, in its series) failed at `now`: when to try again, or
    /// `None` when the task has failed. A `Retry-After` the receiver gave is honoured up to
    /// `maxSeconds`.
    pub fn next_attempt(
        &self,
        attempt: u32,
        failure: &DeliveryError,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if attempt >= self.max_attempts || !self.retries(failure) {
            return None;
        }
        let mut wait = self.backoff(attempt);
        if let DeliveryError::Status {
            retry_after: Some(seconds),
            ..
        } = failure
        {
            let asked =
                Duration::seconds(i64::from(*seconds).min(i64::from(self.backoff.max_seconds)));
            wait = wait.max(asked);
        }
        Some(now + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn status(status: u16, retry_after: Option<u32>) -> DeliveryError {
        DeliveryError::Status {
            status,
            retry_after,
        }
    }

    #[test]
    fn the_default_is_four_attempts_after_2_4_and_8_seconds() {
        let policy = RetryPolicy::default();
        policy.check().unwrap();
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let error = status(503, None);
        let waits: Vec<Option<i64>> = (1..=4)
            .map(|attempt| {
                policy
                    .next_attempt(attempt, &error, now)
                    .map(|at| (at - now).num_seconds())
            })
            .collect();
        assert_eq!(waits, vec![Some(2), Some(4), Some(8), None]);
        for retried in [
            status(500, None),
            status(599, None),
            status(408, None),
            status(429, None),
            DeliveryError::Timeout(10_000),
            DeliveryError::Connection("refused".into()),
        ] {
            assert!(policy.retries(&retried), "{retried:?}");
        }
        for last in [
            status(400, None),
            status(404, None),
            status(410, None),
            status(301, None),
            DeliveryError::Refused("10.0.0.1".into()),
            DeliveryError::Invalid("bad".into()),
        ] {
            assert!(!policy.retries(&last), "{last:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_max_seconds() {
        let policy = RetryPolicy::default();
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let wait = |after| {
            (policy
                .next_attempt(1, &status(429, Some(after)), now)
                .unwrap()
                - now)
                .num_seconds()
        };
        assert_eq!(wait(5), 5);
        assert_eq!(wait(600), 300);
        assert_eq!(wait(1), 2);
    }

    #[test]
    fn a_policy_names_what_it_retries_and_its_waits_grow_to_the_cap() {
        let policy: RetryPolicy = serde_json::from_value(serde_json::json!({
            "maxAttempts": 10,
            "backoff": {"initialSeconds": 60, "multiplier": 3, "maxSeconds": 3600},
            "retryOn": [404, "timeout"]
        }))
        .unwrap();
        policy.check().unwrap();
        assert!(policy.retries(&status(404, None)));
        assert!(!policy.retries(&status(503, None)));
        let waits: Vec<i64> = (1..=6).map(|r| policy.backoff(r).num_seconds()).collect();
        assert_eq!(waits, vec![60, 180, 540, 1620, 3600, 3600]);
    }
}
