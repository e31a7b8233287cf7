//! The workflow's steps: start an execution per queued task, execute the task at its second,
//! and record the outcome.

use crate::call_tries::Tries;
use crate::error_types::{delivery_error_type, store_error_type};
use crate::pacing::{Pacing, EARLY_WAKE_ALLOWANCE};
use crate::ports::{
    Clock, DeliveryError, Execution, StartOutcome, StoreError, TaskStore, Transition, WebhookCall,
    WebhookResponse, WebhookSender, Workflow, WorkflowError,
};
use crate::recovery::{after_ended_execution, transition_read_task, Recovery};
use crate::slot::MAX_PREPARE;
use crate::status::{Event, TaskStatus};
use crate::task::{
    new_write_token, rfc3339_millis, truncated, AttemptRecord, DispatchMessage, ExecutionInput,
    NextAttempt, Task, Webhook, ATTEMPT_ERROR_BYTES,
};
use crate::timing::ATTEMPT_IN_FLIGHT;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Tries of the write that begins an attempt before the run gives up (Step Functions then runs
/// execute-task again).
pub(crate) const BEGIN_TRIES: Tries = Tries {
    count: 3,
    pause: std::time::Duration::from_millis(100),
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartReport {
    Started,
    /// A repeated delivery: the execution of the task's series is running already.
    AlreadyStarted,
    /// A slot's report reached a task whose execution exists already: it was applied (see
    /// [`hand_over`]) instead of being dropped.
    HandedOver,
    /// The execution of the task's series had ended without an outcome; the task was started
    /// again in the given new series.
    Restarted(u32),
    /// The execution of the task's series had ended without an outcome and the task was
    /// recorded FAILED (see `recovery`).
    Failed,
    /// The task is no longer waiting for an execution (cancelled, given back to SCHEDULED).
    Skipped(TaskStatus),
    /// The message is for an older series of the task: a newer message or execution owns it.
    Superseded,
    Missing,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// process-sqs-records' budget ran out before the start finished (its calls were slow): the
    /// record is delivered again, and every step of a start is safe to repeat.
    #[error("the start did not finish within {0:?}; the record will be delivered again")]
    OutOfTime(std::time::Duration),
}

/// process-sqs-records' step for a task's own message: start the execution of the task's
/// series (going on from `previous`, the report of an attempt its slot ran), then record
/// IN_PROGRESS. Safe to repeat: the execution name makes a second start a no-op, and an
/// execution name found ended is resolved through `recovery` instead of being taken for a
/// running execution.
pub async fn start_task(
    store: &dyn TaskStore,
    workflow: &dyn Workflow,
    clock: &dyn Clock,
    pacing: &Pacing,
    message: &DispatchMessage,
    previous: Option<&AttemptReport>,
) -> Result<StartReport, StartError> {
    let Some(task) = store.get(&message.id).await? else {
        return Ok(StartReport::Missing);
    };
    if task.series != message.series {
        return Ok(StartReport::Superseded);
    }
    if !matches!(
        task.task_status,
        TaskStatus::Queued | TaskStatus::InProgress
    ) {
        return Ok(StartReport::Skipped(task.task_status));
    }
    let execution = Execution::of_task(&execution_input(pacing, &task), previous);
    let started = workflow.start(&execution).await?;
    if let Some(report) = previous.filter(|_| started != StartOutcome::Started) {
        if let Some(handed_over) =
            hand_over(store, workflow, clock, pacing, &task, report, started).await?
        {
            return Ok(handed_over);
        }
    }
    let report = match started {
        StartOutcome::Started => StartReport::Started,
        StartOutcome::AlreadyRunning => StartReport::AlreadyStarted,
        StartOutcome::AlreadyEnded => {
            let name = task.execution_name();
            let state = workflow.state(&name).await?;
            let change = after_ended_execution(&task, &name, &state, clock.now());
            match transition_read_task(store, &task, change).await? {
                Recovery::Requeued(task) => {
                    let execution = Execution::of_task(&execution_input(pacing, &task), None);
                    workflow.start(&execution).await?;
                    record_start(store, clock, &task).await?;
                    return Ok(StartReport::Restarted(task.series));
                }
                Recovery::Failed(_) => return Ok(StartReport::Failed),
                Recovery::LostRace => return Ok(StartReport::Superseded),
            }
        }
    };
    if task.task_status == TaskStatus::Queued {
        record_start(store, clock, &task).await?;
    }
    Ok(report)
}

/// A slot's report of an attempt, for a task whose execution of the series exists already (it
/// runs, or has ended): the report is applied, never dropped. A delivery is recorded COMPLETED;
/// a failure is recorded, and its callback called, by an execution of its own named after the
/// attempt; a retry's time and try count are kept on the task, where the running execution
/// finds them before it would begin an attempt. `None`: nothing to apply here (a retry whose
/// execution has ended goes the way of every ended execution, through `recovery`).
async fn hand_over(
    store: &dyn TaskStore,
    workflow: &dyn Workflow,
    clock: &dyn Clock,
    pacing: &Pacing,
    task: &Task,
    report: &AttemptReport,
    started: StartOutcome,
) -> Result<Option<StartReport>, StartError> {
    let input = execution_input(pacing, task);
    match (report.outcome, report.retry_at) {
        (AttemptOutcome::Delivered | AttemptOutcome::Completed, _) => {
            record_outcome(store, clock, &StatusUpdate::of_report(input, report)).await?;
            Ok(Some(StartReport::HandedOver))
        }
        (AttemptOutcome::Failed, _) => {
            let execution = Execution::of_report(&input, report);
            Ok(Some(match workflow.start(&execution).await? {
                StartOutcome::Started => StartReport::HandedOver,
                StartOutcome::AlreadyRunning | StartOutcome::AlreadyEnded => {
                    StartReport::AlreadyStarted
                }
            }))
        }
        (AttemptOutcome::Retry, Some(at)) if started == StartOutcome::AlreadyRunning => {
            let mut change = Transition::new(Event::ScheduleRetry, clock.now())
                .in_series(task.series)
                .if_attempts(report.attempt)
                .if_attempt_began();
            change.changes.next_attempt = Some(NextAttempt {
                series: task.series,
                after_attempt: report.attempt,
                attempt_in_series: report.attempt_in_series,
                at,
            });
            change.changes.record_attempt = report.record.clone();
            match store.transition(&task.id, &change).await {
                Ok(_) => Ok(Some(StartReport::HandedOver)),
                // The series went on without it: a later attempt began, an outcome was recorded.
                Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {
                    Ok(Some(StartReport::Superseded))
                }
                Err(error) => Err(error.into()),
            }
        }
        _ => Ok(None),
    }
}

pub fn execution_input(pacing: &Pacing, task: &Task) -> ExecutionInput {
    ExecutionInput {
        id: task.id.clone(),
        timestamp: task.timestamp,
        wake_at: pacing.wake_at(task.timestamp),
        series: task.series,
    }
}

/// QUEUED -> IN_PROGRESS for the task's series; losing the race is fine (the execution got there
/// first, or the task moved on).
async fn record_start(
    store: &dyn TaskStore,
    clock: &dyn Clock,
    task: &Task,
) -> Result<(), StoreError> {
    let change = Transition::new(Event::Start, clock.now()).in_series(task.series);
    match store.transition(&task.id, &change).await {
        Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptOutcome {
    /// The webhook answered 2xx.
    Delivered,
    /// A task without a webhook ran at its time.
    Completed,
    /// The attempt failed and the task's policy retries it at `retryAt`: the state machine waits
    /// until then and runs execute-task again.
    Retry,
    /// The attempt failed and the policy does not retry it: the task is FAILED with `error`.
    Failed,
    /// The task was no longer waiting to run (cancelled): nothing was done.
    Skipped,
    /// The task has moved on to a newer series (changed, retried or restarted): this execution
    /// is stale and did nothing.
    Superseded,
}

/// execute-task's result: the state machine keeps it at `$.result`, chooses on its `outcome`,
/// and passes it to the next attempt (or to update-status).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptReport {
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// The task's attempt number (attempts of every series count).
    #[serde(default)]
    pub attempt: u32,
    /// The attempt's number in this execution's series, for the retry policy.
    #[serde(default)]
    pub attempt_in_series: u32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_millis::option"
    )]
    pub executed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness_ms: Option<i64>,
    /// For a retry: when the next attempt may start (the state machine's Wait ends then).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_millis::option"
    )]
    pub retry_at: Option<DateTime<Utc>>,
    /// For a retry, why; for a failure, the reason, the task's `lastError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The attempt as the task's history keeps it (written with the next write the task gets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<AttemptRecord>,
    /// For a skipped task: the status it was found in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_status: Option<TaskStatus>,
    /// The outcome is recorded already (execute-task records a delivery before it answers):
    /// the state machine ends without update-status.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recorded: bool,
}

impl AttemptReport {
    fn skipped(status: TaskStatus) -> Self {
        AttemptReport::not_run(AttemptOutcome::Skipped, status)
    }

    fn superseded(status: TaskStatus) -> Self {
        AttemptReport::not_run(AttemptOutcome::Superseded, status)
    }

    /// The retry handed over to `task` (`Task::next_attempt`), as the report of the attempt that
    /// asked for it: the state machine waits for it as for any retry.
    fn handed_over_retry(next: &NextAttempt) -> Self {
        AttemptReport {
            attempt: next.after_attempt,
            attempt_in_series: next.attempt_in_series,
            retry_at: Some(next.at),
            task_status: None,
            ..AttemptReport::not_run(AttemptOutcome::Retry, TaskStatus::InProgress)
        }
    }

    /// A report of `task`'s current attempt, not yet run: each path fills in what happened.
    fn of_attempt(task: &Task, attempt_in_series: u32) -> Self {
        AttemptReport {
            attempt: task.attempts,
            attempt_in_series,
            task_status: None,
            ..AttemptReport::not_run(AttemptOutcome::Completed, task.task_status)
        }
    }

    fn not_run(outcome: AttemptOutcome, status: TaskStatus) -> Self {
        AttemptReport {
            outcome,
            status_code: None,
            attempt: 0,
            attempt_in_series: 0,
            executed_at: None,
            lateness_ms: None,
            retry_at: None,
            error: None,
            record: None,
            task_status: Some(status),
            recorded: false,
        }
    }
}

/// execute-task's input: the execution's input and, from the second attempt on, the previous
/// attempt's report (the state machine's `$.result`); or, after the task was recorded FAILED,
/// the request to call its failure callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptInput {
    #[serde(flatten)]
    pub input: ExecutionInput,
    #[serde(default, rename = "result", skip_serializing_if = "Option::is_none")]
    pub previous: Option<AttemptReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notice>,
}

/// A message execute-task sends about a task rather than its webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// The task ended FAILED: call its `onFailure`.
    #[serde(rename = "onFailure")]
    OnFailure,
}

impl From<ExecutionInput> for AttemptInput {
    fn from(input: ExecutionInput) -> Self {
        AttemptInput {
            input,
            previous: None,
            notify: None,
        }
    }
}

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
        report.recorded = record_outcome(store, clock, &update).await.is_ok();
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
        let mut report = AttemptReport::of_attempt(&task, attempt_in_series - 1);
        report.outcome = AttemptOutcome::Failed;
        report.record = unwritten;
        report.error = Some(format!(
            "attempt {} began in another run and its outcome is unknown; the retry policy's \
             {max_attempts} attempts of this series are used up",
            task.attempts
        ));
        return Ok(report);
    }
    if let Some(webhook) = &task.webhook {
        if let Err(failure) = sender.prepare(webhook).await {
            // Refused or unresolvable before any request: no attempt begins.
            let mut report = AttemptReport::of_attempt(&task, attempt_in_series);
            report.record = unwritten;
            decide(&mut report, &task, &failure, clock.now());
            return Ok(report);
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
    crate::wait::sleep_until(clock, not_before).await;
    let executed_at = clock.now();
    let mut report = AttemptReport::of_attempt(&task, attempt_in_series);
    report.executed_at = Some(executed_at);
    report.lateness_ms = Some((executed_at - task.timestamp).num_milliseconds());
    let Some(webhook) = &task.webhook else {
        return Ok(report);
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
    report.status_code = response.as_ref().map(|r| r.status);
    report.record = Some(AttemptRecord {
        attempt: task.attempts,
        started_at: executed_at,
        duration_ms: (ended - executed_at).num_milliseconds().max(0) as u64,
        status_code: report.status_code,
        error: failure.as_ref().map(describe_failure),
        response_body: response.map(|r| r.body).filter(|body| !body.is_empty()),
    });
    match failure {
        None => report.outcome = AttemptOutcome::Delivered,
        Some(failure) => decide(&mut report, &task, &failure, ended),
    }
    Ok(report)
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
    let mut report = AttemptReport::of_attempt(&task, 0);
    report.status_code = answer.as_ref().ok().map(|response| response.status);
    match failure_of(&answer) {
        None => report.outcome = AttemptOutcome::Delivered,
        Some(failure) => {
            report.outcome = AttemptOutcome::Failed;
            report.error = Some(describe_failure(&failure));
        }
    }
    Ok(report)
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

/// The task's retry policy answers a failed try: retry at a time, or failed with the reason.
fn decide(report: &mut AttemptReport, task: &Task, failure: &DeliveryError, now: DateTime<Utc>) {
    match task
        .retry_policy()
        .next_attempt(report.attempt_in_series, failure, now)
    {
        Some(at) => {
            report.outcome = AttemptOutcome::Retry;
            // Rounded up to the millisecond: the wait is never shorter than the policy's.
            let stored = rfc3339_millis::truncate(at);
            let stored = if stored < at {
                stored + chrono::Duration::milliseconds(1)
            } else {
                stored
            };
            report.retry_at = Some(stored);
            report.error = Some(describe_failure(failure));
        }
        None => {
            report.outcome = AttemptOutcome::Failed;
            report.error = Some(format!(
                "{} (attempt {}, try {} of this series)",
                describe_failure(failure),
                task.attempts,
                report.attempt_in_series
            ));
        }
    }
}

/// A Step Functions error caught by `Catch` with `ResultPath: $.error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepError {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl StepError {
    /// A Lambda error's Cause is the JSON `{"errorType", "errorMessage"}`: keep the message.
    pub fn describe(&self) -> String {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct LambdaCause {
            error_message: String,
        }
        let message = serde_json::from_str::<LambdaCause>(&self.cause)
            .map(|cause| cause.error_message)
            .unwrap_or_else(|_| self.cause.clone());
        if message.is_empty() {
            self.error.clone()
        } else {
            format!("{}: {}", self.error, message)
        }
    }
}

/// update-status' input: the execution input plus either execute-task's result or the caught error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdate {
    #[serde(flatten)]
    pub input: ExecutionInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<AttemptReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
}

impl StatusUpdate {
    /// The update that records an attempt's report.
    pub fn of_report(input: ExecutionInput, report: &AttemptReport) -> Self {
        StatusUpdate {
            input,
            result: Some(report.clone()),
            error: None,
        }
    }
}

/// `record`, unless the task's history has its attempt already.
async fn unrecorded(
    store: &dyn TaskStore,
    id: &str,
    record: Option<AttemptRecord>,
) -> Result<Option<AttemptRecord>, StoreError> {
    let Some(record) = record else {
        return Ok(None);
    };
    let recorded = store.get(id).await?.is_some_and(|task| {
        task.attempt_history
            .iter()
            .any(|done| done.attempt == record.attempt)
    });
    Ok((!recorded).then_some(record))
}

/// update-status: IN_PROGRESS -> COMPLETED or FAILED. Idempotent: repeating an update that was
/// already recorded, or one for a task that was cancelled meanwhile, succeeds without a change.
/// Returns the task's status afterwards.
pub async fn record_outcome(
    store: &dyn TaskStore,
    clock: &dyn Clock,
    update: &StatusUpdate,
) -> Result<TaskStatus, StoreError> {
    let now = clock.now();
    let mut change = match (&update.error, &update.result) {
        // An execution's error (a Lambda crash or timeout, a store outage past every retry)
        // ends the task only if its attempt began: otherwise nothing was sent, and the
        // sweeps run it again in a new series.
        (Some(error), _) => Transition::new(Event::Fail, now)
            .with_error(error.describe())
            .if_attempt_began(),
        (None, Some(report))
            if matches!(
                report.outcome,
                AttemptOutcome::Skipped | AttemptOutcome::Superseded
            ) =>
        {
            return Ok(report.task_status.unwrap_or(TaskStatus::Cancelled))
        }
        // execute-task recorded the delivery itself.
        (None, Some(report)) if report.recorded => return Ok(TaskStatus::Completed),
        (None, Some(report)) if report.outcome == AttemptOutcome::Failed => {
            Transition::new(Event::Fail, now).with_error(
                report
                    .error
                    .clone()
                    .unwrap_or_else(|| "the attempt failed".into()),
            )
        }
        (None, Some(report)) if report.outcome == AttemptOutcome::Retry => {
            Transition::new(Event::Fail, now)
                .with_error("the workflow recorded a retry as the outcome")
        }
        (None, Some(report)) => {
            let change = Transition::new(Event::Complete, now);
            match (report.executed_at, report.lateness_ms) {
                (Some(at), Some(lateness)) => change.executed(at, lateness),
                _ => change,
            }
        }
        (None, None) => Transition::new(Event::Fail, now)
            .with_error("the workflow reported neither a result nor an error"),
    }
    .in_series(update.input.series);
    change.changes.record_attempt = update.result.as_ref().and_then(|r| r.record.clone());
    if update.error.is_some() {
        // After a Catch, the result is the report of the attempt before the one that failed,
        // whose record the failed run's begin may have written already: one record an attempt.
        change.changes.record_attempt =
            unrecorded(store, &update.input.id, change.changes.record_attempt).await?;
    }
    if change.event == Event::Fail && update.error.is_none() {
        if let Some(at) = update.result.as_ref().and_then(|r| r.executed_at) {
            let lateness = update
                .result
                .as_ref()
                .and_then(|r| r.lateness_ms)
                .unwrap_or(0);
            change = change.executed(at, lateness);
        }
    }
    match store.transition(&update.input.id, &change).await {
        Ok(task) => Ok(task.task_status),
        Err(StoreError::Conflict { current }) => {
            let in_series = current.series == update.input.series;
            if in_series && !current.task_status.is_terminal() && !current.attempt_began_in_series()
            {
                tracing::warn!(
                    task_id = %current.id,
                    status = %current.task_status,
                    "the execution failed before any attempt: left to the sweeps to run again"
                );
            } else if current.task_status != change.event.to() && in_series {
                tracing::warn!(
                    task_id = %current.id,
                    status = %current.task_status,
                    wanted = %change.event.to(),
                    "outcome not recorded: the task had already moved on"
                );
            }
            Ok(current.task_status)
        }
        Err(error) => Err(error),
    }
}
