//! The error types the Lambdas raise and the retries the state machine applies to them. The
//! state machine (`state-machine/tasks.asl.json`) and the local runner both follow this; tests
//! check that they agree. A webhook's failures are not errors here: execute-task answers them as
//! outcomes ("retry at T" or "failed") by the task's own policy (`retry_policy`).

use crate::delivery::DeliveryError;
use crate::ports::StoreError;

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

/// Failures of the Lambda service itself, and a function whose init failed (a cold start that
/// could not read its secret, say: the handler never ran), retried by the state machine before
/// any Catch. A retried run that finds an attempt begun by the first waits for it and counts it.
pub const LAMBDA_SERVICE_ERRORS: [&str; 4] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Runtime.ExitError",
];

/// The account's Lambda concurrency is used up: retried for minutes (`THROTTLE_RETRY`), since
/// a hotspot's invocations are served in turn and a task must not end FAILED for waiting.
pub const LAMBDA_THROTTLED: &str = "Lambda.TooManyRequestsException";

/// Step Functions' Retry fields of a Task state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateRetry {
    pub interval_seconds: u64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    /// `MaxDelaySeconds`: no delay is longer.
    pub max_delay_seconds: Option<u64>,
    /// `"JitterStrategy": "FULL"`: each delay is drawn between 0 and the computed one.
    pub full_jitter: bool,
}

/// execute-task's retry on its own errors (the store, an early wake): 2, 4, 8, 16, 30 and 30 s
/// apart, a minute and a half in all, so that a store throttled by a hotspot delays its tasks
/// instead of failing them (no attempt has begun when these are raised).
pub const EXECUTE_RETRY: StateRetry = StateRetry {
    interval_seconds: 2,
    max_attempts: 6,
    backoff_rate: 2.0,
    max_delay_seconds: Some(30),
    full_jitter: false,
};

/// update-status' retry on `StoreUnavailable`: the outcome must not be lost to a store hiccup
/// or a hotspot's throttling (three minutes in all).
pub const STATUS_RETRY: StateRetry = StateRetry {
    interval_seconds: 1,
    max_attempts: 10,
    backoff_rate: 2.0,
    max_delay_seconds: Some(30),
    full_jitter: false,
};

/// Every Lambda Task state's retry on `LAMBDA_THROTTLED`: up to 30 s apart with full jitter, so
/// throttled invocations spread out instead of coming back together; eight minutes at most.
pub const THROTTLE_RETRY: StateRetry = StateRetry {
    interval_seconds: 1,
    max_attempts: 20,
    backoff_rate: 2.0,
    max_delay_seconds: Some(30),
    full_jitter: true,
};

impl StateRetry {
    /// The longest delay before retry number `retry` (1-based), as Step Functions computes it
    /// (jitter only shortens it).
    pub fn delay(&self, retry: u32) -> std::time::Duration {
        let seconds = self.interval_seconds as f64 * self.backoff_rate.powi(retry as i32 - 1);
        let capped = self
            .max_delay_seconds
            .map_or(seconds, |cap| seconds.min(cap as f64));
        std::time::Duration::from_secs_f64(capped)
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

/// The errorType of a store error that ends a step. A store that did not answer may answer the
/// next invocation (`StoreUnavailable`, retried); any other store error that reaches a step's end
/// (a task or page token the step did not expect) would meet the same answer again
/// (`StoreRefused`, caught like any error the state machine does not retry).
pub fn store_error_type(error: &StoreError) -> &'static str {
    match error {
        StoreError::Unavailable { .. } => "StoreUnavailable",
        StoreError::AlreadyExists(_)
        | StoreError::NotFound(_)
        | StoreError::Conflict { .. }
        | StoreError::InvalidPageToken => "StoreRefused",
    }
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
    fn only_a_store_that_did_not_answer_is_worth_another_invocation() {
        let unavailable = StoreError::Unavailable {
            message: "throttled".into(),
            request_id: None,
        };
        assert_eq!(store_error_type(&unavailable), "StoreUnavailable");
        assert!(is_retryable(store_error_type(&unavailable)));
        for refused in [
            StoreError::NotFound("t".into()),
            StoreError::AlreadyExists("t".into()),
            StoreError::InvalidPageToken,
        ] {
            assert_eq!(store_error_type(&refused), "StoreRefused");
            assert!(!is_retryable(store_error_type(&refused)));
        }
    }

    #[test]
    fn delays_follow_the_backoff() {
        assert_eq!(EXECUTE_RETRY.delay(1).as_secs(), 2);
        assert_eq!(EXECUTE_RETRY.delay(2).as_secs(), 4);
        assert_eq!(EXECUTE_RETRY.delay(3).as_secs(), 8);
        assert_eq!(EXECUTE_RETRY.delay(6).as_secs(), 30);
        assert_eq!(THROTTLE_RETRY.delay(5).as_secs(), 16);
        assert_eq!(THROTTLE_RETRY.delay(6).as_secs(), 30);
        let longest: u64 = (1..=THROTTLE_RETRY.max_attempts)
            .map(|retry| THROTTLE_RETRY.delay(retry).as_secs())
            .sum();
        assert_eq!(longest, 1 + 2 + 4 + 8 + 16 + 30 * 15);
    }
}
