use crate::diagnostics::DiagnosticsView;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use tasks_core::model::retry_policy::RetryPolicy;
use tasks_core::model::task::masked_url;
use tasks_core::model::time::rfc3339_millis;
use tasks_core::{Signing, Task, TaskStatus, Webhook};

pub use tasks_core::model::task::REDACTED;

/// A task as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub id: String,
    pub status: TaskStatus,
    #[serde(with = "rfc3339_millis")]
    pub timestamp: DateTime<Utc>,
    pub start_execution_at: i64,
    pub time_left_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_millis")]
    pub last_updated_at: DateTime<Utc>,
    pub attempts: u32,
    /// The retry policy that applies (the task's own, or the default).
    pub retry: RetryPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<WebhookView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_millis::option"
    )]
    pub executed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness_ms: Option<i64>,
    /// When the finished task is deleted (the deployment's `RetentionDays`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_millis::option"
    )]
    pub expires_at: Option<DateTime<Utc>>,
    /// For a change that moved a webhook or callback to another origin: the stored headers it
    /// dropped (`webhook.headers.<name>`), whose values were given for the old receiver.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_headers: Vec<String>,
    /// Where the task's run is found on AWS (`GET /tasks/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<DiagnosticsView>,
}

impl TaskView {
    pub fn new(task: &Task, now: DateTime<Utc>) -> Self {
        TaskView {
            id: task.id.clone(),
            status: task.task_status,
            timestamp: task.timestamp,
            start_execution_at: task.start_execution_at,
            time_left_seconds: task.time_left_seconds(now),
            webhook: task.webhook.as_ref().map(WebhookView::new),
            payload: task.payload.clone(),
            created_at: task.created_at,
            last_updated_at: task.last_updated_at,
            attempts: task.attempts,
            retry: task.retry_policy(),
            on_failure: task.on_failure.as_ref().map(WebhookView::new),
            last_error: task.last_error.clone(),
            executed_at: task.executed_at,
            lateness_ms: task.lateness_ms,
            expires_at: task
                .expires_at
                .and_then(|at| DateTime::from_timestamp(at, 0)),
            dropped_headers: Vec::new(),
            diagnostics: None,
        }
    }
}

/// A task's webhook as the API shows it: header names, never their values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub url: String,
    pub method: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, &'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The name of the signing secret, never its value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
    /// Shown when `false`, the default being to keep them.
    #[serde(skip_serializing_if = "tasks_core::model::task::is_kept")]
    pub keep_response_body: bool,
}

impl WebhookView {
    pub fn new(webhook: &Webhook) -> Self {
        WebhookView {
            url: masked_url(&webhook.url),
            method: webhook.method.clone(),
            headers: webhook
                .headers
                .keys()
                .map(|name| (name.clone(), REDACTED))
                .collect(),
            body: webhook.body.clone(),
            signing: webhook.signing.clone(),
            keep_response_body: webhook.keep_response_body,
        }
    }
}
