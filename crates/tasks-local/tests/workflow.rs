//! The local workflow runs the state machine on the Lambdas' handlers: a slot's delivered webhook
//! ends COMPLETED in the slot, a failed one goes on in the task's own execution (retried by its
//! policy, or FAILED with the handler's error), and none is sent early.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use execute_task::ExecuteTask;
use std::sync::{Arc, Mutex};
use tasks_core::flow::start::start_task;
use tasks_core::model::retry_policy::{Backoff, RetryPolicy};
use tasks_core::testing::memory::{MemoryQueue, MemoryStore};
use tasks_core::{
    Clock, DeliveryError, DispatchMessage, Execution, Pacing, QueueMessage, Slot, StartOutcome,
    SystemClock, Task, TaskStatus, Webhook, WebhookCall, WebhookResponse, WebhookSender, Workflow,
};
use tasks_local::workflow::LocalWorkflow;
use update_status::UpdateStatus;

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// A receiver that answers every call the same way and records when each was sent.
struct Receiver {
    answer: Result<u16, DeliveryError>,
    sent: Mutex<Vec<DateTime<Utc>>>,
    /// Each request's URL and body.
    requests: Mutex<Vec<(String, Option<serde_json::Value>)>>,
}

#[async_trait]
impl WebhookSender for Receiver {
    async fn prepare(&self, _: &Webhook) -> Result<(), DeliveryError> {
        Ok(())
    }

    async fn send(&self, call: WebhookCall<'_>) -> Result<WebhookResponse, DeliveryError> {
        self.sent.lock().unwrap().push(Utc::now());
        self.requests
            .lock()
            .unwrap()
            .push((call.webhook.url.clone(), call.webhook.body.clone()));
        self.answer.clone().map(|status| WebhookResponse {
            status,
            retry_after: None,
            body: "ok".into(),
        })
    }
}

/// How the task reaches the workflow.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// In a slot, as the cron sends it; a task the slot hands off goes on in its own execution,
    /// as process-sqs-records starts it.
    Slot,
    /// In its own execution from the start, as a sweep sends it again.
    Own,
}

/// Runs one QUEUED task due in a second and a half through the local workflow and returns it
/// once final, with the times its webhook was sent.
async fn run(
    answer: Result<u16, DeliveryError>,
    retry: Option<RetryPolicy>,
) -> (Task, Vec<DateTime<Utc>>) {
    let (task, sent, _) = run_with_callback(answer, retry, None, Start::Slot).await;
    (task, sent)
}

/// As [`run`], the task with a failure callback; also returns every request's URL and body.
async fn run_with_callback(
    answer: Result<u16, DeliveryError>,
    retry: Option<RetryPolicy>,
    on_failure: Option<Webhook>,
    start: Start,
) -> (
    Task,
    Vec<DateTime<Utc>>,
    Vec<(String, Option<serde_json::Value>)>,
) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let pacing = Pacing::default();
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let receiver = Arc::new(Receiver {
        answer,
        sent: Mutex::new(Vec::new()),
        requests: Mutex::new(Vec::new()),
    });
    let timestamp = clock.now() + Duration::milliseconds(1500);
    store.put(Task {
        task_status: TaskStatus::Queued,
        webhook: Some(Webhook {
            url: "https://receiver.example/hook".into(),
            method: "POST".into(),
            headers: Default::default(),
            body: None,
            signing: None,
            keep_response_body: true,
        }),
        retry,
        on_failure,
        ..Task::new("task-1", timestamp, pacing.lead_time, clock.now())
    });
    let execute = Arc::new(ExecuteTask {
        store: store.clone(),
        sender: receiver.clone(),
        queue: queue.clone(),
        clock: clock.clone(),
        pacing,
        metrics: Arc::new(tasks_core::metrics::Stdout),
    });
    let update = Arc::new(UpdateStatus {
        store: store.clone(),
        clock: clock.clone(),
        metrics: Arc::new(tasks_core::metrics::Stdout),
    });
    let workflow =
        LocalWorkflow::new(execute, update, clock.clone()).expect("the definition parses");
    let message = DispatchMessage {
        id: "task-1".into(),
        timestamp,
        series: 0,
    };
    let execution = match start {
        Start::Slot => Execution::of_slot(&Slot {
            name: "slot-1".into(),
            wake_at: pacing.wake_at(timestamp),
            tasks: vec![message.clone()],
            held: false,
        }),
        Start::Own => Execution::of_task(&pacing.execution_input(&message), None),
    };
    assert_eq!(workflow.start(&execution).await, Ok(StartOutcome::Started));
    assert_eq!(
        workflow.start(&execution).await,
        Ok(StartOutcome::AlreadyRunning)
    );

    let deadline = std::time::Instant::now() + DEADLINE;
    let mut handed_over = 0;
    loop {
        for message in queue.messages().into_iter().skip(handed_over) {
            let QueueMessage::HandOver(hand_over) = message else {
                panic!("a slot hands off with the attempt's report: {message:?}");
            };
            let started = start_task(
                store.as_ref(),
                &workflow,
                clock.as_ref(),
                &pacing,
                &hand_over.task,
                Some(&hand_over.result),
            )
            .await;
            assert!(started.is_ok(), "{started:?}");
            handed_over += 1;
        }
        let task = store.tasks().pop().expect("the task");
        if matches!(task.task_status, TaskStatus::Completed | TaskStatus::Failed)
            && workflow.running() == 0
        {
            assert_eq!(
                workflow.start(&execution).await,
                Ok(StartOutcome::AlreadyEnded),
                "an ended execution's name stays taken"
            );
            let sent = receiver.sent.lock().unwrap().clone();
            let requests = receiver.requests.lock().unwrap().clone();
            return (task, sent, requests);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {} after {DEADLINE:?}",
            task.task_status
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[tokio::test]
async fn a_delivered_webhook_completes_the_task() {
    let (task, sent) = run(Ok(200), None).await;
    assert_eq!(task.task_status, TaskStatus::Completed, "{task:?}");
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0] >= task.timestamp,
        "sent {} before {}",
        sent[0],
        task.timestamp
    );
    assert_eq!(task.attempts, 1);
}

#[tokio::test]
async fn a_rejected_webhook_fails_the_task_with_the_handlers_error() {
    let (task, sent) = run(Ok(410), None).await;
    assert_eq!(task.task_status, TaskStatus::Failed, "{task:?}");
    assert_eq!(sent.len(), 1, "a permanent error is not retried");
    let error = task.last_error.expect("a FAILED task has a lastError");
    assert!(error.starts_with("WebhookRejected: "), "{error}");
    assert!(error.contains("410"), "{error}");
}

#[tokio::test]
async fn a_failing_webhook_is_retried_by_the_task_s_policy_then_fails_with_its_history() {
    let policy = RetryPolicy {
        max_attempts: 3,
        backoff: Backoff {
            initial_seconds: 1,
            multiplier: 1.0,
            max_seconds: 1,
        },
        ..RetryPolicy::default()
    };
    let (task, sent) = run(Ok(503), Some(policy)).await;
    assert_eq!(task.task_status, TaskStatus::Failed, "{task:?}");
    assert_eq!(sent.len(), 3);
    for pair in sent.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::seconds(1), "{sent:?}");
    }
    assert_eq!(task.attempts, 3);
    let history: Vec<(u32, Option<u16>)> = task
        .attempt_history
        .iter()
        .map(|record| (record.attempt, record.status_code))
        .collect();
    assert_eq!(history, [(1, Some(503)), (2, Some(503)), (3, Some(503))]);
    let error = task.last_error.unwrap();
    assert!(error.starts_with("WebhookServerError: "), "{error}");
}

#[tokio::test]
async fn a_failed_task_calls_its_failure_callback_once_with_the_task_as_the_body() {
    let callback = Webhook {
        url: "https://receiver.example/failed".into(),
        method: "POST".into(),
        headers: Default::default(),
        body: None,
        signing: None,
        keep_response_body: true,
    };
    let (task, _, requests) = run_with_callback(Ok(404), None, Some(callback), Start::Slot).await;
    assert_eq!(task.task_status, TaskStatus::Failed, "{task:?}");
    let urls: Vec<&str> = requests.iter().map(|(url, _)| url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://receiver.example/hook",
            "https://receiver.example/failed"
        ]
    );
    let notice = requests[1].1.clone().expect("the callback has a body");
    assert_eq!(notice["type"], "task.failed");
    assert_eq!(notice["id"], "task-1");
    assert_eq!(notice["status"], "FAILED");
    assert!(notice["lastError"]
        .as_str()
        .unwrap()
        .starts_with("WebhookRejected"));
    assert!(notice.get("webhook").is_none() && notice.get("onFailure").is_none());

    let (completed, _, requests) = run_with_callback(
        Ok(200),
        None,
        Some(Webhook {
            url: "https://receiver.example/failed".into(),
            method: "POST".into(),
            headers: Default::default(),
            body: None,
            signing: None,
            keep_response_body: true,
        }),
        Start::Slot,
    )
    .await;
    assert_eq!(completed.task_status, TaskStatus::Completed);
    assert_eq!(
        requests.len(),
        1,
        "no callback for a task that did not fail"
    );
}

#[tokio::test]
async fn a_task_s_own_execution_runs_it_from_its_wait_and_retries_it() {
    let policy = RetryPolicy {
        max_attempts: 2,
        backoff: Backoff {
            initial_seconds: 1,
            multiplier: 1.0,
            max_seconds: 1,
        },
        ..RetryPolicy::default()
    };
    let (task, sent, _) = run_with_callback(Ok(503), Some(policy), None, Start::Own).await;
    assert_eq!(task.task_status, TaskStatus::Failed, "{task:?}");
    assert_eq!(sent.len(), 2);
    assert!(
        sent[0] >= task.timestamp,
        "sent {} before {}",
        sent[0],
        task.timestamp
    );
}
