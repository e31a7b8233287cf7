//! Validation of a change request (`PATCH /tasks/{id}`, and the optional body of
//! `POST /tasks/{id}/retry`): a JSON merge patch (RFC 7396) of the task as it was created, checked
//! by the same rules as a new task.

use crate::model::retry_policy::RetryPolicy;
use crate::model::task::{start_execution_at, Changes, Task, Webhook};
use crate::request::new_task::{
    check_contents, check_retry, deserialize_fields, json_object, resolve_time, validate_callback,
    validate_webhook, Contents, ValidationError,
};
use chrono::{DateTime, Duration, Utc};
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

    /// The stored headers of `field` (the webhook or the failure callback) that the request
    /// leaves bound to another origin: the merged URL's origin (scheme, host, port) is not the
    /// stored one's, and the request does not give the header again. Their values were given
    /// for the old receiver, so they are dropped; a change of path or query keeps them.
    fn unbound(&self, field: &str, stored: Option<&Webhook>, merged: &Value) -> Vec<String> {
        let (Some(stored), Some(url)) = (stored, merged.get("url").and_then(Value::as_str)) else {
            return Vec::new();
        };
        if same_origin(&stored.url, url) {
            return Vec::new();
        }
        let given: Vec<String> = self
            .merge
            .get(field)
            .and_then(|patch| patch.get("headers"))
            .and_then(Value::as_object)
            .map(|headers| {
                headers
                    .iter()
                    .filter(|(_, value)| !value.is_null())
                    .map(|(name, _)| name.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        stored
            .headers
            .keys()
            .filter(|name| !given.contains(&name.to_ascii_lowercase()))
            .cloned()
            .collect()
    }

    /// `merged` without the stored headers the request leaves bound to another origin.
    fn rebound(&self, field: &str, stored: Option<&Webhook>, mut merged: Value) -> Value {
        let unbound = self.unbound(field, stored, &merged);
        if let Some(headers) = merged.get_mut("headers").and_then(Value::as_object_mut) {
            for name in &unbound {
                headers.remove(name);
            }
        }
        merged
    }

    /// The headers the request drops from `task` for moving their webhook or callback to another
    /// origin (`webhook.headers.<name>`, `onFailure.headers.<name>`), for the answer to say.
    pub fn dropped_headers(&self, task: &Task) -> Vec<String> {
        let mut dropped = Vec::new();
        for (field, stored) in [
            ("webhook", task.webhook.as_ref()),
            ("onFailure", task.on_failure.as_ref()),
        ] {
            if let Some(merged) = self.merged(field, serde_json::to_value(stored)) {
                dropped.extend(
                    self.unbound(field, stored, &merged)
                        .into_iter()
                        .map(|name| format!("{field}.headers.{name}")),
                );
            }
        }
        dropped
    }

    /// What the request changes in `task`, checked as a new task would be: the merged webhook
    /// must be a valid webhook, and the task must still fit in one item.
    pub fn changes_for(
        &self,
        task: &Task,
        lead_time: Duration,
    ) -> Result<Changes, ValidationError> {
        let mut changes = Changes {
            timestamp: self
                .timestamp
                .map(|at| (at, start_execution_at(at, lead_time))),
            ..Changes::default()
        };
        if let Some(merged) = self.merged("webhook", serde_json::to_value(&task.webhook)) {
            let merged = self.rebound("webhook", task.webhook.as_ref(), merged);
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
            let merged = self.rebound("onFailure", task.on_failure.as_ref(), merged);
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

/// Whether two URLs have one origin (scheme, host and port, the default port spelled or not).
fn same_origin(stored: &str, url: &str) -> bool {
    match (url::Url::parse(stored), url::Url::parse(url)) {
        (Ok(stored), Ok(url)) => stored.origin() == url.origin(),
        _ => false,
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
    use crate::model::task::Webhook;
    use crate::rules::pacing::Pacing;
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
                signing: None,
                keep_response_body: true,
            }),
            payload: Some(json!({"keep": true, "drop": 1})),
            ..Task::new(
                "t",
                now() + Duration::hours(1),
                Pacing::default().lead_time,
                now(),
            )
        }
    }

    fn changes(body: Value) -> Result<Changes, ValidationError> {
        TaskPatch::parse(body.to_string().as_bytes(), now())?
            .changes_for(&task(), Pacing::default().lead_time)
    }

    /// Secrets are bound to their origin: moving the webhook to another scheme, host or port
    /// drops the stored header values the request does not give again (the answer names them);
    /// another path or query keeps them.
    #[test]
    fn a_webhook_moved_to_another_origin_leaves_its_stored_secrets_behind() {
        let headers = |body: Value| {
            changes(body)
                .unwrap()
                .webhook
                .unwrap()
                .unwrap()
                .headers
                .into_iter()
                .collect::<Vec<_>>()
        };
        let kept = vec![("Authorization".to_string(), "Bearer s3cret".to_string())];
        for url in [
            "https://example.com/other?x=1",
            "https://EXAMPLE.com:443/hook",
        ] {
            assert_eq!(headers(json!({"webhook": {"url": url}})), kept, "{url}");
        }
        for url in [
            "https://other.example/hook",
            "http://example.com/hook",
            "https://example.com:8443/hook",
        ] {
            assert_eq!(headers(json!({"webhook": {"url": url}})), vec![], "{url}");
            let patch = TaskPatch::parse(
                json!({"webhook": {"url": url}}).to_string().as_bytes(),
                now(),
            )
            .unwrap();
            assert_eq!(
                patch.dropped_headers(&task()),
                ["webhook.headers.Authorization"]
            );
        }
        let given_again = json!({"webhook": {"url": "https://other.example/",
            "headers": {"Authorization": "Bearer for-other"}}});
        assert_eq!(
            headers(given_again),
            [("Authorization".to_string(), "Bearer for-other".to_string())]
        );
    }

    #[test]
    fn a_callback_moved_to_another_origin_leaves_its_stored_secrets_behind() {
        let mut with_callback = task();
        with_callback.on_failure = with_callback.webhook.clone().map(|callback| Webhook {
            body: None,
            ..callback
        });
        let patch = TaskPatch::parse(
            json!({"onFailure": {"url": "https://collector.example/"}})
                .to_string()
                .as_bytes(),
            now(),
        )
        .unwrap();
        let change = patch
            .changes_for(&with_callback, Pacing::default().lead_time)
            .unwrap();
        assert!(change.on_failure.unwrap().unwrap().headers.is_empty());
        assert_eq!(
            patch.dropped_headers(&with_callback),
            ["onFailure.headers.Authorization"]
        );
    }

    #[test]
    fn a_new_time_comes_with_its_start_execution_at() {
        let pacing = Pacing::default();
        let change = changes(json!({"seconds": 20})).unwrap();
        let at = now() + Duration::seconds(20);
        assert_eq!(change.timestamp, Some((at, pacing.start_execution_at(at))));
        assert_eq!((change.webhook, change.payload), (None, None));
        let change = changes(json!({"timestamp": "2030-06-02T00:00:00Z"})).unwrap();
        assert_eq!(
            change.timestamp.unwrap().0,
            Utc.with_ymd_and_hms(2030, 6, 2, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn the_webhook_is_merged_so_its_secret_headers_need_not_be_sent_again() {
        let change = changes(json!({"webhook": {"url": "https://example.com/new"}})).unwrap();
        let webhook = change.webhook.unwrap().unwrap();
        assert_eq!(webhook.url, "https://example.com/new");
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
        let bare = Task::new(
            "t",
            now() + Duration::hours(1),
            Pacing::default().lead_time,
            now(),
        );
        let patch = TaskPatch::parse(br#"{"webhook": {"method": "PUT"}}"#, now()).unwrap();
        let error = patch
            .changes_for(&bare, Pacing::default().lead_time)
            .unwrap_err();
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
