//! Validation of a change request (`PATCH /tasks/{id}`, and the optional body of
//! `POST /tasks/{id}/retry`): a JSON merge patch (RFC 7396) of the task as it was created, checked
//! by the same rules as a new task.

use crate::new_task::{
    check_contents, check_retry, deserialize_fields, json_object, resolve_time, validate_callback,
    validate_webhook, Contents, ValidationError,
};
use crate::ports::Changes;
use crate::retry_policy::RetryPolicy;
use crate::schedule::Schedule;
use crate::task::Task;
use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The fields a change may name; `webhook` and `payload` are taken from the JSON as they are, to
/// be merged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    timestamp: Option<String>,
    hours: Option<u64>,
    minutes: Option<u64>,
    seconds: Option<u64>,
    #[serde(rename = "webhook")]
    _webhook: Option<IgnoredAny>,
    #[serde(rename = "payload")]
    _payload: Option<IgnoredAny>,
    #[serde(rename = "retry")]
    _retry: Option<IgnoredAny>,
    #[serde(rename = "onFailure")]
    _on_failure: Option<IgnoredAny>,
}

/// A change request whose syntax and time passed validation. What it merges into is checked
/// against the task it is applied to, by [`TaskPatch::changes_for`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPatch {
    timestamp: Option<DateTime<Utc>>,
    /// The merge patch of `{"webhook", "payload", "retry", "onFailure"}`: a `null` member removes the field.
    merge: Map<String, Value>,
}

impl TaskPatch {
    /// Parses a `PATCH /tasks/{id}` body received at `now`; at least one field must change.
    pub fn parse(body: &[u8], now: DateTime<Utc>) -> Result<TaskPatch, ValidationError> {
        let patch = TaskPatch::parse_optional(body, now)?;
        if patch.timestamp.is_none() && patch.merge.is_empty() {
            return Err(ValidationError::new(
                "empty_change",
                None,
                "give at least one of `timestamp` (or `hours`/`minutes`/`seconds`), `webhook` and \
                 `payload`",
            ));
        }
        Ok(patch)
    }

    /// Like [`TaskPatch::parse`], but an empty body or `{}` is a change of nothing.
    pub fn parse_optional(body: &[u8], now: DateTime<Utc>) -> Result<TaskPatch, ValidationError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(TaskPatch::time(None));
        }
        let raw = json_object(body)?;
        let mut merge = Map::new();
        for field in ["webhook", "payload", "retry", "onFailure"] {
            if let Some(value) = raw.get(field) {
                merge.insert(field.to_string(), value.clone());
            }
        }
        let parsed: PatchBody = deserialize_fields(raw)?;
        let relative = [parsed.hours, parsed.minutes, parsed.seconds];
        let timestamp = if parsed.timestamp.is_some() || relative.iter().any(Option::is_some) {
            Some(resolve_time(parsed.timestamp.as_deref(), relative, now)?)
        } else {
            None
        };
        Ok(TaskPatch { timestamp, merge })
    }

    /// A change of the time alone (`None`: of nothing).
    pub fn time(timestamp: Option<DateTime<Utc>>) -> TaskPatch {
        TaskPatch {
            timestamp,
            merge: Map::new(),
        }
    }

    /// The same change, at `timestamp` unless it names a time itself.
    pub fn at(self, timestamp: DateTime<Utc>) -> TaskPatch {
        TaskPatch {
            timestamp: self.timestamp.or(Some(timestamp)),
            ..self
        }
    }

    /// The field `name` of the task (`current`) with the request's merge patch applied, if the
    /// request names it.
    fn merged(&self, name: &str, current: serde_json::Result<Value>) -> Option<Value> {
        let patch = self.merge.get(name)?;
        let mut merged = current.unwrap_or(Value::Null);
        json_patch::merge(&mut merged, patch);
        Some(merged)
    }

    /// What the request changes in `task`, checked as a new task would be: the merged webhook
    /// must be a valid webhook, and the task must still fit in one item.
    pub fn changes_for(
        &self,
        task: &Task,
        schedule: &Schedule,
    ) -> Result<Changes, ValidationError> {
        let mut changes = Changes {
            timestamp: self
                .timestamp
                .map(|at| (at, schedule.start_execution_at(at))),
            ..Changes::default()
        };
        if let Some(merged) = self.merged("webhook", serde_json::to_value(&task.webhook)) {
            changes.webhook = Some(match merged {
                Value::Null => None,
                merged if merged.get("url").is_none() => {
                    return Err(ValidationError::new(
                        "invalid_webhook_url",
                        Some("webhook.url"),
                        "`webhook.url` is required: the task has no webhook to change",
                    ))
                }
                merged => Some(validate_webhook(fields_of("webhook", merged)?)?),
            });
        }
        if let Some(merged) = self.merged("onFailure", serde_json::to_value(&task.on_failure)) {
            changes.on_failure = Some(match merged {
                Value::Null => None,
                merged => Some(validate_callback(fields_of("onFailure", merged)?)?),
            });
        }
        if let Some(merged) = self.merged("payload", Ok(task.payload.clone().into())) {
            changes.payload = Some((!merged.is_null()).then_some(merged));
        }
        if let Some(merged) = self.merged("retry", serde_json::to_value(task.retry_policy())) {
            changes.retry = Some(match merged {
                Value::Null => None,
                merged => {
                    let retry: RetryPolicy = fields_of("retry", merged)?;
                    check_retry(&retry)?;
                    Some(retry)
                }
            });
        }
        let webhook = changes.webhook.as_ref().unwrap_or(&task.webhook);
        let payload = changes.payload.as_ref().unwrap_or(&task.payload);
        let on_failure = changes.on_failure.as_ref().unwrap_or(&task.on_failure);
        check_contents(Contents {
            webhook: webhook.as_ref(),
            payload: payload.as_ref(),
            on_failure: on_failure.as_ref(),
        })?;
        Ok(changes)
    }
}

/// Reads a merged field into its request type, naming the field at fault below `name`.
fn fields_of<T: serde::de::DeserializeOwned>(
    name: &str,
    merged: Value,
) -> Result<T, ValidationError> {
    deserialize_fields(merged).map_err(|error| ValidationError {
        field: Some(match error.field.as_deref() {
            None | Some(".") => name.to_string(),
            Some(field) => format!("{name}.{field}"),
        }),
        ..error
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Webhook;
    use chrono::{Duration, TimeZone};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap()
    }

    fn task() -> Task {
        Task {
            webhook: Some(Webhook {
                url: "https://example.com/hook".into(),
                method: "POST".into(),
                headers: BTreeMap::from([("Authorization".into(), "Bearer s3cret".into())]),
                body: Some(json!({"a": 1})),
            }),
            payload: Some(json!({"keep": true, "drop": 1})),
            ..Task::new("t", now() + Duration::hours(1), &Schedule::default(), now())
        }
    }

    fn changes(body: Value) -> Result<Changes, ValidationError> {
        TaskPatch::parse(body.to_string().as_bytes(), now())?
            .changes_for(&task(), &Schedule::default())
    }

    #[test]
    fn a_new_time_comes_with_its_start_execution_at() {
        let schedule = Schedule::default();
        let change = changes(json!({"seconds": 20})).unwrap();
        let at = now() + Duration::seconds(20);
        assert_eq!(
            change.timestamp,
            Some((at, schedule.start_execution_at(at)))
        );
        assert_eq!((change.webhook, change.payload), (None, None));
        let change = changes(json!({"timestamp": "2030-06-02T00:00:00Z"})).unwrap();
        assert_eq!(
            change.timestamp.unwrap().0,
            Utc.with_ymd_and_hms(2030, 6, 2, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn the_webhook_is_merged_so_its_secret_headers_need_not_be_sent_again() {
        let change = changes(json!({"webhook": {"url": "https://example.org/new"}})).unwrap();
        let webhook = change.webhook.unwrap().unwrap();
        assert_eq!(webhook.url, "https://example.org/new");
        assert_eq!(webhook.headers["Authorization"], "Bearer s3cret");
        assert_eq!(webhook.body, Some(json!({"a": 1})));
        let change = changes(json!({"webhook": {"headers": {"Authorization": null}}})).unwrap();
        assert!(change.webhook.unwrap().unwrap().headers.is_empty());
        let change = changes(json!({"webhook": null, "payload": null})).unwrap();
        assert_eq!(change.webhook, Some(None));
        assert_eq!(change.payload, Some(None));
    }

    #[test]
    fn the_payload_is_merged_as_json_merge_patch_says() {
        let change = changes(json!({"payload": {"drop": null, "new": [1]}})).unwrap();
        assert_eq!(
            change.payload,
            Some(Some(json!({"keep": true, "new": [1]})))
        );
        let change = changes(json!({"payload": "text"})).unwrap();
        assert_eq!(change.payload, Some(Some(json!("text"))));
    }

    #[test]
    fn bad_changes_are_named_as_for_a_new_task() {
        for (body, code, field) in [
            (json!({}), "empty_change", None),
            (
                json!({"status": "SCHEDULED"}),
                "unknown_field",
                Some("status"),
            ),
            (
                json!({"timestamp": "soon"}),
                "invalid_timestamp",
                Some("timestamp"),
            ),
            (
                json!({"timestamp": "2030-06-01T11:00:00Z"}),
                "time_in_past",
                Some("timestamp"),
            ),
            (
                json!({"timestamp": "2030-06-02T00:00:00Z", "seconds": 1}),
                "conflicting_time",
                Some("timestamp"),
            ),
            (
                json!({"webhook": {"url": "ftp://x"}}),
                "invalid_webhook_url",
                Some("webhook.url"),
            ),
            (
                json!({"webhook": {"method": "TRACE"}}),
                "invalid_webhook_method",
                Some("webhook.method"),
            ),
            (
                json!({"webhook": {"headers": {"X-Task-Id": "1"}}}),
                "reserved_webhook_header",
                Some("webhook.headers"),
            ),
            (
                json!({"webhook": {"retries": 3}}),
                "unknown_field",
                Some("webhook.retries"),
            ),
        ] {
            let error = changes(body.clone()).expect_err(&body.to_string());
            assert_eq!(
                (error.code, error.field.as_deref()),
                (code, field),
                "{body}"
            );
        }
        let error = TaskPatch::parse(b"[1]", now()).unwrap_err();
        assert_eq!(error.code, "invalid_body");
    }

    #[test]
    fn a_webhook_patch_on_a_task_without_one_must_name_a_url() {
        let bare = Task::new("t", now() + Duration::hours(1), &Schedule::default(), now());
        let patch = TaskPatch::parse(br#"{"webhook": {"method": "PUT"}}"#, now()).unwrap();
        let error = patch.changes_for(&bare, &Schedule::default()).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("webhook.url"));
    }

    #[test]
    fn an_empty_body_is_no_change_where_a_body_is_optional() {
        for body in [&b""[..], b"  ", b"{}"] {
            let patch = TaskPatch::parse_optional(body, now()).unwrap();
            assert_eq!(patch, TaskPatch::time(None));
        }
    }
}
