//! update-status run as a Lambda process, with the inputs the state machine gives it.

use chrono::{Duration, Utc};
use lambda_harness::events::{self, state_errors};
use lambda_harness::Function;
use serde_json::json;
use tasks_aws::testing::{unique, Resources};
use tasks_core::{Pacing, Task, TaskStatus, TaskStore};

async fn function(table_name: &str) -> Function {
    Function::on_emulator("update-status", env!("CARGO_BIN_EXE_update-status"))
        .await
        .env("TABLE_NAME", table_name)
}

/// An IN_PROGRESS task in series 1, with `attempts` begun in it.
async fn in_progress(resources: &Resources, attempts: u32) -> Task {
    let task = Task {
        task_status: TaskStatus::InProgress,
        series: 1,
        attempts,
        attempt_series: 1,
        ..Task::new(
            unique("task"),
            Utc::now(),
            Pacing::default().lead_time,
            Utc::now(),
        )
    };
    resources.store().create(&task).await.unwrap();
    task
}

#[tokio::test]
async fn records_the_outcome_the_state_machine_hands_over() {
    let resources = Resources::create().await;
    let function = function(&resources.table_name).await;
    let process = function.spawn();
    let wake_at = |task: &Task| task.timestamp - Duration::seconds(1);

    let delivered = in_progress(&resources, 1).await;
    let event = events::status_result(&delivered.id, delivered.timestamp, wake_at(&delivered));
    assert_eq!(function.invoke(&event).await.response(), json!("COMPLETED"));

    let failed = in_progress(&resources, 1).await;
    let event = events::status_error(&failed.id, failed.timestamp, wake_at(&failed));
    assert_eq!(function.invoke(&event).await.response(), json!("FAILED"));

    // An execution's error before any attempt began: nothing was sent, the sweeps run it again.
    let unsent = in_progress(&resources, 0).await;
    let event = events::status_error(&unsent.id, unsent.timestamp, wake_at(&unsent));
    assert_eq!(
        function.invoke(&event).await.response(),
        json!("IN_PROGRESS")
    );

    let store = resources.store();
    let stored = store.get(&failed.id).await.unwrap().unwrap();
    assert_eq!(stored.task_status, TaskStatus::Failed);
    assert!(
        stored
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("404"),
        "{:?}",
        stored.last_error
    );
    assert_eq!(
        store.get(&delivered.id).await.unwrap().unwrap().task_status,
        TaskStatus::Completed
    );
    process.stop().await;
}

#[tokio::test]
async fn errors_carry_the_types_the_state_machine_names() {
    let function = function(&unique("no-such-table")).await;
    let process = function.spawn();
    let now = Utc::now();

    let store_down = function
        .invoke(&events::status_result("some-task", now, now))
        .await;
    assert_eq!(
        store_down.error_type(),
        Some("StoreUnavailable"),
        "{store_down:?}"
    );
    let malformed = function.invoke(&json!({"id": 42})).await;
    assert_eq!(
        malformed.error_type(),
        Some("InvalidInput"),
        "{malformed:?}"
    );

    for state in ["MarkCompleted", "MarkFailed"] {
        let errors = state_errors(state);
        assert!(
            errors.retried.contains(&"StoreUnavailable".to_string()),
            "{state}"
        );
        // The state machine builds this input itself: a malformed one is a definition error,
        // which no retry can fix, so the execution fails (and shows in ExecutionsFailed).
        assert!(
            !errors.retried.contains(&"InvalidInput".to_string()),
            "{state}"
        );
    }
    process.stop().await;
}

/// The Lambda runtime logs every raw event at TRACE: the function filters it out whatever
/// `RUST_LOG` says.
#[tokio::test]
async fn at_trace_the_raw_event_is_never_logged() {
    let resources = Resources::create().await;
    let secret = unique("never-logged");
    let function = function(&resources.table_name).await;
    let task = in_progress(&resources, 1).await;
    let mut event = events::status_result(
        &task.id,
        task.timestamp,
        task.timestamp - Duration::seconds(1),
    );
    event["result"]["record"] = json!({"attempt": 1, "startedAt": "2030-01-01T00:00:00.000Z",
        "durationMs": 3, "responseBody": secret});
    lambda_harness::assert_event_never_logged(function, &event, &secret).await;
}
