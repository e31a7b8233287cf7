use crate::support::{status_of, task, webhook, RecordingSender};
use chrono::{Duration, TimeZone, Utc};
use tasks_core::contracts::{AttemptOutcome, AttemptReport, StatusUpdate, StepError};
use tasks_core::flow::execute::execute_task;
use tasks_core::flow::record::update_status;
use tasks_core::flow::start::{start_task, StartReport};
use tasks_core::rules::error_types::RETRYABLE_ERRORS;
use tasks_core::testing::memory::{FixedClock, MemoryStore, MemoryWorkflow};
use tasks_core::{DeliveryError, DispatchMessage, Pacing, SystemClock, TaskStatus};

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap()
}

fn message(id: &str) -> DispatchMessage {
    DispatchMessage {
        id: id.into(),
        timestamp: at(),
        series: 0,
    }
}

#[tokio::test]
async fn duplicate_deliveries_start_one_execution() {
    let store = MemoryStore::new();
    let workflow = MemoryWorkflow::new();
    let clock = FixedClock::new(at() - Duration::minutes(2));
    let pacing = Pacing::default();
    store.put(task("a", at(), TaskStatus::Queued));
    let first = start_task(&store, &workflow, &clock, &pacing, &message("a"), None)
        .await
        .unwrap();
    let second = start_task(&store, &workflow, &clock, &pacing, &message("a"), None)
        .await
        .unwrap();
    assert_eq!(first, StartReport::Started);
    assert_eq!(second, StartReport::AlreadyStarted);
    assert_eq!(workflow.executions().len(), 1);
    assert_eq!(
        workflow.executions()[0].wake_at,
        at() - Duration::seconds(1)
    );
    assert_eq!(status_of(&store, "a"), TaskStatus::InProgress);
}

#[tokio::test]
async fn cancelled_or_missing_tasks_are_not_started() {
    let store = MemoryStore::new();
    let workflow = MemoryWorkflow::new();
    let clock = FixedClock::new(at());
    store.put(task("c", at(), TaskStatus::Cancelled));
    let report = start_task(
        &store,
        &workflow,
        &clock,
        &Pacing::default(),
        &message("c"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(report, StartReport::Skipped(TaskStatus::Cancelled));
    let report = start_task(
        &store,
        &workflow,
        &clock,
        &Pacing::default(),
        &message("gone"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(report, StartReport::Missing);
    assert!(workflow.executions().is_empty());
}

#[tokio::test]
async fn a_failed_start_leaves_the_task_queued_for_a_retry() {
    let store = MemoryStore::new();
    let workflow = MemoryWorkflow::new();
    workflow.fail_for("a");
    store.put(task("a", at(), TaskStatus::Queued));
    let result = start_task(
        &store,
        &workflow,
        &FixedClock::new(at()),
        &Pacing::default(),
        &message("a"),
        None,
    )
    .await;
    assert!(result.is_err());
    assert_eq!(status_of(&store, "a"), TaskStatus::Queued);
}

fn due_soon(id: &str, in_ms: i64, status: TaskStatus) -> tasks_core::Task {
    let mut task = task(id, Utc::now() + Duration::milliseconds(in_ms), status);
    task.webhook = Some(webhook());
    task
}

async fn execute(
    store: &MemoryStore,
    sender: &RecordingSender,
    id: &str,
) -> Result<AttemptReport, tasks_core::flow::execute::ExecuteError> {
    let task = store.tasks().into_iter().find(|t| t.id == id).unwrap();
    let pacing = Pacing::default();
    let input = pacing.execution_input(&DispatchMessage::from(&task));
    execute_task(store, sender, &SystemClock, &pacing, &input.into()).await
}

#[tokio::test]
async fn woken_early_it_waits_and_never_sends_before_the_second() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(204));
    store.put(due_soon("a", 1500, TaskStatus::InProgress));
    let timestamp = store.tasks()[0].timestamp;
    let report = execute(&store, &sender, "a").await.unwrap();
    let sent = sender.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].2 >= timestamp,
        "sent {} before {}",
        sent[0].2,
        timestamp
    );
    assert!(sent[0].2 - timestamp < Duration::milliseconds(50));
    assert_eq!(report.outcome, AttemptOutcome::Delivered);
    assert_eq!(report.status_code, Some(204));
    assert_eq!(report.attempt, 1);
    assert!(report.lateness_ms.unwrap() >= 0);
    assert_eq!(store.tasks()[0].attempts, 1);
}

#[tokio::test]
async fn woken_far_too_early_it_raises_a_retryable_error() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(200));
    store.put(due_soon("a", 60_000, TaskStatus::InProgress));
    let error = execute(&store, &sender, "a").await.unwrap_err();
    assert_eq!(error.error_type, "TaskNotDue");
    assert!(RETRYABLE_ERRORS.contains(&error.error_type));
    assert!(sender.sent.lock().unwrap().is_empty());
    assert_eq!(store.tasks()[0].attempts, 0);
}

#[tokio::test]
async fn a_cancelled_task_is_skipped() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(200));
    store.put(due_soon("a", 0, TaskStatus::Cancelled));
    let report = execute(&store, &sender, "a").await.unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Skipped);
    assert_eq!(report.task_status, Some(TaskStatus::Cancelled));
    assert!(sender.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_task_without_webhook_just_completes() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(200));
    let mut plain = due_soon("a", 0, TaskStatus::Queued);
    plain.webhook = None;
    store.put(plain);
    let report = execute(&store, &sender, "a").await.unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Completed);
    assert!(sender.sent.lock().unwrap().is_empty());
    assert_eq!(status_of(&store, "a"), TaskStatus::Completed);
}

/// A run whose answer Step Functions lost after a 2xx is started again: it finds the task
/// COMPLETED (execute-task records a delivery before it answers) and sends nothing more; the
/// state machine's update-status, given the recorded report, writes nothing.
#[tokio::test]
async fn a_delivery_is_recorded_before_step_functions_gets_the_answer() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(204));
    store.put(due_soon("a", 0, TaskStatus::InProgress));
    let report = execute(&store, &sender, "a").await.unwrap();
    assert_eq!(
        (report.outcome, report.recorded),
        (AttemptOutcome::Delivered, true)
    );
    assert_eq!(status_of(&store, "a"), TaskStatus::Completed);
    let again = execute(&store, &sender, "a").await.unwrap();
    assert_eq!(again.outcome, AttemptOutcome::Skipped);
    assert_eq!(sender.sent.lock().unwrap().len(), 1);
    let written = store.tasks()[0].last_updated_at;
    let status = update_status(&store, &SystemClock, &update(Some(report), None))
        .await
        .unwrap();
    assert_eq!(status, TaskStatus::Completed);
    assert_eq!(store.tasks()[0].last_updated_at, written);
}

#[tokio::test]
async fn a_failed_attempt_is_answered_by_the_task_s_retry_policy() {
    let cases = [
        (Ok(503), "WebhookServerError", true),
        (Ok(429), "WebhookServerError", true),
        (Err(DeliveryError::Timeout(10_000)), "WebhookTimeout", true),
        (
            Err(DeliveryError::Connection("refused".into())),
            "WebhookConnectionError",
            true,
        ),
        (Ok(404), "WebhookRejected", false),
        (Ok(410), "WebhookRejected", false),
        (
            Err(DeliveryError::Invalid("bad header".into())),
            "WebhookInvalid",
            false,
        ),
    ];
    for (answer, name, retried) in cases {
        let store = MemoryStore::new();
        let sender = RecordingSender::answering(answer.clone());
        store.put(due_soon("a", 0, TaskStatus::InProgress));
        let report = execute(&store, &sender, "a").await.unwrap();
        let record = report.record.clone().unwrap();
        assert_eq!(record.attempt, 1);
        assert!(
            record.error.as_deref().unwrap().starts_with(name),
            "{record:?}"
        );
        assert_eq!(record.status_code, answer.as_ref().ok().copied());
        if retried {
            assert_eq!(report.outcome, AttemptOutcome::Retry, "{name}");
            let wait = report.retry_at.unwrap() - record.started_at;
            assert!((1900..=2100).contains(&wait.num_milliseconds()), "{wait}");
        } else {
            assert_eq!(report.outcome, AttemptOutcome::Failed, "{name}");
            let error = report.error.unwrap();
            assert!(
                error.starts_with(name) && error.contains("attempt 1"),
                "{error}"
            );
        }
    }
}

#[tokio::test]
async fn a_refused_target_is_a_failed_attempt_never_sent() {
    let store = MemoryStore::new();
    let mut sender = RecordingSender::answering(Ok(200));
    sender.refuse_on_prepare = true;
    store.put(due_soon("a", 0, TaskStatus::Queued));
    let report = execute(&store, &sender, "a").await.unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Failed);
    assert!(report.error.unwrap().starts_with("WebhookRefused"));
    assert!(sender.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_retry_counts_an_attempt_and_records_the_one_before() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(500));
    let mut task = due_soon("a", 0, TaskStatus::InProgress);
    task.retry = Some(tasks_core::model::retry_policy::RetryPolicy {
        max_attempts: 3,
        backoff: tasks_core::model::retry_policy::Backoff {
            initial_seconds: 1,
            multiplier: 1.0,
            max_seconds: 1,
        },
        ..Default::default()
    });
    store.put(task);
    let pacing = Pacing::default();
    let mut input: tasks_core::contracts::AttemptInput = pacing
        .execution_input(&DispatchMessage::from(&store.tasks()[0]))
        .into();
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let report = execute_task(&store, &sender, &SystemClock, &pacing, &input)
            .await
            .unwrap();
        outcomes.push((report.outcome, report.attempt, report.attempt_in_series));
        input.previous = Some(report);
    }
    assert_eq!(
        outcomes,
        vec![
            (AttemptOutcome::Retry, 1, 1),
            (AttemptOutcome::Retry, 2, 2),
            (AttemptOutcome::Failed, 3, 3)
        ]
    );
    let sent = sender.sent.lock().unwrap().clone();
    let attempts: Vec<u32> = sent.iter().map(|s| s.1).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(
        sent[1].2 - sent[0].2 >= Duration::seconds(1),
        "retried before its time"
    );
    // The first two attempts are recorded by the attempts after them; the last by update-status.
    let history: Vec<u32> = store.tasks()[0]
        .attempt_history
        .iter()
        .map(|r| r.attempt)
        .collect();
    assert_eq!(history, vec![1, 2]);
    assert_eq!(store.tasks()[0].attempts, 3);
}

#[tokio::test]
async fn of_two_runs_that_read_the_same_attempts_one_begins_an_attempt() {
    use tasks_core::{Event, StoreError, TaskStore, Transition};
    let store = MemoryStore::new();
    store.put(due_soon("a", 0, TaskStatus::InProgress));
    // Both runs read 0 attempts, then begin: the second write's condition no longer holds.
    let begin = || {
        Transition::new(Event::BeginAttempt, Utc::now())
            .in_series(0)
            .if_attempts(0)
    };
    assert_eq!(store.transition("a", &begin()).await.unwrap().attempts, 1);
    let second = store.transition("a", &begin()).await;
    assert!(
        matches!(second, Err(StoreError::Conflict { .. })),
        "{second:?}"
    );
    assert_eq!(store.tasks()[0].attempts, 1);
}

fn update(result: Option<AttemptReport>, error: Option<StepError>) -> StatusUpdate {
    StatusUpdate {
        input: Pacing::default().execution_input(&message("a")),
        result,
        error,
    }
}

fn delivered() -> AttemptReport {
    AttemptReport {
        outcome: AttemptOutcome::Delivered,
        status_code: Some(200),
        attempt: 1,
        attempt_in_series: 1,
        executed_at: Some(at() + Duration::milliseconds(3)),
        lateness_ms: Some(3),
        retry_at: None,
        error: None,
        record: None,
        task_status: None,
        recorded: false,
    }
}

#[tokio::test]
async fn completion_is_recorded_once_and_repeats_are_no_ops() {
    let store = MemoryStore::new();
    let clock = FixedClock::new(at());
    store.put(task("a", at(), TaskStatus::InProgress));
    let done = update(Some(delivered()), None);
    assert_eq!(
        update_status(&store, &clock, &done).await.unwrap(),
        TaskStatus::Completed
    );
    let recorded = store.tasks()[0].clone();
    assert_eq!(recorded.lateness_ms, Some(3));
    assert_eq!(recorded.executed_at, Some(at() + Duration::milliseconds(3)));
    clock.set(at() + Duration::seconds(5));
    assert_eq!(
        update_status(&store, &clock, &done).await.unwrap(),
        TaskStatus::Completed
    );
    assert_eq!(store.tasks()[0], recorded);
}

#[tokio::test]
async fn a_caught_error_after_an_attempt_began_marks_the_task_failed_with_its_reason() {
    let store = MemoryStore::new();
    let clock = FixedClock::new(at());
    let mut begun = task("a", at(), TaskStatus::InProgress);
    begun.attempts = 1;
    begun.attempt_series = begun.series;
    store.put(begun);
    let error = StepError {
        error: "WebhookRejected".into(),
        cause: r#"{"errorType":"WebhookRejected","errorMessage":"the receiver answered HTTP 404 (attempt 1)"}"#.into(),
    };
    let status = update_status(&store, &clock, &update(None, Some(error)))
        .await
        .unwrap();
    assert_eq!(status, TaskStatus::Failed);
    assert_eq!(
        store.tasks()[0].last_error.as_deref(),
        Some("WebhookRejected: the receiver answered HTTP 404 (attempt 1)")
    );
}

/// No FAILED without an attempt: an execution's error before any attempt began in the series
/// (a Lambda crash or timeout, an init error, a store outage past every retry) sent nothing, so
/// the task is left to the sweeps, which run it again in a new series.
#[tokio::test]
async fn an_execution_error_before_any_attempt_leaves_the_task_to_the_sweeps() {
    for status in [TaskStatus::Queued, TaskStatus::InProgress] {
        let store = MemoryStore::new();
        store.put(task("a", at(), status));
        let error = StepError {
            error: "Lambda.Unknown".into(),
            cause: "execute-task: the function crashed".into(),
        };
        let recorded = update_status(&store, &FixedClock::new(at()), &update(None, Some(error)))
            .await
            .unwrap();
        assert_eq!(recorded, status);
        assert_eq!(store.tasks()[0].task_status, status);
        assert_eq!(store.tasks()[0].last_error, None);
    }
}

#[tokio::test]
async fn an_outcome_for_a_cancelled_task_changes_nothing() {
    let store = MemoryStore::new();
    store.put(task("a", at(), TaskStatus::Cancelled));
    let status = update_status(
        &store,
        &FixedClock::new(at()),
        &update(Some(delivered()), None),
    )
    .await
    .unwrap();
    assert_eq!(status, TaskStatus::Cancelled);
    assert_eq!(status_of(&store, "a"), TaskStatus::Cancelled);
}

#[test]
fn the_status_update_contract_reads_the_state_machine_output() {
    let json = serde_json::json!({
        "id": "a",
        "timestamp": "2030-06-01T12:00:00.000Z",
        "wakeAt": "2030-06-01T11:59:59.000Z",
        "series": 1,
        "result": {"outcome": "DELIVERED", "statusCode": 200, "attempt": 1,
                   "executedAt": "2030-06-01T12:00:00.004Z", "latenessMs": 4}
    });
    let parsed: StatusUpdate = serde_json::from_value(json).unwrap();
    assert_eq!(parsed.result.unwrap().lateness_ms, Some(4));
    let failed: StatusUpdate = serde_json::from_value(serde_json::json!({
        "id": "a", "timestamp": "2030-06-01T12:00:00.000Z", "wakeAt": "2030-06-01T11:59:59.000Z",
        "series": 1, "error": {"Error": "WebhookTimeout", "Cause": "no answer"}
    }))
    .unwrap();
    assert_eq!(
        failed.error.unwrap().describe(),
        "WebhookTimeout: no answer"
    );
}

fn failed_with_callback(id: &str, series: u32) -> tasks_core::Task {
    let mut task = task(id, Utc::now() - Duration::minutes(1), TaskStatus::Failed);
    task.series = series;
    task.last_error = Some("WebhookRejected: the receiver answered HTTP 404".into());
    task.webhook = Some(webhook());
    task.on_failure = Some(tasks_core::Webhook {
        url: "https://receiver.example/failed".into(),
        ..webhook()
    });
    task
}

async fn notify(
    store: &MemoryStore,
    sender: &RecordingSender,
    id: &str,
    series: u32,
) -> AttemptReport {
    let pacing = Pacing::default();
    let task = store.tasks().into_iter().find(|t| t.id == id).unwrap();
    let mut input: tasks_core::contracts::AttemptInput = pacing
        .execution_input(&DispatchMessage {
            series,
            ..DispatchMessage::from(&task)
        })
        .into();
    input.notify = Some(tasks_core::contracts::Notice::OnFailure);
    execute_task(store, sender, &SystemClock, &pacing, &input)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_failure_callback_is_called_for_the_series_that_failed_only() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(204));
    store.put(failed_with_callback("a", 2));
    let report = notify(&store, &sender, "a", 2).await;
    assert_eq!(
        (report.outcome, report.status_code),
        (AttemptOutcome::Delivered, Some(204))
    );
    assert_eq!(sender.sent.lock().unwrap().len(), 1);
    assert_eq!(store.tasks()[0].attempts, 0, "a callback is not an attempt");

    let stale = notify(&store, &sender, "a", 1).await;
    assert_eq!(stale.outcome, AttemptOutcome::Skipped);
    let mut plain = failed_with_callback("b", 1);
    plain.on_failure = None;
    store.put(plain);
    assert_eq!(
        notify(&store, &sender, "b", 1).await.outcome,
        AttemptOutcome::Skipped
    );
    assert_eq!(sender.sent.lock().unwrap().len(), 1);

    let refusing = RecordingSender::answering(Ok(500));
    store.put(failed_with_callback("c", 1));
    let failed = notify(&store, &refusing, "c", 1).await;
    assert_eq!(failed.outcome, AttemptOutcome::Failed);
    assert!(failed.error.unwrap().starts_with("WebhookServerError"));
}

/// Two executions of one FAILED series reach the callback step (a slot's failure report applied
/// beside the task's running execution, which failed too): the callback is called once.
#[tokio::test]
async fn the_failure_callback_is_called_at_most_once_per_failed_series() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(204));
    store.put(failed_with_callback("a", 2));
    assert_eq!(
        notify(&store, &sender, "a", 2).await.outcome,
        AttemptOutcome::Delivered
    );
    assert_eq!(
        notify(&store, &sender, "a", 2).await.outcome,
        AttemptOutcome::Skipped
    );
    assert_eq!(sender.sent.lock().unwrap().len(), 1);
    assert_eq!(store.tasks()[0].callback_series, Some(2));
}

#[tokio::test]
async fn webhook_id_is_the_series_so_a_task_retried_by_its_user_is_not_dropped_as_a_repeat() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(204));
    let mut first = due_soon("a", 0, TaskStatus::InProgress);
    first.series = 1;
    store.put(first.clone());
    execute(&store, &sender, "a").await.unwrap();
    // `POST /tasks/a/retry` began a new series of attempts.
    let mut again = store.tasks()[0].clone();
    again.task_status = TaskStatus::InProgress;
    again.series = 2;
    store.put(again);
    execute(&store, &sender, "a").await.unwrap();
    let ids = sender.message_ids.lock().unwrap().clone();
    assert_eq!(ids, ["a-1", "a-2"]);
}

/// One runner per series: a slot begins its attempts up to its preparation and the wake-ahead
/// (31 s) before it sends them. A second runner of the series that finds such an attempt begun
/// 25 s ago, its send still 5 s ahead, waits: the attempt is in flight from its send, not from
/// its begin.
#[tokio::test]
async fn a_second_runner_waits_for_an_attempt_in_flight_counted_from_its_send_not_its_begin() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(204));
    let mut begun = due_soon("a", 5_000, TaskStatus::InProgress);
    begun.attempts = 1;
    begun.attempt_series = begun.series;
    begun.last_updated_at = Utc::now() - Duration::seconds(25);
    begun.attempt_at = Some(begun.timestamp);
    store.put(begun);
    let error = execute(&store, &sender, "a").await.unwrap_err();
    assert_eq!(error.error_type, "TaskNotDue", "{error:?}");
    assert!(sender.sent.lock().unwrap().is_empty());
    assert_eq!(store.tasks()[0].attempts, 1);
}

#[tokio::test]
async fn an_attempt_s_begin_records_when_it_is_sent() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(204));
    store.put(due_soon("a", 300, TaskStatus::InProgress));
    let due = store.tasks()[0].timestamp;
    execute(&store, &sender, "a").await.unwrap();
    assert_eq!(
        store.tasks()[0].attempt_at,
        Some(tasks_core::model::time::rfc3339_millis::truncate(due))
    );
}

/// One record an attempt: after ExecuteTask's Catch, MarkFailed gets the report of the attempt
/// before the one that failed, whose record that run's begin had already written.
#[tokio::test]
async fn a_caught_error_does_not_record_an_attempt_twice() {
    let store = MemoryStore::new();
    let report = AttemptReport {
        outcome: AttemptOutcome::Retry,
        record: Some(tasks_core::AttemptRecord {
            attempt: 1,
            started_at: at(),
            duration_ms: 12,
            status_code: Some(503),
            error: Some("WebhookServerError: the receiver answered HTTP 503".into()),
            response_body: None,
        }),
        ..delivered()
    };
    let mut begun = task("a", at(), TaskStatus::InProgress);
    begun.attempts = 2;
    begun.attempt_series = begun.series;
    begun.attempt_history = vec![report.record.clone().unwrap()];
    store.put(begun);
    let error = StepError {
        error: "Lambda.Unknown".into(),
        cause: "execute-task: the function crashed".into(),
    };
    let status = update_status(
        &store,
        &FixedClock::new(at()),
        &update(Some(report), Some(error)),
    )
    .await
    .unwrap();
    assert_eq!(status, TaskStatus::Failed);
    assert_eq!(store.tasks()[0].attempt_history.len(), 1);
}
