//! execute-task against a local webhook receiver, with the task store on the emulator.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use execute_task::webhook::HttpSender;
use execute_task::ExecuteTask;
use lambda_runtime::Diagnostic;
use std::sync::{Arc, Mutex};
use tasks_aws::testing::{unique, Resources};
use tasks_core::pipeline::Outcome;
use tasks_core::{ExecutionInput, Schedule, SystemClock, Task, TaskStatus, TaskStore, Webhook};

#[derive(Clone, Debug)]
struct Arrival {
    at: DateTime<Utc>,
    path: String,
    headers: HeaderMap,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Arrival>>>);

impl Receiver {
    /// Serves `/ok` (204), `/reject` (404), `/fail` (503) and `/slow` (answers after 5 s) on a
    /// free loopback port.
    async fn start() -> (Self, String) {
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/{*path}", any(answer))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, base)
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.0.lock().unwrap().clone()
    }
}

async fn answer(
    State(receiver): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> StatusCode {
    let at = Utc::now();
    let path = uri.path().to_string();
    receiver.0.lock().unwrap().push(Arrival {
        at,
        path: path.clone(),
        headers,
    });
    match path.as_str() {
        "/reject" => StatusCode::NOT_FOUND,
        "/fail" => StatusCode::SERVICE_UNAVAILABLE,
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            StatusCode::OK
        }
        _ => StatusCode::NO_CONTENT,
    }
}

struct Fixture {
    resources: Resources,
    handler: ExecuteTask,
}

async fn fixture(allow_private: bool) -> Fixture {
    let resources = Resources::create().await;
    let handler = ExecuteTask {
        store: Arc::new(resources.store()),
        sender: Arc::new(
            HttpSender::new(std::time::Duration::from_millis(800), allow_private).unwrap(),
        ),
        clock: Arc::new(SystemClock),
        schedule: Schedule::default(),
    };
    Fixture { resources, handler }
}

impl Fixture {
    /// Stores an IN_PROGRESS task due in `in_ms` with a webhook to `url`; returns its input as
    /// the workflow would pass it at `wakeAt`.
    async fn task(&self, url: &str, in_ms: i64, status: TaskStatus) -> ExecutionInput {
        let timestamp = Utc::now() + Duration::milliseconds(in_ms);
        let task = Task {
            task_status: status,
            webhook: Some(Webhook {
                url: url.to_string(),
                method: "POST".into(),
                headers: [("X-Custom".to_string(), "yes".to_string())].into(),
                body: None,
            }),
            payload: Some(serde_json::json!({"order": 7})),
            ..Task::new(unique("task"), timestamp, &Schedule::default(), Utc::now())
        };
        self.resources.store().create(&task).await.unwrap();
        ExecutionInput {
            id: task.id,
            timestamp,
            wake_at: timestamp - Duration::milliseconds(1000),
            series: task.series,
        }
    }

    async fn error_type(&self, input: ExecutionInput) -> String {
        let error = self.handler.handle(input).await.unwrap_err();
        Diagnostic::from(error).error_type
    }
}

#[tokio::test]
async fn a_2xx_answer_is_delivered_once_with_the_idempotency_headers() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/ok"), 0, TaskStatus::InProgress)
        .await;
    let report = fixture.handler.handle(input.clone()).await.unwrap();
    assert_eq!(report.outcome, Outcome::Delivered);
    assert_eq!(report.status_code, Some(204));
    let arrivals = receiver.arrivals();
    assert_eq!(arrivals.len(), 1);
    let headers = &arrivals[0].headers;
    assert_eq!(headers["idempotency-key"], input.id.as_str());
    assert_eq!(headers["x-task-attempt"], "1");
    assert_eq!(headers["x-custom"], "yes");
    let stored = fixture
        .resources
        .store()
        .get(&input.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.attempts, 1);
}

#[tokio::test]
async fn invoked_at_wake_at_it_sends_just_after_the_second_never_before() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/ok"), 1000, TaskStatus::InProgress)
        .await;
    let report = fixture.handler.handle(input.clone()).await.unwrap();
    let arrival = receiver.arrivals()[0].at;
    let lateness = arrival - input.timestamp;
    assert!(lateness >= Duration::zero(), "arrived {lateness} early");
    assert!(
        lateness < Duration::milliseconds(250),
        "arrived {lateness} late"
    );
    assert!(report.lateness_ms.unwrap() >= 0);
}

#[tokio::test]
async fn woken_minutes_early_it_sends_nothing_and_asks_for_a_retry() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/ok"), 120_000, TaskStatus::InProgress)
        .await;
    assert_eq!(fixture.error_type(input).await, "TaskNotDue");
    assert!(receiver.arrivals().is_empty());
}

#[tokio::test]
async fn a_4xx_is_a_permanent_failure() {
    let (_receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/reject"), 0, TaskStatus::InProgress)
        .await;
    assert_eq!(fixture.error_type(input).await, "WebhookRejected");
}

#[tokio::test]
async fn a_5xx_is_a_retryable_failure_and_each_attempt_is_numbered() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/fail"), 0, TaskStatus::InProgress)
        .await;
    assert_eq!(
        fixture.error_type(input.clone()).await,
        "WebhookServerError"
    );
    assert_eq!(fixture.error_type(input).await, "WebhookServerError");
    let attempts: Vec<String> = receiver
        .arrivals()
        .iter()
        .map(|a| a.headers["x-task-attempt"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(attempts, vec!["1", "2"]);
}

#[tokio::test]
async fn a_slow_receiver_times_out_as_a_retryable_failure() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/slow"), 0, TaskStatus::InProgress)
        .await;
    assert_eq!(fixture.error_type(input).await, "WebhookTimeout");
    assert_eq!(receiver.arrivals()[0].path, "/slow");
}

#[tokio::test]
async fn a_closed_port_is_a_retryable_connection_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let fixture = fixture(true).await;
    let input = fixture
        .task(
            &format!("http://127.0.0.1:{port}/x"),
            0,
            TaskStatus::InProgress,
        )
        .await;
    assert_eq!(fixture.error_type(input).await, "WebhookConnectionError");
}

#[tokio::test]
async fn a_cancelled_task_is_skipped_without_a_request() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/ok"), 0, TaskStatus::Cancelled)
        .await;
    let report = fixture.handler.handle(input).await.unwrap();
    assert_eq!(report.outcome, Outcome::Skipped);
    assert!(receiver.arrivals().is_empty());
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let (receiver, base) = Receiver::start().await;
    let port = base.rsplit(':').next().unwrap();
    let fixture = fixture(false).await;
    for url in [
        format!("{base}/ok"),
        "http://10.1.2.3/hook".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://[::1]:{port}/ok"),
        format!("http://localhost:{port}/ok"),
    ] {
        let input = fixture.task(&url, 0, TaskStatus::InProgress).await;
        assert_eq!(
            fixture.error_type(input.clone()).await,
            "WebhookRefused",
            "{url}"
        );
        let stored = fixture
            .resources
            .store()
            .get(&input.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.attempts, 0, "{url}: no attempt may begin");
    }
    assert!(receiver.arrivals().is_empty());
}
