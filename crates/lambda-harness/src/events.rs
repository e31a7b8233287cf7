//! Events in the shapes AWS sends, from the fixtures in `crates/lambda-harness/events/`, with the
//! parts a test or benchmark varies filled in.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tasks_core::model::time::rfc3339_millis;

fn fixture(name: &str) -> Value {
    let path = crate::workspace_root()
        .join("crates/lambda-harness/events")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// An API Gateway REST (v1) proxy event through the stage `Prod`: `POST /tasks` with `body`.
pub fn api_post_tasks(body: &Value) -> Value {
    let mut event = fixture("apigw-rest-post-tasks.json");
    event["body"] = json!(body.to_string());
    event
}

/// The same request for another method and path (`/tasks/<id>` and the like).
pub fn api_request(method: &str, path: &str) -> Value {
    let mut event = fixture("apigw-rest-post-tasks.json");
    event["httpMethod"] = json!(method);
    event["path"] = json!(path);
    event["requestContext"]["httpMethod"] = json!(method);
    event["requestContext"]["path"] = json!(format!("/Prod{path}"));
    event["body"] = Value::Null;
    event
}

/// EventBridge's Scheduled Event, as the cron's rule sends it every minute.
pub fn scheduled() -> Value {
    fixture("eventbridge-scheduled.json")
}

/// An SQS batch with one record per `(message id, body)`.
pub fn sqs_batch(records: &[(String, String)]) -> Value {
    let mut event = fixture("sqs-batch.json");
    let template = event["Records"][0].clone();
    event["Records"] = records
        .iter()
        .map(|(message_id, body)| {
            let mut record = template.clone();
            record["messageId"] = json!(message_id);
            record["body"] = json!(body);
            record
        })
        .collect();
    event
}

fn with_task(
    mut event: Value,
    id: &str,
    timestamp: DateTime<Utc>,
    wake_at: DateTime<Utc>,
) -> Value {
    event["id"] = json!(id);
    event["timestamp"] = json!(rfc3339_millis::format(&timestamp));
    event["wakeAt"] = json!(rfc3339_millis::format(&wake_at));
    event
}

/// The state machine's input to execute-task.
pub fn execution_input(id: &str, timestamp: DateTime<Utc>, wake_at: DateTime<Utc>) -> Value {
    with_task(fixture("execute-task-input.json"), id, timestamp, wake_at)
}

/// MarkCompleted's input to update-status: the execution input and execute-task's result.
pub fn status_result(id: &str, timestamp: DateTime<Utc>, wake_at: DateTime<Utc>) -> Value {
    with_task(fixture("update-status-result.json"), id, timestamp, wake_at)
}

/// MarkFailed's input to update-status: the execution input and the caught error.
pub fn status_error(id: &str, timestamp: DateTime<Utc>, wake_at: DateTime<Utc>) -> Value {
    with_task(fixture("update-status-error.json"), id, timestamp, wake_at)
}

/// The error names a state's Retry and Catch match, read from the state machine definition.
pub struct StateErrors {
    pub retried: Vec<String>,
    pub caught: Vec<String>,
}

pub fn state_errors(state: &str) -> StateErrors {
    let path = crate::workspace_root().join("state-machine/tasks.asl.json");
    let definition: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read the state machine"))
            .expect("the state machine is JSON");
    let names = |field: &str| -> Vec<String> {
        definition["States"][state][field]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rule| rule["ErrorEquals"].as_array().cloned().unwrap_or_default())
            .filter_map(|name| name.as_str().map(str::to_string))
            .collect()
    };
    StateErrors {
        retried: names("Retry"),
        caught: names("Catch"),
    }
}
