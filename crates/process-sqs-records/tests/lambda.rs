//! process-sqs-records run as a Lambda process, fed an SQS batch as the event source mapping
//! sends it: only the records that failed come back in `batchItemFailures`.

use chrono::{Duration, Utc};
use lambda_harness::events;
use lambda_harness::Function;
use serde_json::json;
use tasks_aws::testing::{unique, Resources};
use tasks_core::{DispatchMessage, Pacing, Task, TaskStatus, TaskStore};

#[tokio::test]
async fn reports_only_the_failed_records() {
    let resources = Resources::create().await;
    let workflow = resources.waiting_workflow().await;
    let now = Utc::now();
    let task = Task {
        task_status: TaskStatus::Queued,
        series: 1,
        ..Task::new(
            unique("task"),
            now + Duration::seconds(60),
            Pacing::default().lead_time,
            now,
        )
    };
    resources.store().create(&task).await.unwrap();
    let function = Function::on_emulator(
        "process-sqs-records",
        env!("CARGO_BIN_EXE_process-sqs-records"),
    )
    .await
    .env("TABLE_NAME", &resources.table_name)
    .env("STATE_MACHINE_ARN", workflow.state_machine_arn());
    let process = function.spawn();

    let good = serde_json::to_string(&DispatchMessage::from(&task)).unwrap();
    let event = events::sqs_batch(&[
        ("good".to_string(), good),
        ("malformed".to_string(), "{\"id\":".to_string()),
    ]);
    let response = function.invoke(&event).await.response();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "malformed"}]})
    );
    assert_eq!(
        resources
            .store()
            .get(&task.id)
            .await
            .unwrap()
            .unwrap()
            .task_status,
        TaskStatus::InProgress
    );
    assert_eq!(
        resources.execution_names(&workflow).await,
        vec![task.execution_name()]
    );

    let malformed = function.invoke(&json!({"Records": "none"})).await;
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
    let function = Function::on_emulator(
        "process-sqs-records",
        env!("CARGO_BIN_EXE_process-sqs-records"),
    )
    .await
    .env("TABLE_NAME", &resources.table_name)
    .env(
        "STATE_MACHINE_ARN",
        "arn:aws:states:us-east-1:123456789012:stateMachine:absent",
    );
    let message = serde_json::to_string(&tasks_core::QueueMessage::Task(DispatchMessage {
        id: unique("task"),
        timestamp: Utc::now() + Duration::minutes(2),
        series: 1,
    }))
    .unwrap();
    let mut event = events::sqs_batch(&[(unique("message"), message)]);
    event["Records"][0]["md5OfBody"] = json!(secret);
    lambda_harness::assert_event_never_logged(function, &event, &secret).await;
}
