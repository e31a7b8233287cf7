//! A slot's report that reaches a task whose own execution of the series exists already (a
//! second slot of the series, or a repeated slot run, handed it off first without a report) is
//! applied, never dropped: that execution would otherwise send at once, ignoring the retry's
//! time, and count its tries from 1.

use crate::support::{status_of, task, webhook, RecordingSender};
use chrono::{Duration, Utc};
use tasks_core::contracts::{AttemptOutcome, AttemptReport};
use tasks_core::flow::execute::execute_task;
use tasks_core::flow::start::{start_task, StartReport};
use tasks_core::testing::memory::{MemoryStore, MemoryWorkflow};
use tasks_core::{AttemptRecord, DispatchMessage, Pacing, SystemClock, Task, TaskStatus};

/// A task whose first attempt (in its slot) was sent a moment ago, and whose own execution of
/// the series already runs.
async fn begun_with_running_execution(store: &MemoryStore, workflow: &MemoryWorkflow) -> Task {
    let mut begun = task(
        "a",
        Utc::now() - Duration::milliseconds(100),
        TaskStatus::InProgress,
    );
    begun.webhook = Some(webhook());
    begun.attempts = 1;
    begun.attempt_series = begun.series;
    begun.attempt_at = Some(begun.timestamp);
    store.put(begun.clone());
    let started = start_task(
        store,
        workflow,
        &SystemClock,
        &Pacing::default(),
        &message(&begun),
        None,
    )
    .await
    .unwrap();
    assert_eq!(started, StartReport::Started);
    begun
}

fn message(task: &Task) -> DispatchMessage {
    DispatchMessage::from(task)
}

fn report_of_attempt_1(task: &Task, outcome: AttemptOutcome) -> AttemptReport {
    let record = AttemptRecord {
        attempt: 1,
        started_at: task.timestamp,
        duration_ms: 20,
        status_code: Some(if outcome == AttemptOutcome::Delivered {
            204
        } else {
            503
        }),
        error: None,
        response_body: None,
    };
    AttemptReport {
        outcome,
        status_code: record.status_code,
        attempt: 1,
        attempt_in_series: 1,
        executed_at: Some(task.timestamp),
        lateness_ms: Some(0),
        retry_at: (outcome == AttemptOutcome::Retry)
            .then(|| Utc::now() + Duration::milliseconds(400)),
        error: (outcome != AttemptOutcome::Delivered)
            .then(|| "WebhookServerError: 503".to_string()),
        record: Some(record),
        task_status: None,
        recorded: false,
    }
}

async fn hand_over(
    store: &MemoryStore,
    workflow: &MemoryWorkflow,
    task: &Task,
    report: &AttemptReport,
) -> StartReport {
    start_task(
        store,
        workflow,
        &SystemClock,
        &Pacing::default(),
        &message(task),
        Some(report),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_slot_s_retry_report_for_a_running_execution_keeps_its_time_and_try_count() {
    let store = MemoryStore::new();
    let workflow = MemoryWorkflow::new();
    let sender = RecordingSender::answering(Ok(204));
    let begun = begun_with_running_execution(&store, &workflow).await;
    let report = report_of_attempt_1(&begun, AttemptOutcome::Retry);
    let retry_at = report.retry_at.unwrap();

    assert_eq!(
        hand_over(&store, &workflow, &begun, &report).await,
        StartReport::HandedOver
    );
    let kept = store.tasks()[0].clone();
    assert_eq!(
        kept.scheduled_retry()
            .map(|next| (next.at, next.attempt_in_series)),
        Some((retry_at, 1))
    );
    assert_eq!(kept.attempt_history, vec![report.record.clone().unwrap()]);

    // The running execution, which knows of no earlier outcome, waits for the retry instead of
    // sending at once.
    let pacing = Pacing::default();
    let input = pacing.execution_input(&message(&begun));
    let waited = execute_task(
        &store,
        &sender,
        &SystemClock,
        &pacing,
        &input.clone().into(),
    )
    .await
    .unwrap();
    assert_eq!(waited.outcome, AttemptOutcome::Retry);
    assert_eq!(
        (waited.retry_at, waited.attempt, waited.attempt_in_series),
        (Some(retry_at), 1, 1)
    );
    assert!(sender.sent.lock().unwrap().is_empty());

    // After the state machine's Wait, the retry is the series' second try, never before its time.
    let mut next: tasks_core::contracts::AttemptInput = input.into();
    next.previous = Some(waited);
    let second = execute_task(&store, &sender, &SystemClock, &pacing, &next)
        .await
        .unwrap();
    assert_eq!(
        (second.outcome, second.attempt, second.attempt_in_series),
        (AttemptOutcome::Delivered, 2, 2)
    );
    let sent = sender.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].2 >= retry_at,
        "sent at {} before {retry_at}",
        sent[0].2
    );
    assert_eq!(store.tasks()[0].next_attempt, None);
}

#[tokio::test]
async fn a_slot_s_delivered_report_for_a_running_execution_is_recorded_and_never_sent_again() {
    let store = MemoryStore::new();
    let workflow = MemoryWorkflow::new();
    let sender = RecordingSender::answering(Ok(204));
    let begun = begun_with_running_execution(&store, &workflow).await;
    let report = report_of_attempt_1(&begun, AttemptOutcome::Delivered);

    assert_eq!(
        hand_over(&store, &workflow, &begun, &report).await,
        StartReport::HandedOver
    );
    assert_eq!(status_of(&store, "a"), TaskStatus::Completed);
    let pacing = Pacing::default();
    let input = pacing.execution_input(&message(&begun));
    let run = execute_task(&store, &sender, &SystemClock, &pacing, &input.into())
        .await
        .unwrap();
    assert_eq!(run.outcome, AttemptOutcome::Skipped);
    assert!(sender.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_slot_s_failed_report_for_an_existing_execution_goes_on_in_an_execution_of_its_attempt() {
    let store = MemoryStore::new();
    let workflow = MemoryWorkflow::new();
    let begun = begun_with_running_execution(&store, &workflow).await;
    let report = report_of_attempt_1(&begun, AttemptOutcome::Failed);

    assert_eq!(
        hand_over(&store, &workflow, &begun, &report).await,
        StartReport::HandedOver
    );
    // Its own execution records FAILED and calls the callback; a repeat starts nothing more.
    let going_on: Vec<_> = workflow
        .attempts()
        .into_iter()
        .filter(|attempt| attempt.previous.is_some())
        .collect();
    assert_eq!(going_on.len(), 1);
    assert_eq!(
        going_on[0].previous.as_ref().unwrap().outcome,
        AttemptOutcome::Failed
    );
    assert_eq!(
        hand_over(&store, &workflow, &begun, &report).await,
        StartReport::AlreadyStarted
    );
    assert_eq!(workflow.attempts().len(), 2);
}

/// A task whose series made `made` attempts, the latest `ago` before now, all in other runs.
fn attempted_elsewhere(made: u32, ago: Duration) -> Task {
    let mut begun = task(
        "a",
        Utc::now() - Duration::minutes(2),
        TaskStatus::InProgress,
    );
    begun.webhook = Some(webhook());
    begun.series = 1;
    begun.series_start_attempts = Some(0);
    begun.attempts = made;
    begun.attempt_series = 1;
    begun.attempt_at = Some(Utc::now() - ago);
    begun
}

/// A run of the task's execution whose answer Step Functions lost goes on beside its retry: the
/// retry, going on from the report before, finds the lost run's attempt begun. It waits until
/// that attempt is surely over, then counts it against the series' tries.
#[tokio::test]
async fn an_attempt_begun_in_another_run_is_waited_for_and_counted_against_max_attempts() {
    let pacing = Pacing::default();
    let previous = AttemptReport {
        retry_at: Some(Utc::now() - Duration::seconds(40)),
        ..report_of_attempt_1(
            &attempted_elsewhere(1, Duration::zero()),
            AttemptOutcome::Retry,
        )
    };
    for (made, ago, expected) in [
        (2, Duration::seconds(5), None),
        (
            2,
            Duration::seconds(30),
            Some((AttemptOutcome::Delivered, 3)),
        ),
        (
            3,
            Duration::seconds(30),
            Some((AttemptOutcome::Delivered, 4)),
        ),
        // The default policy's four tries are used up: nothing is sent, the task fails.
        (4, Duration::seconds(30), Some((AttemptOutcome::Failed, 4))),
    ] {
        let store = MemoryStore::new();
        let sender = RecordingSender::answering(Ok(204));
        let task = attempted_elsewhere(made, ago);
        store.put(task.clone());
        let mut input: tasks_core::contracts::AttemptInput =
            pacing.execution_input(&message(&task)).into();
        input.previous = Some(previous.clone());
        let run = execute_task(&store, &sender, &SystemClock, &pacing, &input).await;
        let sent = sender.sent.lock().unwrap().len();
        match expected {
            None => {
                assert_eq!(run.unwrap_err().error_type, "TaskNotDue");
                assert_eq!(sent, 0);
            }
            Some((outcome, try_in_series)) => {
                let report = run.unwrap();
                assert_eq!(
                    (report.outcome, report.attempt_in_series),
                    (outcome, try_in_series),
                    "{report:?}"
                );
                assert_eq!(sent, usize::from(outcome == AttemptOutcome::Delivered));
            }
        }
    }
}
