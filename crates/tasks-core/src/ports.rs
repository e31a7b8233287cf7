//! The capabilities the steps need, as small traits, with the transitions and queries the store
//! takes. `tasks-aws` implements them on DynamoDB, SQS and Step Functions; `testing::memory`
//! implements them in memory for tests.

use crate::contracts::{AttemptInput, AttemptReport, ExecutionInput, QueueMessage, Slot};
use crate::delivery::{DeliveryError, WebhookCall, WebhookResponse};
use crate::model::status::{Event, TaskStatus};
use crate::model::task::{Changes, Task, Webhook};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("task {0} already exists")]
    AlreadyExists(String),
    #[error("task {0} not found")]
    NotFound(String),
    /// The conditional write lost: the task is not in a status the change may leave from.
    /// A normal outcome of races, not a failure.
    #[error("task {} is {}: the change does not apply", .current.id, .current.task_status)]
    Conflict { current: Box<Task> },
    #[error("invalid page token")]
    InvalidPageToken,
    #[error("the task store is unavailable: {message}")]
    Unavailable {
        message: String,
        request_id: Option<String>,
    },
}

/// A conditional status change: applied only if the task is in one of `event.from()` (and, for a
/// cancel or a reschedule, no webhook attempt of its series has begun; with an expected series,
/// the task is still in that delivery series; with an expected attempt count, no attempt began
/// since it was read; with an expected update time, nobody touched it since it was read; with a
/// start bound, it does not start later than that).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub event: Event,
    pub at: DateTime<Utc>,
    pub expected_series: Option<u32>,
    pub expected_attempts: Option<u32>,
    pub expected_last_updated_at: Option<DateTime<Utc>>,
    /// Apply only while the task's `startExecutionAt` is at most this.
    pub start_by: Option<i64>,
    /// Apply only if an attempt began in the task's current series.
    pub requires_attempt_in_series: bool,
    /// Apply only if no retry was handed over to the task (`Task::next_attempt`).
    pub requires_no_scheduled_retry: bool,
    pub last_error: Option<String>,
    pub executed_at: Option<DateTime<Utc>>,
    pub lateness_ms: Option<i64>,
    pub changes: Changes,
    /// Written on the item with the change ([`Task::write_token`]), and required to differ from
    /// the item's: a repeat of an applied write never applies twice, and its failed condition
    /// shows the writer its own write ([`Transition::settle`]). Keep the same transition (and
    /// so the same token) for every try of one change.
    pub write_token: String,
}

impl Transition {
    pub fn new(event: Event, at: DateTime<Utc>) -> Self {
        Transition {
            event,
            at,
            expected_series: None,
            expected_attempts: None,
            expected_last_updated_at: None,
            start_by: None,
            requires_attempt_in_series: false,
            requires_no_scheduled_retry: false,
            last_error: None,
            executed_at: None,
            lateness_ms: None,
            changes: Changes::default(),
            write_token: crate::model::task::new_write_token(),
        }
    }

    /// Apply only while the task is in this delivery series: an execution of an older series
    /// (or a message for one) must not move the task.
    pub fn in_series(mut self, series: u32) -> Self {
        self.expected_series = Some(series);
        self
    }

    /// Apply only if the task has made exactly this many attempts: of two executions that read
    /// the task before the same attempt, only one begins it.
    pub fn if_attempts(mut self, attempts: u32) -> Self {
        self.expected_attempts = Some(attempts);
        self
    }

    /// Optimistic lock: apply only if the task was last updated at exactly this time.
    pub fn if_last_updated_at(mut self, at: DateTime<Utc>) -> Self {
        self.expected_last_updated_at = Some(at);
        self
    }

    /// Apply only while the task starts no later than `start_execution_at`: a claim read from
    /// the index (which lags the table) must not take a task moved later since, maybe beyond
    /// anything an execution can wait for.
    pub fn if_starting_by(mut self, start_execution_at: i64) -> Self {
        self.start_by = Some(start_execution_at);
        self
    }

    /// Apply only if an attempt began in the task's current series: an execution's error ends
    /// the task only when the receiver may have its request; before any attempt, the task is
    /// left to the sweeps, which run it again.
    pub fn if_attempt_began(mut self) -> Self {
        self.requires_attempt_in_series = true;
        self
    }

    /// Apply only if no retry was handed over to the task: a runner that knows of no earlier
    /// attempt's outcome must not begin the attempt a handed-over retry waits for.
    pub fn unless_retry_scheduled(mut self) -> Self {
        self.requires_no_scheduled_retry = true;
        self
    }

    /// Whether the change removes the task's handed-over retry: a begin uses it up, and a new
    /// series makes it stale.
    pub fn clears_next_attempt(&self) -> bool {
        self.increments_attempts() || self.event.starts_series()
    }

    /// The same write as another with this token: a try of a change made before, whose
    /// answer may have been lost.
    pub fn with_write_token(mut self, token: &str) -> Self {
        self.write_token = token.to_string();
        self
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.last_error = Some(error.into());
        self
    }

    pub fn executed(mut self, at: DateTime<Utc>, lateness_ms: i64) -> Self {
        self.executed_at = Some(at);
        self.lateness_ms = Some(lateness_ms);
        self
    }

    pub fn with_changes(mut self, changes: Changes) -> Self {
        self.changes = changes;
        self
    }

    pub fn increments_attempts(&self) -> bool {
        self.event == Event::BeginAttempt
    }

    /// Whether the condition holds for `task`; the DynamoDB adapter says the same in a
    /// ConditionExpression.
    pub fn applies_to(&self, task: &Task) -> bool {
        self.event.allows(task.task_status)
            && (!self.event.requires_no_attempt_in_series() || !task.attempt_began_in_series())
            && self
                .expected_series
                .is_none_or(|series| series == task.series)
            && self
                .expected_attempts
                .is_none_or(|attempts| attempts == task.attempts)
            && self
                .expected_last_updated_at
                .is_none_or(|at| at == task.last_updated_at)
            && self.start_by.is_none_or(|by| task.start_execution_at <= by)
            && (!self.requires_attempt_in_series || task.attempt_began_in_series())
            && (!self.requires_no_scheduled_retry || task.next_attempt.is_none())
            && (self.event != Event::ClaimCallback || task.callback_series != Some(task.series))
            && !self.wrote(task)
    }

    /// Whether `task` is as this change left it: its last write was this one.
    pub fn wrote(&self, task: &Task) -> bool {
        task.write_token.as_deref() == Some(self.write_token.as_str())
    }

    /// What a write whose condition failed returns, in every adapter: the item it failed on is
    /// the writer's own write when the write was applied before (the SDK retried it after its
    /// answer was lost), and the change succeeded; otherwise another writer came first.
    pub fn settle(&self, current: Task) -> Result<Task, StoreError> {
        if self.wrote(&current) {
            Ok(current)
        } else {
            Err(StoreError::Conflict {
                current: Box::new(current),
            })
        }
    }

    /// What the change does to the task's `slot`: set by a claim, removed whenever the task goes
    /// back to waiting (SCHEDULED, or QUEUED for a per-task execution), left alone otherwise.
    pub fn slot_change(&self) -> Option<Option<String>> {
        match (&self.changes.slot, self.event.to()) {
            (Some(slot), _) => Some(Some(slot.clone())),
            (None, TaskStatus::Scheduled | TaskStatus::Queued) => Some(None),
            (None, _) => None,
        }
    }

    /// The task after the change (the in-memory store's update).
    /// The `expiresAt` (epoch seconds) this change leaves on the task where finished tasks are
    /// kept for `retention`: a change to a terminal status sets it to `retention` after the
    /// change, one out of a terminal status (a retry) removes it (`Some(None)`); `None`: the
    /// change leaves it as it is.
    pub fn expiry(&self, retention: Option<std::time::Duration>) -> Option<Option<i64>> {
        let retention = retention?;
        if self.event.to().is_terminal() {
            let kept = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
            Some(Some(self.at.timestamp().saturating_add(kept)))
        } else if self.event.from().iter().any(|status| status.is_terminal()) {
            Some(None)
        } else {
            None
        }
    }

    pub fn apply(&self, task: &Task) -> Task {
        let mut next = task.clone();
        next.task_status = self.event.to();
        next.last_updated_at = self.at;
        next.write_token = Some(self.write_token.clone());
        if self.increments_attempts() {
            next.attempts += 1;
            next.attempt_series = next.series;
        }
        if self.event.starts_series() {
            next.series += 1;
            next.series_start_attempts = Some(task.attempts);
        }
        if self.event.counts_redispatch() {
            next.redispatches += 1;
        }
        if self.event.resets_redispatches() {
            next.redispatches = 0;
        }
        if let Some((timestamp, start_execution_at)) = self.changes.timestamp {
            next.timestamp = timestamp;
            next.start_execution_at = start_execution_at;
        }
        if let Some(webhook) = &self.changes.webhook {
            next.webhook = webhook.clone();
        }
        if let Some(payload) = &self.changes.payload {
            next.payload = payload.clone();
        }
        if let Some(retry) = &self.changes.retry {
            next.retry = retry.clone();
        }
        if let Some(on_failure) = &self.changes.on_failure {
            next.on_failure = on_failure.clone();
        }
        if let Some(slot) = self.slot_change() {
            next.slot = slot;
        }
        if let Some(at) = self.changes.attempt_at {
            next.attempt_at = Some(at);
        }
        if self.event == Event::ClaimCallback {
            next.callback_series = Some(task.series);
        }
        if self.clears_next_attempt() {
            next.next_attempt = None;
        }
        if let Some(retry) = &self.changes.next_attempt {
            next.next_attempt = Some(retry.clone());
        }
        if let Some(history) = &self.changes.attempt_history {
            next.attempt_history = history.clone();
        }
        if let Some(record) = &self.changes.record_attempt {
            next.attempt_history.push(record.clone());
        }
        if let Some(error) = &self.last_error {
            next.last_error = Some(error.clone());
        }
        if let Some(at) = self.executed_at {
            next.executed_at = Some(at);
        }
        if let Some(lateness) = self.lateness_ms {
            next.lateness_ms = Some(lateness);
        }
        next
    }
}

/// Which tasks of one status to read from the (taskStatus, startExecutionAt) index.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusQuery {
    pub status: TaskStatus,
    /// Only tasks with `startExecutionAt >= due_from`.
    pub due_from: Option<i64>,
    /// Only tasks with `startExecutionAt <= due_by`.
    pub due_by: Option<i64>,
    /// Only tasks last updated before this time.
    pub updated_before: Option<DateTime<Utc>>,
    pub newest_first: bool,
    pub limit: u32,
    pub page_token: Option<String>,
}

impl StatusQuery {
    /// Whether a `startExecutionAt` lies within the query's bounds (a page token must).
    pub fn covers(&self, start_execution_at: i64) -> bool {
        self.due_from.is_none_or(|from| start_execution_at >= from)
            && self.due_by.is_none_or(|due| start_execution_at <= due)
    }

    pub fn new(status: TaskStatus, limit: u32) -> Self {
        StatusQuery {
            status,
            due_from: None,
            due_by: None,
            updated_before: None,
            newest_first: false,
            limit,
            page_token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub tasks: Vec<Task>,
    /// Opaque; pass it back to read the next page. `None` on the last page.
    pub next_token: Option<String>,
    /// Ids of items on this page that are not valid tasks: left out and reported, so one bad
    /// item cannot stop a whole page.
    pub undecodable: Vec<String>,
}

/// What a create whose id was taken returns, in every adapter: the item found is the task's own
/// create when it carries the task's write token (the SDK retried a create whose answer was
/// lost), and the create succeeded; otherwise the id belongs to another task.
pub fn settle_create(task: &Task, found: &Task) -> Result<(), StoreError> {
    if task.write_token.is_some() && found.write_token == task.write_token {
        Ok(())
    } else {
        Err(StoreError::AlreadyExists(task.id.clone()))
    }
}

#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task; `AlreadyExists` if its id is taken by another task. A task found
    /// stored by this very create (its answer lost and the write retried) is a success.
    async fn create(&self, task: &Task) -> Result<(), StoreError>;
    async fn get(&self, id: &str) -> Result<Option<Task>, StoreError>;
    async fn query(&self, query: &StatusQuery) -> Result<Page, StoreError>;
    /// Applies a conditional change and returns the task as it now is. A change found already
    /// applied by this same transition (its answer lost and the write retried) is a success
    /// ([`Transition::settle`]).
    async fn transition(&self, id: &str, change: &Transition) -> Result<Task, StoreError>;

    /// How many tasks of `status` have `startExecutionAt` within `from..=to`. Reads them page by
    /// page; a store that can count on the server does so instead.
    async fn count(&self, status: TaskStatus, from: i64, to: i64) -> Result<u64, StoreError> {
        let mut query = StatusQuery::new(status, 1_000);
        query.due_from = Some(from);
        query.due_by = Some(to);
        let mut count = 0;
        loop {
            let page = self.query(&query).await?;
            count += (page.tasks.len() + page.undecodable.len()) as u64;
            match page.next_token {
                Some(token) => query.page_token = Some(token),
                None => return Ok(count),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the queue is unavailable: {0}")]
pub struct QueueError(pub String);

#[async_trait]
pub trait DispatchQueue: Send + Sync {
    /// Sends up to ten messages in one request; returns the ids of the tasks whose message was
    /// not accepted.
    async fn send_batch(&self, messages: &[QueueMessage]) -> Result<Vec<String>, QueueError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    /// The execution of this name is running already: a repeated delivery.
    AlreadyRunning,
    /// The execution of this name has ended: its name stays taken, so the task needs a new
    /// series to run again.
    AlreadyEnded,
}

/// What the workflow engine knows of one execution name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionState {
    Running,
    /// Ended: `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`.
    Ended(String),
    /// No execution of that name was ever started.
    Missing,
}

/// A start as an execution registry (`asl::Executions`: local mode's, the simulator's, the
/// in-memory workflow's) answers it.
impl From<asl::Start> for StartOutcome {
    fn from(start: asl::Start) -> Self {
        match start {
            asl::Start::Started => StartOutcome::Started,
            asl::Start::Taken(asl::ExecutionState::Running) => StartOutcome::AlreadyRunning,
            asl::Start::Taken(asl::ExecutionState::Ended(_)) => StartOutcome::AlreadyEnded,
        }
    }
}

/// A name's execution as an execution registry knows it (`None`: never started).
impl From<Option<asl::ExecutionState>> for ExecutionState {
    fn from(state: Option<asl::ExecutionState>) -> Self {
        match state {
            None => ExecutionState::Missing,
            Some(asl::ExecutionState::Running) => ExecutionState::Running,
            Some(asl::ExecutionState::Ended(status)) => {
                ExecutionState::Ended(status.as_str().to_string())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the workflow engine is unavailable: {0}")]
pub struct WorkflowError(pub String);

/// An execution to start: its name (unique per task series, or per slot) and its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub name: String,
    pub input: Value,
}

impl Execution {
    /// A task's own execution; with `previous`, it goes on from the report of an attempt that
    /// ran in the task's slot.
    pub fn of_task(input: &ExecutionInput, previous: Option<&AttemptReport>) -> Self {
        let attempt = AttemptInput {
            input: input.clone(),
            previous: previous.cloned(),
            notify: None,
        };
        Execution {
            name: input.execution_name(),
            input: serde_json::to_value(attempt).expect("an execution input is JSON"),
        }
    }

    /// An execution that goes on from a slot's report when the task's execution of the series
    /// exists already: named after the report's attempt, so it is started once per attempt.
    pub fn of_report(input: &ExecutionInput, report: &AttemptReport) -> Self {
        Execution {
            name: format!("{}-a{}", input.execution_name(), report.attempt),
            ..Execution::of_task(input, Some(report))
        }
    }

    pub fn of_slot(slot: &Slot) -> Self {
        Execution {
            name: slot.name.clone(),
            input: serde_json::to_value(slot).expect("a slot is JSON"),
        }
    }
}

#[async_trait]
pub trait Workflow: Send + Sync {
    /// Starts the execution of this name, unless one of that name exists.
    async fn start(&self, execution: &Execution) -> Result<StartOutcome, WorkflowError>;
    /// Whether the named execution runs, has ended, or never existed.
    async fn state(&self, execution_name: &str) -> Result<ExecutionState, WorkflowError>;
    /// Stops the named execution if it runs; a missing or ended one is not an error.
    async fn stop(&self, execution_name: &str) -> Result<(), WorkflowError>;
}

#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Checks and resolves the target ahead of time, so that the send at the task's second does
    /// not wait for DNS. A refused target is reported here.
    async fn prepare(&self, webhook: &Webhook) -> Result<(), DeliveryError>;
    /// Sends the request; any HTTP answer is `Ok`, an attempt that got none is `Err`.
    async fn send(&self, call: WebhookCall<'_>) -> Result<WebhookResponse, DeliveryError>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    /// Every event against the rule: a change to a terminal status expires the task `retention`
    /// after it, a change out of one (a retry) removes the expiry, any other leaves it; with no
    /// retention, nothing expires.
    #[test]
    fn a_finished_task_expires_after_the_retention_and_a_retry_keeps_it_again() {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
        let day = Duration::from_secs(86_400);
        for event in Event::ALL {
            let change = Transition::new(event, at);
            let expected = if event.to().is_terminal() {
                Some(Some(at.timestamp() + 86_400))
            } else if event == Event::Retry {
                Some(None)
            } else {
                None
            };
            assert_eq!(change.expiry(Some(day)), expected, "{event:?}");
            assert_eq!(change.expiry(None), None, "{event:?}");
        }
    }
}
