//! The cron run as a Lambda process, woken by EventBridge's Scheduled Event.

use chrono::{Duration, Utc};
use lambda_harness::events;
use lambda_harness::Function;
use serde_json::json;
use tasks_aws::testing::{unique, Resources};
use tasks_core::{Pacing, Task, TaskStore};

async fn function(table_name: &str, queue_url: &str) -> Function {
    Function::on_emulator("cron", env!("CARGO_BIN_EXE_cron"))
        .await
        .env("TABLE_NAME", table_name)
        .env("QUEUE_URL", queue_url)
        // Nothing waits too long in these tests: the sweeps find no task to ask about.
        .env(
            "STATE_MACHINE_ARN",
            "arn:aws:states:us-east-1:123456789012:stateMachine:absent",
        )
}

#[tokio::test]
async fn a_scheduled_event_dispatches_the_due_tasks() {
    let resources = Resources::create().await;
    let now = Utc::now();
    for i in 0..3 {
        let task = Task::new(
            format!("due-{i}"),
            now + Duration::seconds(30),
            Pacing::default().lead_time,
            now,
        );
        resources.store().create(&task).await.unwrap();
    }
    let function = function(&resources.table_name, &resources.queue_url).await;
    let process = function.spawn();

    let summary = function.invoke(&events::scheduled()).await.response();
    assert_eq!(summary["due"]["found"], 3, "{summary}");
    assert_eq!(summary["due"]["dispatched"], 3, "{summary}");
    assert_eq!(resources.receive_all().await.len(), 3);
    process.stop().await;
}

/// EventBridge retries a failed invocation twice; the errorType says why it failed.
#[tokio::test]
async fn errors_carry_stable_types() {
    let resources = Resources::create().await;
    let function = function(&unique("no-such-table"), &resources.queue_url).await;
    let process = function.spawn();

    let store_down = function.invoke(&events::scheduled()).await;
    assert_eq!(
        store_down.error_type(),
        Some("StoreUnavailable"),
        "{store_down:?}"
    );
    let malformed = function.invoke(&json!(["not", "an", "event"])).await;
    assert_eq!(
        malformed.error_type(),
        Some("InvalidInput"),
        "{malformed:?}"
    );
    process.stop().await;
}

/// The Lambda runtime logs every raw event at TRACE: the function filters it out whatever
/// `RUST_LOG` says.
#[tokio::test]
async fn at_trace_the_raw_event_is_never_logged() {
    let resources = Resources::create().await;
    let secret = unique("never-logged");
    let function = function(&resources.table_name, &resources.queue_url).await;
    let mut event = events::scheduled();
    event["detail"] = json!({"note": secret});
    lambda_harness::assert_event_never_logged(function, &event, &secret).await;
}
