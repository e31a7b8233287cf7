//! The stored task: its fields, its webhook, its attempt history, and the changes a write sets.

use crate::model::retry_policy::RetryPolicy;
use crate::model::status::TaskStatus;
use crate::model::time::rfc3339_millis;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The HTTP request a task makes at its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub url: String,
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The operator's signing secret the request is signed with, by name; `None`: the
    /// deployment's. A receiver given a secret of its own cannot forge another's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
    /// Whether attempts keep the start of the receiver's answer (redacted) beside its status.
    #[serde(default = "keeps", skip_serializing_if = "is_kept")]
    pub keep_response_body: bool,
}

impl Webhook {
    /// A request to `url` by `method` with no headers, no body, the deployment's signing secret,
    /// and its answers kept.
    pub fn new(url: impl Into<String>, method: impl Into<String>) -> Self {
        Webhook {
            url: url.into(),
            method: method.into(),
            headers: BTreeMap::new(),
            body: None,
            signing: None,
            keep_response_body: true,
        }
    }
}

fn keeps() -> bool {
    true
}

/// Answers are kept unless the request says otherwise, so only `false` is stored or shown.
pub fn is_kept(keep: &bool) -> bool {
    *keep
}

/// `"signing": {"secret": "<name>"}`: a signing secret the operator created, by its name (its
/// value is never given to or shown by the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    pub secret: String,
}

/// At most this many characters in a signing secret's name.
pub const MAX_SIGNING_NAME_CHARS: usize = 64;

/// Whether `name` may name a signing secret: 1 to [`MAX_SIGNING_NAME_CHARS`] ASCII letters,
/// digits, `-` and `_` (it becomes the last part of a Secrets Manager name, and of a local
/// setting).
pub fn is_valid_signing_name(name: &str) -> bool {
    (1..=MAX_SIGNING_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// A task as stored: one DynamoDB item, attribute names as in the original service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    #[serde(with = "rfc3339_millis")]
    pub timestamp: DateTime<Utc>,
    /// Epoch seconds: `timestamp` minus the lead time. The GSI's range key.
    pub start_execution_at: i64,
    pub task_status: TaskStatus,
    #[serde(with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_millis")]
    pub last_updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Webhook attempts begun. Once above zero the task can no longer be cancelled.
    #[serde(default)]
    pub attempts: u32,
    /// The delivery series the task is in. Every claim starts a new one, and its workflow
    /// execution is named after it (`<id>-<series>`): Step Functions keeps a name for 90 days
    /// after its execution ends, so a task that must run again needs a new name, and an
    /// execution of an older series can never begin an attempt (the write checks the series).
    #[serde(default)]
    pub series: u32,
    /// The series in which the latest attempt began (0: none yet). An ended execution whose
    /// series has no attempt can safely run again; one with an attempt may have delivered.
    #[serde(default)]
    pub attempt_series: u32,
    /// The attempts the task had when its current series began: the series' own attempts are
    /// the rest. (Absent on items stored before it was kept.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_start_attempts: Option<u32>,
    /// When the latest attempt is (or was) sent. Its begin is written before the sleep to that
    /// time, as much as a slot's preparation and the wake-ahead before it: another runner of the
    /// series counts its wait for an attempt in flight from here.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_millis::option"
    )]
    pub attempt_at: Option<DateTime<Utc>>,
    /// Times the task was re-sent or restarted because its execution did not start or ended
    /// without an outcome. Bounded, so a task that cannot be started ends FAILED.
    #[serde(default)]
    pub redispatches: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last webhook attempt was sent (or, without a webhook, when the task ran).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_millis::option"
    )]
    pub executed_at: Option<DateTime<Utc>>,
    /// `executedAt - timestamp` in milliseconds: how late the task ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness_ms: Option<i64>,
    /// The task's own retry policy; `None` is the default (`RetryPolicy::default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Called once when the task ends FAILED, with the task (without its webhook) as the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Webhook>,
    /// The attempts made, oldest first: at most [`MAX_ATTEMPT_HISTORY`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempt_history: Vec<AttemptRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// A digest of the creating request's body, to tell a retry from a different request that
    /// reuses an idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
    /// The slot execution the claim put the task in (`contracts::Slot`); cleared when the task goes
    /// back to waiting. A task handed over by its slot runs on in its own execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The token of the write that made the item what it is (a create's or a transition's). The
    /// AWS SDK retries a write whose answer was lost; when the first try was applied, the retry
    /// fails its condition, and this token in the item it gets back tells the writer that the
    /// write it sees is its own ([`crate::ports::Transition::settle`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_token: Option<String>,
    /// The retry its series waits for, when the attempt that asked for it was reported by a
    /// slot after the task's own execution had already started: that execution finds the
    /// retry's time and try count here instead of sending at once. Removed by the next begin
    /// and by every new series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<NextAttempt>,
    /// The series whose failure callback was taken to be called ([`Event::ClaimCallback`]).
    ///
    /// [`Event::ClaimCallback`]: crate::model::status::Event::ClaimCallback
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_series: Option<u32>,
    /// When the finished task is deleted, in epoch seconds (the table's TTL attribute): set by a
    /// change to a terminal status where the deployment keeps finished tasks for a time, removed
    /// by a retry. DynamoDB deletes the item, attempts included, within a few days after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A retry the task's policy asked for after attempt `after_attempt` of series `series`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NextAttempt {
    pub series: u32,
    pub after_attempt: u32,
    /// The ended attempt's number in its series (the retry policy counts from it).
    pub attempt_in_series: u32,
    #[serde(with = "rfc3339_millis")]
    pub at: DateTime<Utc>,
}

impl Task {
    /// A SCHEDULED task with nothing but its time, created at `now`; its execution starts
    /// `lead_time` before its time.
    pub fn new(
        id: impl Into<String>,
        timestamp: DateTime<Utc>,
        lead_time: Duration,
        now: DateTime<Utc>,
    ) -> Self {
        Task {
            id: id.into(),
            timestamp,
            start_execution_at: start_execution_at(timestamp, lead_time),
            task_status: TaskStatus::Scheduled,
            created_at: now,
            last_updated_at: now,
            webhook: None,
            payload: None,
            attempts: 0,
            series: 0,
            attempt_series: 0,
            series_start_attempts: None,
            attempt_at: None,
            redispatches: 0,
            last_error: None,
            executed_at: None,
            lateness_ms: None,
            retry: None,
            on_failure: None,
            attempt_history: Vec::new(),
            idempotency_key: None,
            request_digest: None,
            slot: None,
            write_token: Some(new_write_token()),
            next_attempt: None,
            callback_series: None,
            expires_at: None,
        }
    }

    /// The retry policy that applies: the task's own or the default.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry.clone().unwrap_or_default()
    }

    /// The name of the workflow execution of the task's current series.
    pub fn execution_name(&self) -> String {
        execution_name(&self.id, self.series)
    }

    /// The `webhook-id` and `Idempotency-Key` of the current series' webhook requests: the same
    /// on every retry of the series, so a receiver can drop a repeat by it; another for a new
    /// series (a user's retry or change), which the receiver must not drop.
    pub fn message_id(&self) -> String {
        execution_name(&self.id, self.series)
    }

    /// Whether an attempt began in the current series.
    pub fn attempt_began_in_series(&self) -> bool {
        self.attempts > 0 && self.attempt_series == self.series
    }

    /// The attempts begun in the current series, as far as the item tells: with no record of
    /// where the series began (an item stored before it was kept), the latest one only.
    pub fn attempts_in_series(&self) -> u32 {
        match (self.attempt_began_in_series(), self.series_start_attempts) {
            (false, _) => 0,
            (true, Some(start)) => self.attempts.saturating_sub(start).max(1),
            (true, None) => 1,
        }
    }

    /// The retry the current series waits for after its latest attempt, if one was handed over.
    pub fn scheduled_retry(&self) -> Option<&NextAttempt> {
        self.next_attempt
            .as_ref()
            .filter(|next| next.series == self.series && next.after_attempt == self.attempts)
    }

    /// Whole seconds until the task is due, never negative.
    pub fn time_left_seconds(&self, now: DateTime<Utc>) -> i64 {
        (self.timestamp - now).num_seconds().max(0)
    }
}

/// A token no other write of any task uses.
pub fn new_write_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A retry keeps this many of the attempts already recorded; each series adds at most
/// `retry_policy::MAX_ATTEMPTS`, so a task holds at most [`MAX_ATTEMPT_HISTORY`].
pub const ATTEMPT_HISTORY_KEPT_ON_RETRY: usize = 20;
pub const MAX_ATTEMPT_HISTORY: usize =
    ATTEMPT_HISTORY_KEPT_ON_RETRY + crate::model::retry_policy::MAX_ATTEMPTS as usize;
/// An attempt's error text is cut to this many bytes, as its response body is.
pub const ATTEMPT_ERROR_BYTES: usize = 256;

/// One webhook attempt, as `GET /tasks/{id}/attempts` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub attempt: u32,
    #[serde(with = "rfc3339_millis")]
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// The failure's name and text (`WebhookTimeout: no answer within 10000 ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first 256 bytes of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

/// What the API shows in place of a webhook header's value (values are write-only, as they often
/// carry credentials), and what replaces them in a receiver's answer as it is kept.
pub const REDACTED: &str = "<redacted>";

/// `url` as the API shows it: each query value replaced by [`REDACTED`], its name kept (chat-style
/// webhook URLs carry their secret there; a bare `?value` is all value). The full URL is only ever
/// sent to the receiver.
pub fn masked_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}={REDACTED}"),
            None if pair.is_empty() => String::new(),
            None => REDACTED.to_string(),
        })
        .collect();
    let mut shown = format!("{base}?{}", masked.join("&"));
    if let Some(fragment) = fragment {
        shown.push('#');
        shown.push_str(fragment);
    }
    shown
}

/// The epoch second from which the cron hands a task due at `timestamp` on (`startExecutionAt`).
pub fn start_execution_at(timestamp: DateTime<Utc>, lead_time: Duration) -> i64 {
    (timestamp - lead_time).timestamp()
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn truncated(text: &str, max: usize) -> String {
    text[..text.floor_char_boundary(max)].to_string()
}

/// Step Functions execution names allow 80 characters of letters, digits, `-` and `_`: a UUID,
/// a dash and a series number fit.
pub fn execution_name(task_id: &str, series: u32) -> String {
    format!("{task_id}-{series}")
}

/// What a user's change sets along with the status, in the same write. For the webhook and the
/// payload, `Some(None)` removes the field and `None` leaves it as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Changes {
    /// The new time and the `startExecutionAt` that goes with it.
    pub timestamp: Option<(DateTime<Utc>, i64)>,
    pub webhook: Option<Option<Webhook>>,
    pub payload: Option<Option<Value>>,
    pub retry: Option<Option<RetryPolicy>>,
    pub on_failure: Option<Option<Webhook>>,
    /// An attempt to add to the task's history.
    pub record_attempt: Option<AttemptRecord>,
    /// The history as it is to be (a retry trims it).
    pub attempt_history: Option<Vec<AttemptRecord>>,
    /// The slot execution a claim puts the task in.
    pub slot: Option<String>,
    /// When the attempt a begin starts is to be sent.
    pub attempt_at: Option<DateTime<Utc>>,
    /// The retry a handed-over report asks for.
    pub next_attempt: Option<NextAttempt>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self == &Changes::default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_is_shown_with_its_query_values_masked() {
        use super::masked_url;
        for (url, shown) in [
            ("https://example.com/hook", "https://example.com/hook"),
            (
                "https://chat.example/hooks?key=AIza-s3cret&token=t0k",
                "https://chat.example/hooks?key=<redacted>&token=<redacted>",
            ),
            (
                "https://example.com/h?s3cret",
                "https://example.com/h?<redacted>",
            ),
            (
                "https://example.com/h?a=1#part",
                "https://example.com/h?a=<redacted>#part",
            ),
        ] {
            assert_eq!(masked_url(url), shown);
        }
    }
}
