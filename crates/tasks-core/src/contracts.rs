//! Every message between the Lambdas, the queue and the state machine: what the queue carries
//! (a slot, a task, a hand-over), an execution's input, execute-task's report and update-status'
//! input. The state machine (`state-machine/tasks.asl.json`) reads these field names.

use crate::model::status::TaskStatus;
use crate::model::task::{execution_name, AttemptRecord, NextAttempt, Task};
use crate::model::time::rfc3339_millis;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// What the queue carries and what each workflow execution receives. One contract shared by the
/// state machine, the Lambdas and the local runner. The webhook stays in the table (the single
/// source of truth, and Step Functions' 256 KB input limit stays out of the way).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionInput {
    pub id: String,
    #[serde(with = "rfc3339_millis")]
    pub timestamp: DateTime<Utc>,
    /// When the workflow's Wait ends: `timestamp` minus the wake-ahead.
    #[serde(with = "rfc3339_millis")]
    pub wake_at: DateTime<Utc>,
    /// The delivery series this execution belongs to.
    pub series: u32,
}

impl ExecutionInput {
    pub fn execution_name(&self) -> String {
        execution_name(&self.id, self.series)
    }
}

/// What the queue carries for one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchMessage {
    pub id: String,
    #[serde(with = "rfc3339_millis")]
    pub timestamp: DateTime<Utc>,
    /// The series the task was claimed for; a message of an older series is stale.
    pub series: u32,
}

impl DispatchMessage {
    pub fn execution_name(&self) -> String {
        execution_name(&self.id, self.series)
    }
}

impl From<&Task> for DispatchMessage {
    fn from(task: &Task) -> Self {
        DispatchMessage {
            id: task.id.clone(),
            timestamp: task.timestamp,
            series: task.series,
        }
    }
}

/// How long before its wake a slot of one task reaches process-sqs-records: time to start it
/// (trying three times) and for its Wait to begin.
pub const MERGE_AHEAD: Duration = Duration::seconds(15);

/// SQS delays a message by at most 15 minutes.
const MAX_QUEUE_DELAY: std::time::Duration = std::time::Duration::from_secs(900);

/// A slot execution's input, and the queue message that starts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    /// The execution's name, also stored on each task as its `slot`.
    #[serde(rename = "slot")]
    pub name: String,
    /// When the Wait ends: the first task's time less the wake-ahead and the time this slot and
    /// the second's slots before it take to begin their attempts.
    #[serde(with = "rfc3339_millis")]
    pub wake_at: DateTime<Utc>,
    /// In time order.
    pub tasks: Vec<DispatchMessage>,
    /// The api's hand-off of a task due soon: held in the queue until [`MERGE_AHEAD`] before it
    /// wakes, to be merged with its second's others (`start_slots`). A cron run's slots are
    /// sent the lead time ahead and not held, so that a receive that fails is given again (after
    /// the queue's visibility timeout) before they wake.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// A task handed over by its slot, with the report of the attempt that ran there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandOver {
    #[serde(flatten)]
    pub task: DispatchMessage,
    pub result: AttemptReport,
}

/// What the dispatch queue carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueueMessage {
    Slot(Slot),
    HandOver(HandOver),
    /// A task for its own execution: sent again by a sweep, or handed over before an attempt ran.
    Task(DispatchMessage),
}

impl QueueMessage {
    /// The tasks the message carries.
    pub fn task_ids(&self) -> Vec<&str> {
        match self {
            QueueMessage::Slot(slot) => slot.tasks.iter().map(|task| task.id.as_str()).collect(),
            QueueMessage::HandOver(hand_over) => vec![hand_over.task.id.as_str()],
            QueueMessage::Task(task) => vec![task.id.as_str()],
        }
    }

    /// How long the queue keeps the message from its consumer. The api's hand-off of a task due
    /// soon is held until [`MERGE_AHEAD`] before it wakes, so that the hand-offs of a busy second
    /// reach process-sqs-records together and run as a few merged slots (`start_slots`) instead
    /// of one each.
    pub fn delay(&self, now: DateTime<Utc>) -> std::time::Duration {
        match self {
            QueueMessage::Slot(slot) if slot.held => (slot.wake_at - MERGE_AHEAD - now)
                .to_std()
                .unwrap_or_default()
                .min(MAX_QUEUE_DELAY),
            _ => std::time::Duration::ZERO,
        }
    }

    /// What tells one message from another (a FIFO queue's deduplication id).
    pub fn key(&self) -> String {
        match self {
            QueueMessage::Slot(slot) => slot.name.clone(),
            QueueMessage::HandOver(hand_over) => format!(
                "{}-{}",
                hand_over.task.execution_name(),
                hand_over.result.attempt
            ),
            QueueMessage::Task(task) => task.execution_name(),
        }
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
    pub(crate) fn skipped(status: TaskStatus) -> Self {
        AttemptReport::not_run(AttemptOutcome::Skipped, status)
    }

    pub(crate) fn superseded(status: TaskStatus) -> Self {
        AttemptReport::not_run(AttemptOutcome::Superseded, status)
    }

    /// The retry handed over to `task` (`Task::next_attempt`), as the report of the attempt that
    /// asked for it: the state machine waits for it as for any retry.
    pub(crate) fn handed_over_retry(next: &NextAttempt) -> Self {
        AttemptReport {
            attempt: next.after_attempt,
            attempt_in_series: next.attempt_in_series,
            retry_at: Some(next.at),
            task_status: None,
            ..AttemptReport::not_run(AttemptOutcome::Retry, TaskStatus::InProgress)
        }
    }

    /// The report of `task`'s current attempt, which ended in `outcome`; the caller adds what
    /// the attempt has to tell (its time, answer, record, retry or error).
    pub(crate) fn of_attempt(task: &Task, attempt_in_series: u32, outcome: AttemptOutcome) -> Self {
        AttemptReport {
            attempt: task.attempts,
            attempt_in_series,
            task_status: None,
            ..AttemptReport::not_run(outcome, task.task_status)
        }
    }

    pub(crate) fn not_run(outcome: AttemptOutcome, status: TaskStatus) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_keep_milliseconds_and_z() {
        let at =
            Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::milliseconds(67);
        let input = ExecutionInput {
            id: "t".into(),
            timestamp: at,
            wake_at: at,
            series: 2,
        };
        let json = serde_json::to_value(&input).unwrap();
        assert_eq!(json["timestamp"], "2030-01-02T03:04:05.067Z");
        assert_eq!(json["wakeAt"], "2030-01-02T03:04:05.067Z");
        assert_eq!(input.execution_name(), "t-2");
        let back: ExecutionInput = serde_json::from_value(json).unwrap();
        assert_eq!(back, input);
    }
}
