//! Validation of a create request: the one place that decides what a valid task is.

use crate::model::retry_policy::RetryPolicy;
use crate::model::task::{is_valid_signing_name, Signing, Task, Webhook, MAX_SIGNING_NAME_CHARS};
use crate::model::time::{MAX_SCHEDULE_AHEAD, PAST_TOLERANCE};
use crate::request::item_limits::{check_storable, item_size, Unstorable, MAX_ITEM_BYTES};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Largest accepted request body, in bytes (the limit of an SQS message and a Step Functions input).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
pub const WEBHOOK_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Headers the service sets on every webhook request (and HTTP's framing headers): a task may not
/// set them, or a receiver could see two values. Names are compared case-insensitively.
pub const RESERVED_WEBHOOK_HEADERS: [&str; 9] = [
    "Idempotency-Key",
    "Webhook-Id",
    "Webhook-Timestamp",
    "Webhook-Signature",
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Upgrade",
];
/// Every header starting with this is the service's too (`X-Task-Id`, `X-Task-Attempt`, ...).
pub const RESERVED_WEBHOOK_HEADER_PREFIX: &str = "X-Task-";
/// Room kept in an item for the attributes the service adds to the request's (id, times,
/// status, digest, idempotency key, last error, retry policy) and the attempt history.
const SERVICE_ATTRIBUTES_BYTES: usize = 4 * 1024 + ATTEMPT_HISTORY_BYTES;
/// Room kept for the attempt history: at most `MAX_ATTEMPT_HISTORY` records of an attempt's
/// number, times, status, error (256 bytes) and response body (256 bytes), with their names.
const ATTEMPT_HISTORY_BYTES: usize = crate::model::task::MAX_ATTEMPT_HISTORY * 640;

/// A rejected request: a stable machine-readable code, the field at fault and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub code: &'static str,
    pub field: Option<String>,
    pub message: String,
}

impl ValidationError {
    pub fn new(code: &'static str, field: Option<&str>, message: impl Into<String>) -> Self {
        ValidationError {
            code,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTaskBody {
    timestamp: Option<String>,
    hours: Option<u64>,
    minutes: Option<u64>,
    seconds: Option<u64>,
    webhook: Option<WebhookBody>,
    payload: Option<Value>,
    retry: Option<RetryPolicy>,
    #[serde(rename = "onFailure")]
    on_failure: Option<CallbackBody>,
}

/// `onFailure`: where to tell that the task ended FAILED.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallbackBody {
    url: String,
    method: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    signing: Option<Signing>,
    #[serde(rename = "keepResponseBody")]
    keep_response_body: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    url: String,
    method: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    body: Option<Value>,
    signing: Option<Signing>,
    #[serde(rename = "keepResponseBody")]
    keep_response_body: Option<bool>,
}

/// A create request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub timestamp: DateTime<Utc>,
    pub webhook: Option<Webhook>,
    pub payload: Option<Value>,
    pub retry: Option<RetryPolicy>,
    pub on_failure: Option<Webhook>,
    pub request_digest: String,
}

impl NewTask {
    /// Parses and checks a `POST /tasks` body received at `now`.
    pub fn parse(body: &[u8], now: DateTime<Utc>) -> Result<NewTask, ValidationError> {
        let raw = json_object(body)?;
        let request_digest = digest(&raw);
        let parsed: CreateTaskBody = deserialize_fields(raw)?;
        let timestamp = resolve_time(
            parsed.timestamp.as_deref(),
            [parsed.hours, parsed.minutes, parsed.seconds],
            now,
        )?;
        let webhook = parsed.webhook.map(validate_webhook).transpose()?;
        if let Some(retry) = &parsed.retry {
            check_retry(retry)?;
        }
        let on_failure = parsed.on_failure.map(validate_callback).transpose()?;
        check_contents(Contents {
            webhook: webhook.as_ref(),
            payload: parsed.payload.as_ref(),
            on_failure: on_failure.as_ref(),
        })?;
        Ok(NewTask {
            timestamp,
            webhook,
            payload: parsed.payload,
            retry: parsed.retry,
            on_failure,
            request_digest,
        })
    }

    /// The task to store, created at `now`.
    pub fn into_task(
        self,
        id: String,
        idempotency_key: Option<String>,
        now: DateTime<Utc>,
        lead_time: Duration,
    ) -> Task {
        Task {
            webhook: self.webhook,
            payload: self.payload,
            retry: self.retry,
            on_failure: self.on_failure,
            idempotency_key,
            request_digest: Some(self.request_digest),
            ..Task::new(id, self.timestamp, lead_time, now)
        }
    }
}

/// A request body that must be one JSON object of at most [`MAX_BODY_BYTES`].
pub(crate) fn json_object(body: &[u8]) -> Result<Value, ValidationError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ValidationError::new(
            "payload_too_large",
            None,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    let raw: Value = serde_json::from_slice(body).map_err(|e| {
        ValidationError::new(
            "malformed_json",
            None,
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    if !raw.is_object() {
        return Err(ValidationError::new(
            "invalid_body",
            None,
            "the request body must be a JSON object",
        ));
    }
    Ok(raw)
}

/// Reads a JSON document into a request type, naming the field at fault.
pub(crate) fn deserialize_fields<T: serde::de::DeserializeOwned>(
    raw: Value,
) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if inner.starts_with("unknown field") {
            ValidationError::new(
                "unknown_field",
                Some(&path),
                format!("unknown field `{path}`"),
            )
        } else {
            ValidationError::new(
                "invalid_field",
                Some(&path),
                format!("field `{path}`: {inner}"),
            )
        }
    })
}

/// serde_json keeps object keys sorted, so equal bodies give equal digests whatever their key order.
fn digest(body: &Value) -> String {
    let hash = Sha256::digest(body.to_string().as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The task's time from `timestamp` (RFC 3339) or from `[hours, minutes, seconds]` after `now`.
pub(crate) fn resolve_time(
    timestamp: Option<&str>,
    [hours, minutes, seconds]: [Option<u64>; 3],
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ValidationError> {
    let relative = hours.is_some() || minutes.is_some() || seconds.is_some();
    let timestamp = match (timestamp, relative) {
        (Some(_), true) => {
            return Err(ValidationError::new(
                "conflicting_time",
                Some("timestamp"),
                "give either `timestamp` or `hours`/`minutes`/`seconds`, not both",
            ))
        }
        (None, false) => {
            return Err(ValidationError::new(
                "missing_time",
                Some("timestamp"),
                "give the task's time: `timestamp` (RFC 3339) or `hours`/`minutes`/`seconds` from now",
            ))
        }
        (Some(text), false) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                ValidationError::new(
                    "invalid_timestamp",
                    Some("timestamp"),
                    format!("`timestamp` must be an RFC 3339 date-time such as 2030-01-01T12:00:00Z: {e}"),
                )
            })?
            .with_timezone(&Utc),
        (None, true) => {
            let seconds = [(hours, 3600u64), (minutes, 60), (seconds, 1)]
                .iter()
                .try_fold(0u64, |total, (value, unit)| {
                    value.unwrap_or(0).checked_mul(*unit)?.checked_add(total)
                })
                .and_then(|total| i64::try_from(total).ok())
                .filter(|total| *total <= MAX_SCHEDULE_AHEAD.num_seconds())
                .ok_or_else(too_far)?;
            now + Duration::seconds(seconds)
        }
    };
    let timestamp = timestamp
        .duration_trunc(Duration::milliseconds(1))
        .map_err(|_| too_far())?;
    if timestamp < now - PAST_TOLERANCE {
        return Err(ValidationError::new(
            "time_in_past",
            Some("timestamp"),
            format!(
                "the task's time {} has already passed",
                crate::model::time::rfc3339_millis::format(&timestamp)
            ),
        ));
    }
    if timestamp > now + MAX_SCHEDULE_AHEAD {
        return Err(too_far());
    }
    Ok(timestamp)
}

fn too_far() -> ValidationError {
    ValidationError::new(
        "time_too_far",
        Some("timestamp"),
        format!(
            "a task may be scheduled at most {} days ahead",
            MAX_SCHEDULE_AHEAD.num_days()
        ),
    )
}

pub(crate) fn check_retry(retry: &RetryPolicy) -> Result<(), ValidationError> {
    retry.check().map_err(|error| {
        ValidationError::new(
            "invalid_retry",
            Some(&format!("retry.{}", error.field)),
            error.message,
        )
    })
}

/// What a task carries: its webhook, payload and failure callback.
#[derive(Clone, Copy)]
pub(crate) struct Contents<'a> {
    pub webhook: Option<&'a Webhook>,
    pub payload: Option<&'a Value>,
    pub on_failure: Option<&'a Webhook>,
}

/// The webhook and the payload can be stored, and the task fits in one item.
pub(crate) fn check_contents(contents: Contents<'_>) -> Result<(), ValidationError> {
    let Contents {
        webhook, payload, ..
    } = contents;
    if let Some(payload) = payload {
        storable(payload, "payload", 0)?;
    }
    if let Some(body) = webhook.and_then(|w| w.body.as_ref()) {
        // The body is a field of the `webhook` map: one level below the item's top.
        storable(body, "webhook.body", 1)?;
    }
    check_item_size(contents)
}

fn storable(value: &Value, field: &str, levels_above: usize) -> Result<(), ValidationError> {
    check_storable(value, levels_above).map_err(|unstorable| match unstorable {
        Unstorable::TooDeep { max } => ValidationError::new(
            "too_deeply_nested",
            Some(field),
            format!("`{field}` nests arrays and objects deeper than {max} levels"),
        ),
        Unstorable::NumberOutOfRange(number) => ValidationError::new(
            "number_out_of_range",
            Some(field),
            format!(
                "`{field}` holds the number {number}: numbers must be 0 or between 1e-130 and \
                 9.99e125 in magnitude"
            ),
        ),
    })
}

/// The task as stored must fit in one item; the request's own limit does not guarantee it (a
/// list of empty lists takes more room stored than as JSON).
fn check_item_size(contents: Contents<'_>) -> Result<(), ValidationError> {
    let item = serde_json::json!({
        "webhook": contents.webhook,
        "payload": contents.payload,
        "onFailure": contents.on_failure,
    });
    let size = item_size(&item) + SERVICE_ATTRIBUTES_BYTES;
    if size > MAX_ITEM_BYTES {
        return Err(ValidationError::new(
            "payload_too_large",
            None,
            format!(
                "stored, this task would take about {size} bytes, more than the {MAX_ITEM_BYTES} \
                 bytes a task may take: send a smaller `payload` or `webhook`"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn validate_webhook(body: WebhookBody) -> Result<Webhook, ValidationError> {
    validate_request(body, "webhook")
}

/// The failure callback: a request as a webhook is, without a body (the task is its body).
pub(crate) fn validate_callback(body: CallbackBody) -> Result<Webhook, ValidationError> {
    let request = WebhookBody {
        url: body.url,
        method: body.method,
        headers: body.headers,
        body: None,
        signing: body.signing,
        keep_response_body: body.keep_response_body,
    };
    validate_request(request, "onFailure")
}

/// A webhook-like request named `field` in the body (`webhook`, `onFailure`).
fn validate_request(body: WebhookBody, field: &str) -> Result<Webhook, ValidationError> {
    let url_field = format!("{field}.url");
    let invalid_url =
        |message: String| ValidationError::new("invalid_webhook_url", Some(&url_field), message);
    let url = url::Url::parse(&body.url)
        .map_err(|e| invalid_url(format!("`{url_field}` is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid_url(format!(
            "`{url_field}` must be an http or https URL with a host"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid_url(format!(
            "`{url_field}` may not carry a user name or password: send credentials in \
             `{field}.headers`, whose values are never shown again"
        )));
    }
    let method = body.method.unwrap_or_else(|| "POST".to_string());
    if !WEBHOOK_METHODS.contains(&method.as_str()) {
        return Err(ValidationError::new(
            "invalid_webhook_method",
            Some(&format!("{field}.method")),
            format!(
                "`{field}.method` must be one of {}",
                WEBHOOK_METHODS.join(", ")
            ),
        ));
    }
    let headers = body.headers.unwrap_or_default();
    validate_headers(&headers, &format!("{field}.headers"))?;
    if let Some(signing) = &body.signing {
        if !is_valid_signing_name(&signing.secret) {
            let field = format!("{field}.signing.secret");
            return Err(ValidationError::new(
                "invalid_signing_secret",
                Some(&field),
                format!(
                    "`{field}` must be the name of a signing secret: 1 to {MAX_SIGNING_NAME_CHARS} \
                     letters, digits, - and _"
                ),
            ));
        }
    }
    Ok(Webhook {
        url: url.to_string(),
        method,
        headers,
        body: body.body,
        signing: body.signing,
        keep_response_body: body.keep_response_body.unwrap_or(true),
    })
}

/// Names and values as HTTP allows them (what the sender will accept), no name given twice, and
/// none of the service's own.
fn validate_headers(
    headers: &BTreeMap<String, String>,
    headers_field: &str,
) -> Result<(), ValidationError> {
    let mut seen = std::collections::HashSet::new();
    for (name, value) in headers {
        let field = format!("{headers_field}.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ValidationError::new(
                "invalid_webhook_header",
                Some(&field),
                format!("`{field}`: the name is not a valid HTTP header name"),
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(ValidationError::new(
                "invalid_webhook_header",
                Some(&field),
                format!("`{field}`: the value holds control characters HTTP does not allow"),
            ));
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(ValidationError::new(
                "invalid_webhook_header",
                Some(&field),
                format!("`{field}`: the header is given twice (names are case-insensitive)"),
            ));
        }
    }
    let reserved: Vec<&str> = headers
        .keys()
        .map(String::as_str)
        .filter(|name| is_reserved_header(name))
        .collect();
    if !reserved.is_empty() {
        return Err(ValidationError::new(
            "reserved_webhook_header",
            Some(headers_field),
            format!(
                "`{headers_field}` may not set {}: the service sets {} and {}* itself",
                reserved.join(", "),
                RESERVED_WEBHOOK_HEADERS.join(", "),
                RESERVED_WEBHOOK_HEADER_PREFIX
            ),
        ));
    }
    Ok(())
}

pub fn is_reserved_header(name: &str) -> bool {
    let prefix = RESERVED_WEBHOOK_HEADER_PREFIX;
    RESERVED_WEBHOOK_HEADERS
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
        || name
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::status::TaskStatus;
    use crate::rules::pacing::Pacing;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap()
    }

    fn parse(body: Value) -> Result<NewTask, ValidationError> {
        NewTask::parse(body.to_string().as_bytes(), now())
    }

    /// `levels` objects nested in each other around a string.
    fn deep(levels: usize) -> Value {
        (0..levels).fold(json!("leaf"), |inner, _| json!({ "n": inner }))
    }

    fn rejected(body: Value) -> ValidationError {
        parse(body.clone()).expect_err(&format!("{body} should be rejected"))
    }

    #[test]
    fn absolute_time_in_any_offset_is_normalised_to_utc_milliseconds() {
        let task = parse(json!({"timestamp": "2030-06-01T14:30:00.123456+02:00"})).unwrap();
        assert_eq!(
            task.timestamp,
            Utc.with_ymd_and_hms(2030, 6, 1, 12, 30, 0).unwrap() + Duration::milliseconds(123)
        );
    }

    #[test]
    fn relative_time_adds_to_now() {
        let task = parse(json!({"hours": 1, "minutes": 2, "seconds": 3})).unwrap();
        assert_eq!(task.timestamp, now() + Duration::seconds(3723));
        let task = parse(json!({"seconds": 0})).unwrap();
        assert_eq!(task.timestamp, now());
    }

    #[test]
    fn the_horizon_is_ten_calendar_years_to_the_second() {
        // 2030-06-01 to 2040-06-01 holds three leap days.
        let limit = "2040-06-01T12:00:00Z";
        assert_eq!(
            now() + MAX_SCHEDULE_AHEAD,
            limit.parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse(json!({ "timestamp": limit })).is_ok());
        assert!(parse(json!({"hours": 87672})).is_ok());
        for beyond in [
            json!({"timestamp": "2040-06-01T12:00:01Z"}),
            json!({"timestamp": "2040-06-01T12:00:00.001Z"}),
            json!({"hours": 87672, "seconds": 1}),
        ] {
            let error = parse(beyond.clone()).unwrap_err();
            assert_eq!(error.code, "time_too_far", "{beyond}");
            assert_eq!(
                error.message,
                "a task may be scheduled at most 3653 days ahead"
            );
        }
    }

    #[test]
    fn webhook_defaults_to_post() {
        let task =
            parse(json!({"seconds": 5, "webhook": {"url": "https://example.com/hook"}})).unwrap();
        let webhook = task.webhook.unwrap();
        assert_eq!(webhook.method, "POST");
        assert_eq!(webhook.url, "https://example.com/hook");
        assert!(webhook.headers.is_empty());
    }

    #[test]
    fn a_request_may_name_its_signing_secret_and_keep_no_answers() {
        let task = parse(json!({"minutes": 5,
            "webhook": {"url": "https://a.example/", "signing": {"secret": "billing-eu_2"},
                        "keepResponseBody": false},
            "onFailure": {"url": "https://b.example/", "signing": {"secret": "crm"}}}))
        .unwrap();
        let webhook = task.webhook.unwrap();
        let callback = task.on_failure.unwrap();
        assert_eq!(
            (webhook.signing.unwrap().secret, webhook.keep_response_body),
            ("billing-eu_2".to_string(), false)
        );
        assert_eq!(
            (
                callback.signing.unwrap().secret,
                callback.keep_response_body
            ),
            ("crm".to_string(), true)
        );
        for (signing, code, field) in [
            (
                json!({"secret": "a/b"}),
                "invalid_signing_secret",
                "webhook.signing.secret",
            ),
            (
                json!({"secret": ""}),
                "invalid_signing_secret",
                "webhook.signing.secret",
            ),
            (
                json!({"secret": "x".repeat(65)}),
                "invalid_signing_secret",
                "webhook.signing.secret",
            ),
            (
                json!({"secret": "a", "value": "whsec_x"}),
                "unknown_field",
                "webhook.signing.value",
            ),
            (json!({}), "invalid_field", "webhook.signing"),
        ] {
            let error = rejected(json!({"minutes": 5,
                "webhook": {"url": "https://a.example/", "signing": signing}}));
            assert_eq!(
                (error.code, error.field.as_deref()),
                (code, Some(field)),
                "{signing}"
            );
        }
    }

    #[test]
    fn a_failure_callback_is_checked_as_a_webhook_is_and_takes_no_body() {
        let task = parse(
            json!({"minutes": 5, "onFailure": {"url": "https://example.com/failed",
                                "headers": {"Authorization": "k"}}}),
        )
        .unwrap();
        let callback = task.on_failure.unwrap();
        assert_eq!((callback.method.as_str(), callback.body), ("POST", None));
        for (on_failure, code, field) in [
            (
                json!({"url": "ftp://x"}),
                "invalid_webhook_url",
                "onFailure.url",
            ),
            (
                json!({"url": "https://x", "method": "TRACE"}),
                "invalid_webhook_method",
                "onFailure.method",
            ),
            (
                json!({"url": "https://x", "headers": {"X-Task-Id": "1"}}),
                "reserved_webhook_header",
                "onFailure.headers",
            ),
            (
                json!({"url": "https://x", "body": {}}),
                "unknown_field",
                "onFailure.body",
            ),
        ] {
            let error = rejected(json!({"minutes": 5, "onFailure": on_failure}));
            assert_eq!((error.code, error.field.as_deref()), (code, Some(field)));
        }
    }

    #[test]
    fn every_bad_input_class_is_named() {
        let cases = [
            (json!([1, 2]), "invalid_body", None),
            (json!({}), "missing_time", Some("timestamp")),
            (
                json!({"timestamp": "2030-06-01T13:00:00Z", "minutes": 1}),
                "conflicting_time",
                Some("timestamp"),
            ),
            (
                json!({"timestamp": "tomorrow"}),
                "invalid_timestamp",
                Some("timestamp"),
            ),
            (
                json!({"timestamp": "2030-06-01T11:59:58Z"}),
                "time_in_past",
                Some("timestamp"),
            ),
            (
                json!({"timestamp": "2040-06-02T12:00:00Z"}),
                "time_too_far",
                Some("timestamp"),
            ),
            (json!({"hours": 87673}), "time_too_far", Some("timestamp")),
            (
                json!({"hours": u64::MAX}),
                "time_too_far",
                Some("timestamp"),
            ),
            (json!({"minutes": -1}), "invalid_field", Some("minutes")),
            (json!({"seconds": "5"}), "invalid_field", Some("seconds")),
            (json!({"seconds": 1.5}), "invalid_field", Some("seconds")),
            (
                json!({"seconds": 5, "colour": "red"}),
                "unknown_field",
                Some("colour"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "x", "retries": 3}}),
                "unknown_field",
                Some("webhook.retries"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "not a url"}}),
                "invalid_webhook_url",
                Some("webhook.url"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "ftp://example.com/x"}}),
                "invalid_webhook_url",
                Some("webhook.url"),
            ),
            (
                json!({"seconds": 5, "webhook": {}}),
                "invalid_field",
                Some("webhook"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://example.com", "method": "FETCH"}}),
                "invalid_webhook_method",
                Some("webhook.method"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://example.com", "headers": {"X-A": 1}}}),
                "invalid_field",
                Some("webhook.headers.X-A"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://example.com", "headers": {"Bad Name": "v"}}}),
                "invalid_webhook_header",
                Some("webhook.headers.Bad Name"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://example.com", "headers": "x"}}),
                "invalid_field",
                Some("webhook.headers"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://example.com", "headers": {"X-A": "a\u{7}b"}}}),
                "invalid_webhook_header",
                Some("webhook.headers.X-A"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://example.com", "headers": {"X-A": "a\nb"}}}),
                "invalid_webhook_header",
                Some("webhook.headers.X-A"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://example.com", "headers": {"X-A": "1", "x-a": "2"}}}),
                "invalid_webhook_header",
                Some("webhook.headers.x-a"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://user:pw@example.com/hook"}}),
                "invalid_webhook_url",
                Some("webhook.url"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://token@example.com/hook"}}),
                "invalid_webhook_url",
                Some("webhook.url"),
            ),
            (
                json!({"seconds": 5, "payload": {"n": [1e200]}}),
                "number_out_of_range",
                Some("payload"),
            ),
            (
                json!({"seconds": 5, "payload": 1e-200}),
                "number_out_of_range",
                Some("payload"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://example.com", "body": {"n": -1e200}}}),
                "number_out_of_range",
                Some("webhook.body"),
            ),
            (
                json!({"seconds": 5, "payload": deep(32)}),
                "too_deeply_nested",
                Some("payload"),
            ),
            (
                json!({"seconds": 5, "webhook": {"url": "https://example.com", "body": deep(31)}}),
                "too_deeply_nested",
                Some("webhook.body"),
            ),
        ];
        for (body, code, field) in cases {
            let error = rejected(body.clone());
            assert_eq!(error.code, code, "{body}: {error:?}");
            assert_eq!(error.field.as_deref(), field, "{body}: {error:?}");
            assert!(!error.message.is_empty());
        }
    }

    #[test]
    fn malformed_and_oversized_bodies_are_rejected() {
        let error = NewTask::parse(b"{\"seconds\": ", now()).unwrap_err();
        assert_eq!(error.code, "malformed_json");
        let big = format!(
            "{{\"seconds\": 5, \"payload\": \"{}\"}}",
            "x".repeat(MAX_BODY_BYTES)
        );
        let error = NewTask::parse(big.as_bytes(), now()).unwrap_err();
        assert_eq!(error.code, "payload_too_large");
    }

    #[test]
    fn the_deepest_storable_documents_are_accepted() {
        parse(json!({"seconds": 5, "payload": deep(31)})).unwrap();
        parse(json!({"seconds": 5, "webhook": {"url": "https://example.com", "body": deep(30)}}))
            .unwrap();
    }

    #[test]
    fn every_reserved_header_is_refused_and_named() {
        let headers = json!({
            "idempotency-key": "k", "HOST": "h", "X-Task-Attempt": "9", "x-task-anything": "v",
            "Webhook-Signature": "v1,x", "Content-Length": "1", "X-Fine": "ok"
        });
        let error = rejected(
            json!({"seconds": 5, "webhook": {"url": "https://example.com", "headers": headers}}),
        );
        assert_eq!(error.code, "reserved_webhook_header");
        assert_eq!(error.field.as_deref(), Some("webhook.headers"));
        let named = error.message.split(':').next().unwrap();
        for name in [
            "idempotency-key",
            "HOST",
            "X-Task-Attempt",
            "x-task-anything",
            "Webhook-Signature",
            "Content-Length",
        ] {
            assert!(
                named.contains(name),
                "{name} not named in {}",
                error.message
            );
        }
        assert!(!named.contains("X-Fine"));
        parse(json!({"seconds": 5, "webhook": {"url": "https://example.com",
            "headers": {"Authorization": "Bearer x", "Content-Type": "text/plain", "X-Tasks": "ok"}}}))
        .unwrap();
    }

    #[test]
    fn a_task_too_large_to_store_is_refused_though_its_body_fits() {
        // `[[[]]]` takes 5 bytes of JSON and 8 stored (two lists, two elements).
        let body = |lists: usize| {
            let payload = vec!["[[]]"; lists].join(",");
            format!(r#"{{"seconds": 5, "payload": [{payload}]}}"#)
        };
        let big = body(51_000);
        assert!(big.len() < MAX_BODY_BYTES);
        let code = |body: String| NewTask::parse(body.as_bytes(), now()).err().map(|e| e.code);
        assert_eq!(code(big), Some("payload_too_large"));
        assert_eq!(code(body(20_000)), None);
    }

    #[test]
    fn a_time_just_past_is_tolerated() {
        let task = parse(json!({"timestamp": "2030-06-01T11:59:59.500Z"})).unwrap();
        assert!(task.timestamp < now());
    }

    #[test]
    fn equal_bodies_have_equal_digests_whatever_the_key_order() {
        let a = NewTask::parse(br#"{"seconds": 5, "payload": {"a": 1, "b": 2}}"#, now()).unwrap();
        let b = NewTask::parse(br#"{"payload": {"b": 2, "a": 1}, "seconds": 5}"#, now()).unwrap();
        let c = NewTask::parse(br#"{"seconds": 6}"#, now()).unwrap();
        assert_eq!(a.request_digest, b.request_digest);
        assert_ne!(a.request_digest, c.request_digest);
    }

    #[test]
    fn into_task_applies_the_lead_time() {
        let new = parse(json!({"timestamp": "2030-06-01T13:00:00Z"})).unwrap();
        let task = new.into_task("id".into(), None, now(), Pacing::default().lead_time);
        assert_eq!(task.task_status, TaskStatus::Scheduled);
        assert_eq!(
            task.start_execution_at,
            Utc.with_ymd_and_hms(2030, 6, 1, 12, 57, 0)
                .unwrap()
                .timestamp()
        );
        assert_eq!(task.attempts, 0);
    }
}
