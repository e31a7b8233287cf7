//! execute-task: runs one attempt of a task at its millisecond (or at its retry time), never
//! before, and answers with the attempt's report; after a task ended FAILED, calls its failure
//! callback.

use crate::contracts::{
    AttemptInput, AttemptOutcome, AttemptReport, ExecutionInput, Notice, StatusUpdate,
};
use crate::delivery::{DeliveryError, WebhookCall, WebhookResponse};
use crate::flow::record::update_status;
use crate::model::status::{Event, TaskStatus};
use crate::model::task::{
    new_write_token, truncated, AttemptRecord, Task, Webhook, ATTEMPT_ERROR_BYTES,
};
use crate::model::time::rfc3339_millis;
use crate::ports::{Clock, StoreError, TaskStore, Transition, WebhookSender};
use crate::rules::error_types::{delivery_error_type, store_error_type};
use crate::rules::pacing::{Pacing, EARLY_WAKE_ALLOWANCE};
use crate::rules::slot_plan::MAX_PREPARE;
use crate::rules::timing::{ATTEMPT_IN_FLIGHT, BEGIN_TRIES};
use chrono::{DateTime, Utc};

/// A failed execution step. `error_type` is the name the state machine's Retry and Catch match.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExecuteError {
    pub error_type: &'static str,
    pub message: String,
}

impl ExecuteError {
    fn store(error: &StoreError) -> Self {
        ExecuteError {
            error_type: store_error_type(error),
            message: error.to_string(),
        }
    }
}

/// execute-task: runs one attempt of a task at its second (or at the retry time), never before.
///
/// Woken by the workflow at `wakeAt` (up to the wake-ahead before the task's time, or earlier by
/// an emulator's rounding) or at the previous attempt's `retryAt`, it loads the task, records the
/// attempt (from here on the task can no longer be cancelled), checks and resolves the webhook
/// target, sleeps until the time to the millisecond, and only then sends. A failed attempt is
/// answered by the task's retry policy: retry at a time, or failed.
pub async fn execute_task(
    store: &dyn TaskStore,
    sender: &dyn WebhookSender,
    clock: &dyn Clock,
    pacing: &Pacing,
    attempt: &AttemptInput,
) -> Result<AttemptReport, ExecuteError> {
    let input = &attempt.input;
    if attempt.notify == Some(Notice::OnFailure) {
        return notify_failure(store, sender, clock, input).await;
    }
    let task = read_task(store, &input.id).await?;
    let begin_token = new_write_token();
    if let Some(task) = &task {
        if let Some(retry) = handed_over_retry(task, attempt) {
            return Ok(retry);
        }
        if task.series == input.series {
            wait_for_attempt_in_flight(task, attempt, &begin_token, clock)?;
        }
    }
    let mut report =
        attempt_task(store, sender, clock, pacing, attempt, task, &begin_token).await?;
    // A delivery is recorded before Step Functions gets the answer: if the answer is lost, the
    // run Step Functions starts again finds the task COMPLETED instead of an attempt in flight
    // it would send again. A record that fails is left to update-status, as before.
    if matches!(
        report.outcome,
        AttemptOutcome::Delivered | AttemptOutcome::Completed
    ) {
        let update = StatusUpdate::of_report(input.clone(), &report);
        report.recorded = update_status(store, clock, &update).await.is_ok();
    }
    Ok(report)
}

/// For a run that knows of no earlier attempt's outcome (no `previous`): the retry a slot's
/// report handed over to the task, which this run waits for instead of sending at once.
fn handed_over_retry(task: &Task, attempt: &AttemptInput) -> Option<AttemptReport> {
    let runnable = Event::BeginAttempt.allows(task.task_status);
    let retry = task.scheduled_retry().filter(|_| {
        attempt.previous.is_none() && runnable && task.series == attempt.input.series
    })?;
    Some(AttemptReport::handed_over_retry(retry))
}

/// Attempts of the task's series that began after the one `previous` reports (or, without a
/// report, every one of the series), in another run: a run of this execution whose answer Step Functions
/// lost (it goes on beside the retry), a repeated run, or a second runner of the series. Their
/// outcome is unknown here. A begin of this run's own (`begin_token`: its answer was lost and
/// the same write is being tried again) is not one of them.
fn unknown_attempts(task: &Task, previous: Option<&AttemptReport>, begin_token: &str) -> u32 {
    if !task.attempt_began_in_series() || task.write_token.as_deref() == Some(begin_token) {
        return 0;
    }
    previous.map_or(task.attempts_in_series(), |report| {
        task.attempts.saturating_sub(report.attempt)
    })
}

/// A run that finds an attempt begun in another run waits until that attempt, counted from its
/// send, has surely ended: the receiver then has at most one request in flight for the task,
/// and a delivered attempt is recorded before this one would begin.
fn wait_for_attempt_in_flight(
    task: &Task,
    attempt: &AttemptInput,
    begin_token: &str,
    clock: &dyn Clock,
) -> Result<(), ExecuteError> {
    // Counted from the send, not from the begin: a slot begins its attempts up to its
    // preparation and the wake-ahead before it sends them.
    let since = clock.now() - task.attempt_at.unwrap_or(task.last_updated_at);
    // A task that has ended (delivered, failed, cancelled) has nothing in flight to wait for.
    let runnable = Event::BeginAttempt.allows(task.task_status);
    let unknown = unknown_attempts(task, attempt.previous.as_ref(), begin_token);
    if runnable && unknown > 0 && since < ATTEMPT_IN_FLIGHT {
        return Err(ExecuteError {
            error_type: "TaskNotDue",
            message: format!(
                "attempt {} began {} ms ago in another run and may still be in flight",
                task.attempts,
                since.num_milliseconds()
            ),
        });
    }
    Ok(())
}

/// execute-task's attempt on the task as read (`None`: gone). The attempt's begin writes
/// `begin_token`: a run that tries the same attempt again with the same token finds its own
/// begin, if it was applied, instead of beginning another.
pub(crate) async fn attempt_task(
    store: &dyn TaskStore,
    sender: &dyn WebhookSender,
    clock: &dyn Clock,
    pacing: &Pacing,
    attempt: &AttemptInput,
    task: Option<Task>,
    begin_token: &str,
) -> Result<AttemptReport, ExecuteError> {
    let input = &attempt.input;
    let previous = attempt.previous.as_ref();
    let Some(task) = task else {
        return Ok(AttemptReport::skipped(TaskStatus::Cancelled));
    };
    if let Some(retry) = handed_over_retry(&task, attempt) {
        return Ok(retry);
    }
    if !Event::BeginAttempt.allows(task.task_status) {
        return Ok(AttemptReport::skipped(task.task_status));
    }
    if task.series != input.series {
        return Ok(AttemptReport::superseded(task.task_status));
    }
    let not_before = previous
        .and_then(|report| report.retry_at)
        .map_or(task.timestamp, |at| at.max(task.timestamp));
    let remaining = not_before - clock.now();
    // A slot's tasks wake earlier than the wake-ahead (the slot's input says by how much), but
    // never by more than a slot prepares.
    let woken_ahead = (input.timestamp - input.wake_at).min(pacing.wake_ahead + MAX_PREPARE);
    let allowed = pacing.max_sleep().max(woken_ahead + EARLY_WAKE_ALLOWANCE);
    if remaining > allowed {
        return Err(ExecuteError {
            error_type: "TaskNotDue",
            message: format!("woken {} ms before its time", remaining.num_milliseconds()),
        });
    }
    // Attempts begun in other runs count against the series' tries too: the receiver may have
    // had them.
    let unknown = unknown_attempts(&task, previous, begin_token);
    let attempt_in_series = previous.map_or(0, |report| report.attempt_in_series) + unknown + 1;
    // The previous attempt's record, not yet written: this attempt's start writes it.
    let unwritten = previous.and_then(|report| report.record.clone());
    let max_attempts = task.retry_policy().max_attempts;
    if attempt_in_series > max_attempts {
        return Ok(AttemptReport {
            record: unwritten,
            error: Some(format!(
                "attempt {} began in another run and its outcome is unknown; the retry policy's \
                 {max_attempts} attempts of this series are used up",
                task.attempts
            )),
            ..AttemptReport::of_attempt(&task, attempt_in_series - 1, AttemptOutcome::Failed)
        });
    }
    if let Some(webhook) = &task.webhook {
        if let Err(failure) = sender.prepare(webhook).await {
            // Refused or unresolvable before any request: no attempt begins.
            return Ok(AttemptReport {
                record: unwritten,
                ..answer_failure(&task, attempt_in_series, &failure, clock.now())
            });
        }
    }
    // Conditional on the attempts read: of two runs racing to the same attempt, one begins it.
    let mut begin = Transition::new(Event::BeginAttempt, clock.now())
        .in_series(input.series)
        .if_attempts(task.attempts)
        .with_write_token(begin_token);
    if previous.is_none() {
        begin = begin.unless_retry_scheduled();
    }
    begin.changes.record_attempt = unwritten;
    begin.changes.attempt_at = Some(rfc3339_millis::truncate(not_before.max(clock.now())));
    // A begin whose every answer was lost may have been applied: the same write tried again is
    // settled as ours if it was (never a second attempt), and applied if it was not.
    let task = match BEGIN_TRIES
        .run(
            &format!("begin of attempt {} of {}", task.attempts + 1, task.id),
            |_| store.transition(&task.id, &begin),
            |error| matches!(error, StoreError::Unavailable { .. }),
        )
        .await
    {
        Ok(task) => task,
        Err(StoreError::Conflict { current }) => {
            return Ok(match handed_over_retry(&current, attempt) {
                Some(retry) => retry,
                None if current.series != input.series => {
                    AttemptReport::superseded(current.task_status)
                }
                None => AttemptReport::skipped(current.task_status),
            })
        }
        Err(StoreError::NotFound(_)) => return Ok(AttemptReport::skipped(TaskStatus::Cancelled)),
        Err(error) => return Err(ExecuteError::store(&error)),
    };
    crate::support::wait::sleep_until(clock, not_before).await;
    let executed_at = clock.now();
    let lateness_ms = Some((executed_at - task.timestamp).num_milliseconds());
    let Some(webhook) = &task.webhook else {
        return Ok(AttemptReport {
            executed_at: Some(executed_at),
            lateness_ms,
            ..AttemptReport::of_attempt(&task, attempt_in_series, AttemptOutcome::Completed)
        });
    };
    let call = WebhookCall {
        task: &task,
        webhook,
        attempt: task.attempts,
        message_id: task.message_id(),
    };
    let answer = sender.send(call).await;
    let ended = clock.now();
    let failure = failure_of(&answer);
    let response = answer.ok();
    let status_code = response.as_ref().map(|r| r.status);
    let record = AttemptRecord {
        attempt: task.attempts,
        started_at: executed_at,
        duration_ms: (ended - executed_at).num_milliseconds().max(0) as u64,
        status_code,
        error: failure.as_ref().map(describe_failure),
        response_body: response.map(|r| r.body).filter(|body| !body.is_empty()),
    };
    let answered = match failure {
        None => AttemptReport::of_attempt(&task, attempt_in_series, AttemptOutcome::Delivered),
        Some(failure) => answer_failure(&task, attempt_in_series, &failure, ended),
    };
    Ok(AttemptReport {
        status_code,
        executed_at: Some(executed_at),
        lateness_ms,
        record: Some(record),
        ..answered
    })
}

/// Calls the failure callback of a task recorded FAILED in this execution's series, at most
/// once: the call is taken first ([`Event::ClaimCallback`], once per series), so of two
/// executions of the series that both reach this step (a slot's report applied beside a running
/// execution) one calls; the state machine does not retry a failed call. The body is the task
/// without its webhook or callback (their headers may hold credentials); the message id is
/// `<task id>-failed-<series>`, so a receiver also taking the task's webhook tells them apart.
async fn notify_failure(
    store: &dyn TaskStore,
    sender: &dyn WebhookSender,
    clock: &dyn Clock,
    input: &ExecutionInput,
) -> Result<AttemptReport, ExecuteError> {
    let Some(task) = read_task(store, &input.id).await? else {
        return Ok(AttemptReport::skipped(TaskStatus::Cancelled));
    };
    let failed_here = task.task_status == TaskStatus::Failed && task.series == input.series;
    let Some(callback) = task.on_failure.clone().filter(|_| failed_here) else {
        return Ok(AttemptReport::skipped(task.task_status));
    };
    let claim = Transition::new(Event::ClaimCallback, clock.now()).in_series(input.series);
    let task = match store.transition(&task.id, &claim).await {
        Ok(task) => task,
        // Another execution of the series took the call, or the task moved on.
        Err(StoreError::Conflict { current }) => {
            return Ok(AttemptReport::skipped(current.task_status))
        }
        Err(StoreError::NotFound(_)) => return Ok(AttemptReport::skipped(TaskStatus::Cancelled)),
        Err(error) => return Err(ExecuteError::store(&error)),
    };
    let request = Webhook {
        body: Some(failure_notice(&task)),
        ..callback
    };
    let answer = match sender.prepare(&request).await {
        Ok(()) => {
            let call = WebhookCall {
                task: &task,
                webhook: &request,
                attempt: task.attempts,
                message_id: format!("{}-failed-{}", task.id, task.series),
            };
            sender.send(call).await
        }
        Err(refused) => Err(refused),
    };
    let answered = match failure_of(&answer) {
        None => AttemptReport::of_attempt(&task, 0, AttemptOutcome::Delivered),
        Some(failure) => AttemptReport {
            error: Some(describe_failure(&failure)),
            ..AttemptReport::of_attempt(&task, 0, AttemptOutcome::Failed)
        },
    };
    Ok(AttemptReport {
        status_code: answer.as_ref().ok().map(|response| response.status),
        ..answered
    })
}

/// The task a step acts on; `None` when it is gone (a deleted task is treated as cancelled).
async fn read_task(store: &dyn TaskStore, id: &str) -> Result<Option<Task>, ExecuteError> {
    store
        .get(id)
        .await
        .map_err(|error| ExecuteError::store(&error))
}

/// A request that got no answer, or an answer that is not 2xx.
fn failure_of(answer: &Result<WebhookResponse, DeliveryError>) -> Option<DeliveryError> {
    match answer {
        Ok(response) => response.failure(),
        Err(error) => Some(error.clone()),
    }
}

/// The body of a failure callback.
fn failure_notice(task: &Task) -> serde_json::Value {
    serde_json::json!({
        "type": "task.failed",
        "id": task.id,
        "status": task.task_status,
        "timestamp": rfc3339_millis::format(&task.timestamp),
        "attempts": task.attempts,
        "lastError": task.last_error,
        "executedAt": task.executed_at.as_ref().map(rfc3339_millis::format),
        "payload": task.payload,
    })
}

/// `WebhookServerError: the receiver answered HTTP 503`, at most [`ATTEMPT_ERROR_BYTES`].
fn describe_failure(failure: &DeliveryError) -> String {
    let text = format!("{}: {failure}", delivery_error_type(failure));
    truncated(&text, ATTEMPT_ERROR_BYTES)
}

/// The task's policy's answer to attempt `attempt_in_series` of its series failing at `now`:
/// a retry at a time, or the end of the task.
fn answer_failure(
    task: &Task,
    attempt_in_series: u32,
    failure: &DeliveryError,
    now: DateTime<Utc>,
) -> AttemptReport {
    match task
        .retry_policy()
        .next_attempt(attempt_in_series, failure, now)
    {
        Some(at) => {
            // Rounded up to the millisecond: the wait is never shorter than the policy's.
            let stored = rfc3339_millis::truncate(at);
            let stored = if stored < at {
                stored + chrono::Duration::milliseconds(1)
            } else {
                stored
            };
            AttemptReport {
                retry_at: Some(stored),
                error: Some(describe_failure(failure)),
                ..AttemptReport::of_attempt(task, attempt_in_series, AttemptOutcome::Retry)
            }
        }
        None => AttemptReport {
            error: Some(format!(
                "{} (attempt {}, try {attempt_in_series} of this series)",
                describe_failure(failure),
                task.attempts,
            )),
            ..AttemptReport::of_attempt(task, attempt_in_series, AttemptOutcome::Failed)
        },
    }
}
