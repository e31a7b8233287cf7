//! execute-task run as a Lambda process, with the state machine's input: its answer, and the
//! errorType of each failure as the state machine's Retry and Catch name it.

use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use chrono::{Duration, Utc};
use lambda_harness::events::{self, state_errors};
use lambda_harness::Function;
use serde_json::json;
use tasks_aws::testing::{unique, Resources};
use tasks_core::retry::{PERMANENT_ERRORS, RETRYABLE_ERRORS};
use tasks_core::{Schedule, Task, TaskStatus, TaskStore, Webhook};

/// A receiver on a free loopback port: `/ok` answers 204, `/reject` 404, `/fail` 503.
async fn receiver() -> String {
    let app = Router::new().route(
        "/{*path}",
        any(|uri: axum::http::Uri| async move {
            match uri.path() {
                "/ok" => StatusCode::NO_CONTENT,
                "/reject" => StatusCode::NOT_FOUND,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn function(table_name: &str) -> Function {
    Function::on_emulator("execute-task", env!("CARGO_BIN_EXE_execute-task"))
        .await
        .env("TABLE_NAME", table_name)
        .env(
            "WEBHOOK_SIGNING_SECRET_ARN",
            lambda_harness::signing_secret_arn().await,
        )
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
        .env("WEBHOOK_TIMEOUT_MS", "5000")
}

/// A task started by the workflow, due now, with a webhook at `url` (if any); returns its input.
async fn started(resources: &Resources, url: Option<String>) -> serde_json::Value {
    let now = Utc::now();
    let task = Task {
        task_status: TaskStatus::InProgress,
        series: 1,
        webhook: url.map(|url| Webhook {
            url,
            method: "POST".into(),
            headers: Default::default(),
            body: None,
        }),
        ..Task::new(unique("task"), now, &Schedule::default(), now)
    };
    resources.store().create(&task).await.unwrap();
    events::execution_input(
        &task.id,
        task.timestamp,
        task.timestamp - Duration::seconds(1),
    )
}

#[tokio::test]
async fn runs_the_task_and_reports_the_result_update_status_reads() {
    let resources = Resources::create().await;
    let base = receiver().await;
    let function = function(&resources.table_name).await;
    let process = function.spawn();

    let delivered = function
        .invoke(&started(&resources, Some(format!("{base}/ok"))).await)
        .await
        .response();
    assert_eq!(delivered["outcome"], "DELIVERED", "{delivered}");
    assert_eq!(delivered["statusCode"], 204);
    assert_eq!(delivered["attempt"], 1);
    assert!(
        delivered["latenessMs"].as_i64().unwrap() >= 0,
        "{delivered}"
    );
    assert!(delivered["executedAt"].is_string(), "{delivered}");

    let completed = function
        .invoke(&started(&resources, None).await)
        .await
        .response();
    assert_eq!(completed["outcome"], "COMPLETED", "{completed}");
    process.stop().await;
}

#[tokio::test]
async fn errors_carry_the_types_the_state_machine_names() {
    let resources = Resources::create().await;
    let base = receiver().await;
    let function = function(&resources.table_name).await;
    let process = function.spawn();
    let errors = state_errors("ExecuteTask");
    let caught_by_catch_all = errors.caught.contains(&"States.ALL".to_string());
    assert!(
        caught_by_catch_all,
        "ExecuteTask's Catch: {:?}",
        errors.caught
    );

    let server_error = function
        .invoke(&started(&resources, Some(format!("{base}/fail"))).await)
        .await;
    assert_eq!(
        server_error.error_type(),
        Some("WebhookServerError"),
        "{server_error:?}"
    );
    let rejected = function
        .invoke(&started(&resources, Some(format!("{base}/reject"))).await)
        .await;
    assert_eq!(
        rejected.error_type(),
        Some("WebhookRejected"),
        "{rejected:?}"
    );
    let malformed = function.invoke(&json!({"id": "x", "timestamp": 5})).await;
    assert_eq!(
        malformed.error_type(),
        Some("InvalidInput"),
        "{malformed:?}"
    );
    process.stop().await;

    let function = function_without_table().await;
    let process = function.spawn();
    let now = Utc::now();
    let store_down = function
        .invoke(&events::execution_input("some-task", now, now))
        .await;
    assert_eq!(
        store_down.error_type(),
        Some("StoreUnavailable"),
        "{store_down:?}"
    );
    process.stop().await;

    for retried in ["WebhookServerError", "StoreUnavailable"] {
        assert!(RETRYABLE_ERRORS.contains(&retried));
        assert!(errors.retried.contains(&retried.to_string()), "{retried}");
    }
    for permanent in ["WebhookRejected", "InvalidInput"] {
        assert!(!RETRYABLE_ERRORS.contains(&permanent));
        assert!(
            !errors.retried.contains(&permanent.to_string()),
            "{permanent}"
        );
    }
    assert!(PERMANENT_ERRORS.contains(&"WebhookRejected"));
}

async fn function_without_table() -> Function {
    function(&unique("no-such-table")).await
}
