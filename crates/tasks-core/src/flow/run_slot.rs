//! execute-task for a slot: the tasks a claim finds due in the same second run in one workflow
//! execution. A hotspot of 100,000 tasks is 400 executions instead of 100,000 (Step Functions
//! starts 300 a second and takes 5,000 state transitions a second), and a steady load pays three
//! transitions a second instead of four a task.
//!
//! The slot's execution waits until its `wakeAt`, then one execute-task run begins every task's
//! attempt (each a conditional write: exactly once per attempt, whatever runs twice), sleeps to
//! each task's millisecond, sends, and records COMPLETED. A task whose attempt fails (or whose
//! run errs, or whose outcome cannot be recorded) is handed over: a message on the queue starts
//! the task's own execution, which goes on from the attempt's report (a retry waits for its
//! time, a failure is recorded and its callback called) as any task's execution does.

use crate::contracts::{
    AttemptInput, AttemptOutcome, AttemptReport, DispatchMessage, ExecutionInput, HandOver,
    QueueMessage, Slot, StatusUpdate,
};
use crate::flow::claim::send_batch_soon;
use crate::flow::execute::attempt_task;
use crate::flow::record::update_status;
use crate::model::status::{Event, TaskStatus};
use crate::model::task::new_write_token;
use crate::ports::{Clock, DispatchQueue, TaskStore, WebhookSender};
use crate::rules::pacing::Pacing;
use crate::rules::slot_plan::{begin_time, IN_SLOT_ATTEMPT_MARGIN, RECORD_PATIENCE};
use crate::rules::timing::{send_batch_worst_case, SEND_BATCH_SIZE};
use chrono::{DateTime, Duration, Utc};
use futures::future::join;
use futures::{stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::hash::Hasher;

/// What a slot run did, the slot execution's result.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotSummary {
    /// Run and recorded COMPLETED.
    pub completed: usize,
    /// Run, retried by their policy, and recorded FAILED.
    pub failed: usize,
    /// Handed off to their own execution.
    pub handed_over: usize,
    /// Cancelled, moved on, or already run.
    pub skipped: usize,
    /// Hand-overs the queue did not take: the stuck sweep finds those tasks.
    pub lost_hand_overs: usize,
}

enum SlotOutcome {
    Completed(AttemptReport),
    Failed(AttemptReport),
    Skipped,
    HandOver(QueueMessage),
}

/// One task of a slot run, for the run's metrics: its last attempt's report (if one ran) and the
/// final status the run recorded (if it did).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRun {
    pub id: String,
    pub report: Option<AttemptReport>,
    pub recorded: Option<TaskStatus>,
}

/// execute-task for a slot: begins the tasks' attempts spread over the slot's share of
/// [`BEGINS_PER_SECOND`] (a second's slots wake one after another, so together they keep to
/// it), then runs each attempt at its own millisecond, all at once.
///
/// [`BEGINS_PER_SECOND`]: crate::rules::slot_plan::BEGINS_PER_SECOND
pub async fn run_slot(
    store: &dyn TaskStore,
    sender: &dyn WebhookSender,
    queue: &dyn DispatchQueue,
    clock: &dyn Clock,
    pacing: &Pacing,
    slot: &Slot,
) -> (SlotSummary, Vec<TaskRun>) {
    let count = slot.tasks.len().max(1) as i32;
    let prepare = begin_time(slot.tasks.len());
    let inputs: Vec<(DateTime<Utc>, ExecutionInput)> = slot
        .tasks
        .iter()
        .enumerate()
        .map(|(index, task)| {
            let begin_at = slot.wake_at + prepare * index as i32 / count;
            let input = ExecutionInput {
                id: task.id.clone(),
                timestamp: task.timestamp,
                wake_at: slot.wake_at,
                series: task.series,
            };
            (begin_at, input)
        })
        .collect();
    // Each hand-over is sent as it occurs (with those ready at the same moment, up to a batch):
    // a slot run that times out later has handed on what it could not finish.
    let (ready, hand_overs) = futures::channel::mpsc::unbounded::<QueueMessage>();
    let runs = run_tasks(store, sender, clock, pacing, inputs, ready);
    let sends = send_as_ready(queue, hand_overs);
    let (outcomes, lost) = join(runs, sends).await;
    if !lost.is_empty() {
        tracing::warn!(tasks = ?lost, "could not hand tasks off; the sweeps will find them");
    }
    let mut summary = SlotSummary {
        lost_hand_overs: lost.len(),
        ..SlotSummary::default()
    };
    let mut handed_over = 0;
    let mut runs = Vec::with_capacity(outcomes.len());
    for (id, outcome) in outcomes {
        let (report, recorded) = match outcome {
            SlotOutcome::Completed(report) => {
                summary.completed += 1;
                (Some(report), Some(TaskStatus::Completed))
            }
            SlotOutcome::Failed(report) => {
                summary.failed += 1;
                (Some(report), Some(TaskStatus::Failed))
            }
            SlotOutcome::Skipped => {
                summary.skipped += 1;
                (None, None)
            }
            SlotOutcome::HandOver(message) => {
                let report = match message {
                    QueueMessage::HandOver(hand_over) => Some(hand_over.result),
                    _ => None,
                };
                handed_over += 1;
                (report, None)
            }
        };
        runs.push(TaskRun {
            id,
            report,
            recorded,
        });
    }
    summary.handed_over = handed_over - summary.lost_hand_overs;
    (summary, runs)
}

/// Sends the hand-overs as they come, those ready at the same moment together (up to a batch);
/// returns the tasks the queue did not take.
async fn send_as_ready(
    queue: &dyn DispatchQueue,
    hand_overs: futures::channel::mpsc::UnboundedReceiver<QueueMessage>,
) -> Vec<String> {
    let mut batches = hand_overs.ready_chunks(SEND_BATCH_SIZE);
    let mut lost = Vec::new();
    while let Some(batch) = batches.next().await {
        lost.extend(send_batch_soon(queue, batch).await);
    }
    lost
}

/// Runs each task at its begin time, all at once, and puts each hand-over on `ready` as it
/// occurs.
async fn run_tasks(
    store: &dyn TaskStore,
    sender: &dyn WebhookSender,
    clock: &dyn Clock,
    pacing: &Pacing,
    inputs: Vec<(DateTime<Utc>, ExecutionInput)>,
    ready: futures::channel::mpsc::UnboundedSender<QueueMessage>,
) -> Vec<(String, SlotOutcome)> {
    let at_once = inputs.len().max(1);
    stream::iter(inputs)
        .map(|(begin_at, input)| {
            let ready = ready.clone();
            async move {
                crate::support::wait::sleep_until(clock, begin_at).await;
                let id = input.id.clone();
                let outcome = run_one(store, sender, clock, pacing, input).await;
                if let SlotOutcome::HandOver(message) = &outcome {
                    // The receiver lives until every sender is gone.
                    let _ = ready.unbounded_send(message.clone());
                }
                (id, outcome)
            }
        })
        .buffer_unordered(at_once)
        .collect()
        .await
}

/// One task of a slot. A task whose attempt already began in its series (a repeated run of the
/// slot, or a second slot of the series) is handed over without a report: its own execution,
/// named after the series, runs at most once.
async fn run_one(
    store: &dyn TaskStore,
    sender: &dyn WebhookSender,
    clock: &dyn Clock,
    pacing: &Pacing,
    input: ExecutionInput,
) -> SlotOutcome {
    let message = DispatchMessage {
        id: input.id.clone(),
        timestamp: input.timestamp,
        series: input.series,
    };
    let hand_over = |report: Option<AttemptReport>| {
        SlotOutcome::HandOver(match report {
            Some(result) => QueueMessage::HandOver(HandOver {
                task: message.clone(),
                result,
            }),
            None => QueueMessage::Task(message.clone()),
        })
    };
    let mut attempt: AttemptInput = input.clone().into();
    // One patience for the reads, the attempts and the record, counted from the task's time: a
    // slot run ends within its function's timeout however its calls fail.
    let mut patience = Patience::new(clock, &message.id, input.timestamp);
    // The attempts the task had when this run last knew them (after its own attempt), and the
    // token of the begin it is trying: on every read, an attempt begun since by another runner
    // (a repeated run of the slot, a second slot of the series) hands the task off, and one
    // begun by this run's own try, whose answer was lost, is tried on with the same token.
    let mut known_attempts = None;
    let mut begin_token = new_write_token();
    loop {
        let task = match store.get(&input.id).await {
            Ok(task) => task,
            Err(_) if patience.wait_to_attempt().await => continue,
            Err(_) => return hand_over(attempt.previous),
        };
        let has_callback = task.as_ref().is_some_and(|task| task.on_failure.is_some());
        if let Some(task) = &task {
            let runnable =
                Event::BeginAttempt.allows(task.task_status) && task.series == input.series;
            let begun_by_another = task.attempt_began_in_series()
                && known_attempts != Some(task.attempts)
                && task.write_token.as_deref() != Some(begin_token.as_str());
            if runnable && begun_by_another {
                return hand_over(None);
            }
        }
        let report =
            match attempt_task(store, sender, clock, pacing, &attempt, task, &begin_token).await {
                Ok(report) => report,
                Err(_) if patience.wait_to_attempt().await => continue,
                Err(_) => return hand_over(attempt.previous),
            };
        known_attempts = Some(report.attempt);
        begin_token = new_write_token();
        let final_outcome = match report.outcome {
            AttemptOutcome::Skipped | AttemptOutcome::Superseded => return SlotOutcome::Skipped,
            // A retry due soon (the default policy's 2, 4 and 8 s) runs here; a later one in the
            // task's own execution, which waits for it at no cost.
            AttemptOutcome::Retry => match report.retry_at {
                Some(at) if at <= patience.last_attempt_at() => {
                    crate::support::wait::sleep_until(clock, at).await;
                    attempt.previous = Some(report);
                    continue;
                }
                _ => return hand_over(Some(report)),
            },
            AttemptOutcome::Failed => SlotOutcome::Failed(report.clone()),
            AttemptOutcome::Delivered | AttemptOutcome::Completed => {
                SlotOutcome::Completed(report.clone())
            }
        };
        let update = StatusUpdate::of_report(input.clone(), &report);
        // A failure with a callback goes on in the task's own execution, which records it and
        // calls the callback: the call stays out of the slot's run (and its timeout).
        if matches!(final_outcome, SlotOutcome::Failed(_)) && has_callback {
            return hand_over(Some(report));
        }
        if !record_patiently(store, &mut patience, &update).await {
            return hand_over(Some(report));
        }
        return final_outcome;
    }
}

/// Records a delivered task's outcome, trying again while `patience` lasts.
async fn record_patiently(
    store: &dyn TaskStore,
    patience: &mut Patience<'_>,
    update: &StatusUpdate,
) -> bool {
    loop {
        if update_status(store, patience.clock, update).await.is_ok() {
            return true;
        }
        if !patience.wait(patience.give_up_at).await {
            return false;
        }
    }
}

/// Pauses between tries that grow (from 250 ms to 4 s) and differ between tasks, so that the
/// tasks of a hotspot do not retry in step, until [`RECORD_PATIENCE`] after `from`. The pauses
/// count towards it even on a clock that stands still.
struct Patience<'a> {
    clock: &'a dyn Clock,
    id: &'a str,
    give_up_at: DateTime<Utc>,
    /// The clock's reading at the start plus every pause so far.
    paused_until: DateTime<Utc>,
    pause: Duration,
    round: u32,
}

impl<'a> Patience<'a> {
    fn new(clock: &'a dyn Clock, id: &'a str, from: DateTime<Utc>) -> Self {
        let now = clock.now();
        Patience {
            clock,
            id,
            // The last record try leaves time to hand the task off within the patience.
            give_up_at: from.max(now) + RECORD_PATIENCE - send_batch_worst_case(),
            paused_until: now,
            pause: Duration::milliseconds(250),
            round: 0,
        }
    }

    /// The latest time an attempt may start in the slot and still be sent and recorded in time.
    fn last_attempt_at(&self) -> DateTime<Utc> {
        self.give_up_at + send_batch_worst_case() - IN_SLOT_ATTEMPT_MARGIN
    }

    /// Waits before the next try of an attempt; false when it could no longer finish in time.
    async fn wait_to_attempt(&mut self) -> bool {
        self.wait(self.last_attempt_at()).await
    }

    /// Waits before the next try; false when the next would start after `deadline`.
    async fn wait(&mut self, deadline: DateTime<Utc>) -> bool {
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(self.id.as_bytes());
        hasher.write_u32(self.round);
        let spread = (hasher.finish() % 1_000) as i32;
        let wait = self.pause / 2 + self.pause * spread / 1_000;
        let until = self.clock.now().max(self.paused_until) + wait;
        if until > deadline {
            return false;
        }
        tokio::time::sleep(wait.to_std().unwrap_or_default()).await;
        self.paused_until = until;
        self.pause = (self.pause * 2).min(Duration::seconds(4));
        self.round += 1;
        true
    }
}
