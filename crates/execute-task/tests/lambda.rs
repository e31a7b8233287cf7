//! execute-task run as a Lambda process, with the state machine's input: its answer, and the
//! errorType of each failure as the state machine's Retry and Catch name it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::Router;
use chrono::{Duration, Utc};
use lambda_harness::events::{self, state_errors};
use lambda_harness::Function;
use serde_json::json;
use std::sync::{Arc, Mutex};
use tasks_aws::testing::{unique, Resources};
use tasks_core::rules::error_types::RETRYABLE_ERRORS;
use tasks_core::{Pacing, Task, TaskStatus, TaskStore, Webhook};

mod verifier;

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

async fn function(table_name: &str, queue_url: &str) -> Function {
    Function::on_emulator("execute-task", env!("CARGO_BIN_EXE_execute-task"))
        .await
        .env("TABLE_NAME", table_name)
        .env("QUEUE_URL", queue_url)
        .env(
            "WEBHOOK_SIGNING_SECRET_ARN",
            lambda_harness::signing_secret_arn().await,
        )
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
        .env("WEBHOOK_TIMEOUT_MS", "5000")
}

/// A task started by the workflow, due now, with a webhook at `url` (if any); returns its input.
async fn started(resources: &Resources, url: Option<String>) -> serde_json::Value {
    started_with(resources, url.map(|url| Webhook::new(url, "POST"))).await
}

async fn started_with(resources: &Resources, webhook: Option<Webhook>) -> serde_json::Value {
    let now = Utc::now();
    let task = Task {
        task_status: TaskStatus::InProgress,
        series: 1,
        webhook,
        ..Task::new(unique("task"), now, Pacing::default().lead_time, now)
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
    let function = function(&resources.table_name, resources.queue().queue_url()).await;
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

    // A slot: the delivered task is recorded COMPLETED by the run, the rejected one (no retry
    // by its policy) FAILED, and nothing is handed over.
    let ok = started(&resources, Some(format!("{base}/ok"))).await;
    let rejected = started(&resources, Some(format!("{base}/reject"))).await;
    let tasks: Vec<serde_json::Value> = [&ok, &rejected]
        .iter()
        .map(|input| {
            json!({"id": input["id"], "timestamp": input["timestamp"], "series": input["series"]})
        })
        .collect();
    let slot = json!({"slot": unique("slot"), "wakeAt": ok["wakeAt"], "tasks": tasks});
    let summary = function.invoke(&slot).await.response();
    assert_eq!(
        summary,
        json!({"completed": 1, "failed": 1, "handedOver": 0, "skipped": 0, "lostHandOvers": 0})
    );
    let store = resources.store();
    let status = |input: &serde_json::Value| {
        let store = store.clone();
        let id = input["id"].as_str().unwrap().to_string();
        async move { store.get(&id).await.unwrap().unwrap().task_status }
    };
    assert_eq!(status(&ok).await, TaskStatus::Completed);
    assert_eq!(status(&rejected).await, TaskStatus::Failed);
    assert!(resources.receive_all().await.is_empty());
    process.stop().await;
}

#[tokio::test]
async fn errors_carry_the_types_the_state_machine_names() {
    let resources = Resources::create().await;
    let base = receiver().await;
    let function = function(&resources.table_name, resources.queue().queue_url()).await;
    let process = function.spawn();
    let errors = state_errors("ExecuteTask");
    let caught_by_catch_all = errors.caught.contains(&"States.ALL".to_string());
    assert!(
        caught_by_catch_all,
        "ExecuteTask's Catch: {:?}",
        errors.caught
    );

    // A webhook's failure is an outcome the state machine's Choice reads, not an error.
    let server_error = function
        .invoke(&started(&resources, Some(format!("{base}/fail"))).await)
        .await
        .response();
    assert_eq!(server_error["outcome"], "RETRY", "{server_error}");
    assert!(server_error["retryAt"].is_string(), "{server_error}");
    assert_eq!(server_error["record"]["statusCode"], 503, "{server_error}");
    let rejected = function
        .invoke(&started(&resources, Some(format!("{base}/reject"))).await)
        .await
        .response();
    assert_eq!(rejected["outcome"], "FAILED", "{rejected}");
    let error = rejected["error"].as_str().unwrap();
    assert!(error.starts_with("WebhookRejected: "), "{error}");
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

    for retried in RETRYABLE_ERRORS {
        assert!(errors.retried.contains(&retried.to_string()), "{retried}");
    }
    assert!(!errors.retried.contains(&"InvalidInput".to_string()));
}

async fn function_without_table() -> Function {
    function(
        &unique("no-such-table"),
        "http://127.0.0.1:1/000000000000/none",
    )
    .await
}

/// The Lambda runtime logs every raw event at TRACE (a previous attempt's answer included): the
/// function filters it out whatever `RUST_LOG` says.
#[tokio::test]
async fn at_trace_the_raw_event_is_never_logged() {
    let resources = Resources::create().await;
    let secret = unique("never-logged");
    let function = function(&resources.table_name, &resources.queue_url).await;
    let mut event = started(&resources, None).await;
    event["note"] = json!(secret);
    lambda_harness::assert_event_never_logged(function, &event, &secret).await;
}

/// Each request a receiver got: its headers and the body its signature covers.
type Arrivals = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// The function as deployed: it reads the named signing secrets the template lists
/// (`WEBHOOK_SIGNING_SECRET_NAMES`) from Secrets Manager under their prefix when it starts, and
/// signs a task that names one with it alone.
#[tokio::test]
async fn a_task_naming_an_operator_s_signing_secret_is_signed_with_it() {
    let resources = Resources::create().await;
    let arrivals: Arrivals = Arc::default();
    let app = Router::new()
        .route(
            "/{*path}",
            any(
                |State(arrivals): State<Arrivals>, headers: HeaderMap, body: Bytes| async move {
                    arrivals.lock().unwrap().push((headers, body));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let prefix = format!("{}/signing/", unique("tasks"));
    let billing = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let config = tasks_aws::testing::emulator_config().await;
    aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name(format!("{prefix}billing"))
        .secret_string(billing)
        .send()
        .await
        .unwrap();
    let function = function(&resources.table_name, resources.queue().queue_url())
        .await
        .env("WEBHOOK_SIGNING_SECRET_NAMES", "billing")
        .env("WEBHOOK_SIGNING_SECRET_PREFIX", &prefix);
    let process = function.spawn();
    let webhook = Webhook {
        signing: Some(tasks_core::Signing {
            secret: "billing".into(),
        }),
        ..Webhook::new(format!("{base}/billing"), "POST")
    };
    let input = started_with(&resources, Some(webhook)).await;
    let delivered = function.invoke(&input).await.response();
    assert_eq!(delivered["outcome"], "DELIVERED", "{delivered}");
    let (headers, body) = arrivals.lock().unwrap()[0].clone();
    assert_eq!(verifier::verify(billing, &headers, &body), Ok(()));
    process.stop().await;
}
