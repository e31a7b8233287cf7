//! The error types execute-task raises and the retry policy the workflow applies to them. The
//! state machine (`state-machine/tasks.asl.json`) and the local runner both follow this; tests
//! check that they agree.

use crate::ports::{DeliveryError, StoreError};

/// Errors worth another attempt: the receiver or the store may recover.
pub const RETRYABLE_ERRORS: [&str; 5] = [
    "WebhookServerError",
    "WebhookTimeout",
    "WebhookConnectionError",
    "TaskNotDue",
    "StoreUnavailable",
];

/// Errors another attempt cannot fix: they go straight to MarkFailed.
pub const PERMANENT_ERRORS: [&str; 3] = ["WebhookRejected", "WebhookRefused", "WebhookInvalid"];

/// Failures of the Lambda service itself, retried by the state machine before any Catch.
pub const LAMBDA_SERVICE_ERRORS: [&str; 4] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

/// Step Functions' Retry fields for execute-task's retryable errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub interval_seconds: u64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
}

/// Three retries after the first attempt, 2 s, 4 s and 8 s apart: a receiver gets 14 s to recover.
pub const WEBHOOK_RETRY: RetryPolicy = RetryPolicy {
    interval_seconds: 2,
    max_attempts: 3,
    backoff_rate: 2.0,
};

/// update-status' retry on `StoreUnavailable`: the outcome must not be lost to a store hiccup.
pub const STATUS_RETRY: RetryPolicy = RetryPolicy {
    interval_seconds: 1,
    max_attempts: 5,
    backoff_rate: 2.0,
};

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based), as Step Functions computes it.
    pub fn delay(&self, retry: u32) -> std::time::Duration {
        let seconds = self.interval_seconds as f64 * self.backoff_rate.powi(retry as i32 - 1);
        std::time::Duration::from_secs_f64(seconds)
    }
}

pub fn delivery_error_type(error: &DeliveryError) -> &'static str {
    match error {
        DeliveryError::Refused(_) => "WebhookRefused",
        DeliveryError::Rejected(_) => "WebhookRejected",
        DeliveryError::Invalid(_) => "WebhookInvalid",
        DeliveryError::ServerError(_) => "WebhookServerError",
        DeliveryError::Timeout(_) => "WebhookTimeout",
        DeliveryError::Connection(_) => "WebhookConnectionError",
    }
}

pub fn store_error_type(_: &StoreError) -> &'static str {
    "StoreUnavailable"
}

pub fn is_retryable(error_type: &str) -> bool {
    RETRYABLE_ERRORS.contains(&error_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delivery_error_has_exactly_one_class() {
        let errors = [
            DeliveryError::Refused("x".into()),
            DeliveryError::Rejected(404),
            DeliveryError::Invalid("x".into()),
            DeliveryError::ServerError(503),
            DeliveryError::Timeout(10),
            DeliveryError::Connection("x".into()),
        ];
        for error in errors {
            let name = delivery_error_type(&error);
            assert_ne!(
                RETRYABLE_ERRORS.contains(&name),
                PERMANENT_ERRORS.contains(&name),
                "{name}"
            );
        }
        assert!(is_retryable("WebhookTimeout"));
        assert!(!is_retryable("WebhookRejected"));
    }

    #[test]
    fn delays_follow_the_backoff() {
        assert_eq!(WEBHOOK_RETRY.delay(1).as_secs(), 2);
        assert_eq!(WEBHOOK_RETRY.delay(2).as_secs(), 4);
        assert_eq!(WEBHOOK_RETRY.delay(3).as_secs(), 8);
    }
}
