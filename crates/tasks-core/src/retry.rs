//! The error types the Lambdas raise and the retries the state machine applies to them. The
//! state machine (`state-machine/tasks.asl.json`) and the local runner both follow this; tests
//! check that they agree. A webhook's failures are not errors here: execute-task answers them as
//! outcomes ("retry at T" or "failed") by the task's own policy (`retry_policy`).

use crate::ports::{DeliveryError, StoreError};

/// Errors execute-task raises that another invocation may not meet: the store may recover, and
/// an execution woken early sleeps again.
pub const RETRYABLE_ERRORS: [&str; 2] = ["TaskNotDue", "StoreUnavailable"];

/// The name of each way a webhook attempt fails: the prefix of the task's `lastError` and the
/// `error` of its attempt.
pub const WEBHOOK_FAILURES: [&str; 5] = [
    "WebhookServerError",
    "WebhookRejected",
    "WebhookTimeout",
    "WebhookConnectionError",
    "WebhookRefused",
];

/// Failures of the Lambda service itself, retried by the state machine before any Catch.
pub const LAMBDA_SERVICE_ERRORS: [&str; 4] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

/// Step Functions' Retry fields of a Task state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateRetry {
    pub interval_seconds: u64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
}

/// execute-task's retry on its own errors (the store, an early wake): 2 s, 4 s and 8 s apart.
pub const EXECUTE_RETRY: StateRetry = StateRetry {
    interval_seconds: 2,
    max_attempts: 3,
    backoff_rate: 2.0,
};

/// update-status' retry on `StoreUnavailable`: the outcome must not be lost to a store hiccup.
pub const STATUS_RETRY: StateRetry = StateRetry {
    interval_seconds: 1,
    max_attempts: 5,
    backoff_rate: 2.0,
};

impl StateRetry {
    /// The delay before retry number `retry` (1-based), as Step Functions computes it.
    pub fn delay(&self, retry: u32) -> std::time::Duration {
        let seconds = self.interval_seconds as f64 * self.backoff_rate.powi(retry as i32 - 1);
        std::time::Duration::from_secs_f64(seconds)
    }
}

pub fn delivery_error_type(error: &DeliveryError) -> &'static str {
    match error {
        DeliveryError::Refused(_) => "WebhookRefused",
        DeliveryError::Status {
            status: 500..=599 | 408 | 429,
            ..
        } => "WebhookServerError",
        DeliveryError::Status { .. } => "WebhookRejected",
        DeliveryError::Invalid(_) => "WebhookInvalid",
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
    fn every_delivery_error_has_a_webhook_failure_name() {
        let errors = [
            DeliveryError::Refused("x".into()),
            DeliveryError::Status {
                status: 404,
                retry_after: None,
            },
            DeliveryError::Status {
                status: 503,
                retry_after: None,
            },
            DeliveryError::Invalid("x".into()),
            DeliveryError::Timeout(10),
            DeliveryError::Connection("x".into()),
        ];
        for error in errors {
            let name = delivery_error_type(&error);
            assert!(
                WEBHOOK_FAILURES.contains(&name) || name == "WebhookInvalid",
                "{name}"
            );
            assert!(!is_retryable(name));
        }
        assert!(is_retryable("StoreUnavailable"));
    }

    #[test]
    fn delays_follow_the_backoff() {
        assert_eq!(EXECUTE_RETRY.delay(1).as_secs(), 2);
        assert_eq!(EXECUTE_RETRY.delay(2).as_secs(), 4);
        assert_eq!(EXECUTE_RETRY.delay(3).as_secs(), 8);
    }
}
