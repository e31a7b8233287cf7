//! A task's own retry policy: how many attempts, how far apart, and which failures are worth
//! another. execute-task applies it after each failed attempt and answers "retry at T" or
//! "failed"; the state machine's loop (a Choice and a Wait until T) does the waiting, so a retry
//! can be hours away without a Lambda waiting for it.

use chrono::Duration;
use serde::{Deserialize, Serialize};

pub const MAX_ATTEMPTS: u32 = 20;
/// The longest wait between two attempts: a day.
pub const MAX_BACKOFF_SECONDS: u32 = 86_400;
pub const MAX_MULTIPLIER: f64 = 10.0;

/// What `retryOn` may name besides an HTTP status code.
pub const RETRY_ON_CLASSES: [&str; 3] = ["5xx", "timeout", "connection"];

/// Every field may be left out and takes its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Every attempt of a series counts, the first included.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// HTTP status codes and the words `5xx`, `timeout` and `connection`.
    pub retry_on: Vec<RetryOn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Backoff {
    pub initial_seconds: u32,
    pub multiplier: f64,
    pub max_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RetryOn {
    Status(u16),
    Class(String),
}

impl Default for Backoff {
    fn default() -> Self {
        // 2, 4 and 8 s for four attempts; a receiver's Retry-After is honoured up to 5 minutes.
        Backoff {
            initial_seconds: 2,
            multiplier: 2.0,
            max_seconds: 300,
        }
    }
}

impl Default for RetryPolicy {
    /// Four attempts, 2, 4 and 8 s apart, on 5xx, 408, 429, timeouts and connection errors.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            backoff: Backoff::default(),
            retry_on: vec![
                RetryOn::Class("5xx".into()),
                RetryOn::Status(408),
                RetryOn::Status(429),
                RetryOn::Class("timeout".into()),
                RetryOn::Class("connection".into()),
            ],
        }
    }
}

/// Why a policy is not acceptable: the field at fault (below `retry`) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub field: &'static str,
    pub message: String,
}

impl RetryPolicy {
    pub fn check(&self) -> Result<(), PolicyError> {
        let fail = |field, message: String| Err(PolicyError { field, message });
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return fail(
                "maxAttempts",
                format!("`retry.maxAttempts` must be 1 to {MAX_ATTEMPTS}"),
            );
        }
        let backoff = &self.backoff;
        if !(1..=MAX_BACKOFF_SECONDS).contains(&backoff.initial_seconds) {
            return fail(
                "backoff.initialSeconds",
                format!("`retry.backoff.initialSeconds` must be 1 to {MAX_BACKOFF_SECONDS}"),
            );
        }
        if !(backoff.initial_seconds..=MAX_BACKOFF_SECONDS).contains(&backoff.max_seconds) {
            return fail(
                "backoff.maxSeconds",
                format!(
                    "`retry.backoff.maxSeconds` must be from `initialSeconds` to \
                     {MAX_BACKOFF_SECONDS}"
                ),
            );
        }
        if !(1.0..=MAX_MULTIPLIER).contains(&backoff.multiplier) {
            return fail(
                "backoff.multiplier",
                format!("`retry.backoff.multiplier` must be from 1 to {MAX_MULTIPLIER}"),
            );
        }
        for entry in &self.retry_on {
            let valid = match entry {
                RetryOn::Status(code) => (400..=599).contains(code) && *code != 410,
                RetryOn::Class(class) => RETRY_ON_CLASSES.contains(&class.as_str()),
            };
            if !valid {
                return fail(
                    "retryOn",
                    format!(
                        "`retry.retryOn` takes HTTP status codes from 400 to 599 (but not 410, \
                         which is always final) and the words {}",
                        RETRY_ON_CLASSES.join(", ")
                    ),
                );
            }
        }
        Ok(())
    }

    /// The longest the waits between a series' attempts can add up to: each at most
    /// `maxSeconds` (a `Retry-After` may ask for that much).
    pub fn longest_waits(&self) -> Duration {
        Duration::seconds(
            i64::from(self.max_attempts.saturating_sub(1)) * i64::from(self.backoff.max_seconds),
        )
    }

    /// The wait before retry number `retry` (1-based): `initialSeconds * multiplier^(retry-1)`,
    /// at most `maxSeconds`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let b = &self.backoff;
        let seconds = f64::from(b.initial_seconds) * b.multiplier.powi(retry as i32 - 1);
        let capped = seconds.min(f64::from(b.max_seconds));
        Duration::milliseconds((capped * 1000.0) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_policies_name_their_field() {
        let base = RetryPolicy::default();
        let cases = [
            (
                RetryPolicy {
                    max_attempts: 0,
                    ..base.clone()
                },
                "maxAttempts",
            ),
            (
                RetryPolicy {
                    max_attempts: 21,
                    ..base.clone()
                },
                "maxAttempts",
            ),
            (
                RetryPolicy {
                    backoff: Backoff {
                        initial_seconds: 0,
                        ..base.backoff
                    },
                    ..base.clone()
                },
                "backoff.initialSeconds",
            ),
            (
                RetryPolicy {
                    backoff: Backoff {
                        max_seconds: 1,
                        ..base.backoff
                    },
                    ..base.clone()
                },
                "backoff.maxSeconds",
            ),
            (
                RetryPolicy {
                    backoff: Backoff {
                        multiplier: 0.5,
                        ..base.backoff
                    },
                    ..base.clone()
                },
                "backoff.multiplier",
            ),
            (
                RetryPolicy {
                    retry_on: vec![RetryOn::Status(410)],
                    ..base.clone()
                },
                "retryOn",
            ),
            (
                RetryPolicy {
                    retry_on: vec![RetryOn::Status(200)],
                    ..base.clone()
                },
                "retryOn",
            ),
            (
                RetryPolicy {
                    retry_on: vec![RetryOn::Class("4xx".into())],
                    ..base.clone()
                },
                "retryOn",
            ),
        ];
        for (policy, field) in cases {
            assert_eq!(policy.check().unwrap_err().field, field, "{policy:?}");
        }
    }
}
