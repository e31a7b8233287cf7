//! Slots: the tasks a claim finds due in the same second run in one workflow execution. A
//! hotspot of 100,000 tasks is 400 executions instead of 100,000 (Step Functions starts 300 a
//! second and takes 5,000 state transitions a second), and a steady load pays three transitions
//! a second instead of four a task.
//!
//! The slot's execution waits until its `wakeAt`, then one execute-task run begins every task's
//! attempt (each a conditional write: exactly once per attempt, whatever runs twice), sleeps to
//! each task's millisecond, sends, and records COMPLETED. A task whose attempt fails (or whose
//! run errs, or whose outcome cannot be recorded) is handed off: a message on the queue starts
//! the task's own execution, which goes on from the attempt's report (a retry waits for its
//! time, a failure is recorded and its callback called) as any task's execution does.

use crate::call_tries::Tries;
use crate::dispatch::{send_batch_soon, send_batch_worst_case, SEND_BATCH_SIZE};
use crate::pacing::Pacing;
use crate::pipeline::{
    attempt_task, record_outcome, start_task, AttemptInput, AttemptOutcome, AttemptReport,
    StartError, StartReport, StatusUpdate,
};
use crate::ports::{
    Changes, Clock, DispatchQueue, Execution, StartOutcome, StoreError, TaskStore, Transition,
    WebhookSender, Workflow, WorkflowError,
};
use crate::status::{Event, TaskStatus};
use crate::task::{new_write_token, rfc3339_millis, DispatchMessage, ExecutionInput, Task};
use chrono::{DateTime, Duration, Utc};
use futures::future::{join, join_all};
use futures::{stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;

/// The most tasks in one slot: one execute-task run holds this many sends at once.
pub const SLOT_SIZE: usize = 250;
/// How many attempts the slots of one second begin per second, together. Each begin moves the
/// task from a QUEUED shard of the status index to an IN_PROGRESS one, and a task with a webhook
/// takes about two write units: the 16 shards' 1,000 units a second each take some 8,000 begins a
/// second; half of that leaves room for the completions and everything else.
pub const BEGINS_PER_SECOND: i64 = 4_000;
/// The longest a second's slots spend beginning their attempts before the wake-ahead: 120,000
/// tasks due in one second begin in time, a bigger hotspot's last slots begin late.
pub const MAX_PREPARE: Duration = Duration::seconds(30);
/// How long a slot run keeps trying to record a delivered task's outcome, or to begin an attempt
/// whose write failed, before it hands the task off: a hotspot's completions queue behind the
/// index's write rate for as long as a minute.
pub const RECORD_PATIENCE: Duration = Duration::seconds(60);

/// How long before its wake a slot of one task reaches process-sqs-records: time to start it
/// (trying three times) and for its Wait to begin.
pub const MERGE_AHEAD: Duration = Duration::seconds(15);
/// SQS delays a message by at most 15 minutes.
const MAX_QUEUE_DELAY: std::time::Duration = std::time::Duration::from_secs(900);
/// Starts of a slot's execution before its message goes back to the queue.
const START_TRIES: Tries = Tries {
    count: 3,
    pause: std::time::Duration::from_millis(500),
};

/// An attempt (a first try after a failed call, or a retry) starts in the slot only this long
/// before the slot's patience ends: time for its reads and writes (5 s each at most), the target's
/// DNS (2 s), its webhook (10 s), its record, and the hand-off's send if the record fails
/// (`timing` checks it).
pub const IN_SLOT_ATTEMPT_MARGIN: Duration = Duration::seconds(40);

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

/// A task handed off by its slot, with the report of the attempt that ran there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandOff {
    #[serde(flatten)]
    pub task: DispatchMessage,
    pub result: AttemptReport,
}

/// What the dispatch queue carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueueMessage {
    Slot(Slot),
    HandOff(HandOff),
    /// A task for its own execution: sent again by a sweep, or handed off before an attempt ran.
    Task(DispatchMessage),
}

impl QueueMessage {
    /// The tasks the message carries.
    pub fn task_ids(&self) -> Vec<&str> {
        match self {
            QueueMessage::Slot(slot) => slot.tasks.iter().map(|task| task.id.as_str()).collect(),
            QueueMessage::HandOff(hand_off) => vec![hand_off.task.id.as_str()],
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
            QueueMessage::HandOff(hand_off) => format!(
                "{}-{}",
                hand_off.task.execution_name(),
                hand_off.result.attempt
            ),
            QueueMessage::Task(task) => task.execution_name(),
        }
    }
}

/// Puts the tasks a run is about to claim into slots: grouped by the second they are due in, in
/// time order, at most [`SLOT_SIZE`] to a slot. Each slot begins its attempts over its own share
/// of [`BEGINS_PER_SECOND`], so the later slots of a busy second wake earlier than the first
/// (by up to [`MAX_PREPARE`]); the planner remembers how many of each second it has placed, over
/// the pages of one run. A slot's name holds its second and a digest of its tasks and the run's
/// time, so it is never reused.
#[derive(Debug)]
pub struct SlotPlanner {
    pacing: Pacing,
    now: DateTime<Utc>,
    placed: BTreeMap<i64, usize>,
    held: bool,
}

impl SlotPlanner {
    /// A cron run's planner.
    pub fn new(pacing: &Pacing, now: DateTime<Utc>) -> Self {
        SlotPlanner {
            pacing: *pacing,
            now,
            placed: BTreeMap::new(),
            held: false,
        }
    }

    /// The api's planner for the hand-off of a task due soon: its slot is held (`Slot::held`).
    pub fn for_hand_off(pacing: &Pacing, now: DateTime<Utc>) -> Self {
        SlotPlanner {
            held: true,
            ..SlotPlanner::new(pacing, now)
        }
    }

    /// The slots for `tasks`, each with the tasks it is to hold.
    pub fn plan(&mut self, tasks: Vec<Task>) -> Vec<(Slot, Vec<Task>)> {
        let mut seconds: BTreeMap<i64, Vec<Task>> = BTreeMap::new();
        for task in tasks {
            seconds
                .entry(task.timestamp.timestamp())
                .or_default()
                .push(task);
        }
        let mut slots = Vec::new();
        for (second, mut tasks) in seconds {
            in_time_order(&mut tasks);
            for chunk in tasks.chunks(SLOT_SIZE) {
                let placed = self.placed.entry(second).or_default();
                let index = placed.div_ceil(SLOT_SIZE);
                *placed += chunk.len();
                let ahead = begin_time(*placed).min(MAX_PREPARE);
                let digest = digest_of(
                    Some(self.now.timestamp_nanos_opt().unwrap_or_default()),
                    chunk.iter().map(|task| (task.id.as_str(), task.series)),
                );
                let slot = Slot {
                    name: format!("slot-{second}-{index}-{digest:016x}"),
                    wake_at: self.pacing.wake_at(chunk[0].timestamp) - ahead,
                    tasks: Vec::new(),
                    held: self.held,
                };
                slots.push((slot, chunk.to_vec()));
            }
        }
        slots
    }
}

/// A task as a slot holds it: due at a time, named by its id.
pub(crate) trait Due {
    fn due(&self) -> (DateTime<Utc>, &str);
}

impl Due for Task {
    fn due(&self) -> (DateTime<Utc>, &str) {
        (self.timestamp, &self.id)
    }
}

impl Due for DispatchMessage {
    fn due(&self) -> (DateTime<Utc>, &str) {
        (self.timestamp, &self.id)
    }
}

/// The order of a slot's tasks: by time, then id.
pub(crate) fn in_time_order<T: Due>(tasks: &mut [T]) {
    tasks.sort_by(|a, b| a.due().cmp(&b.due()));
}

/// The digest in a slot's name: its tasks (id and series), after the planning run's clock when
/// there is one, so that concurrent runs name their slots apart.
fn digest_of<'a>(run: Option<i64>, tasks: impl Iterator<Item = (&'a str, u32)>) -> u64 {
    let mut digest = fnv::FnvHasher::default();
    if let Some(nanos) = run {
        digest.write_i64(nanos);
    }
    for (id, series) in tasks {
        digest.write(id.as_bytes());
        digest.write_u32(series);
    }
    digest.finish()
}

/// process-sqs-records' step for one batch of messages: its slots together (`start_slots`,
/// which merges the api's hand-offs of one second), each other message in its task's own
/// execution (`start_task`). Each message's result, in order. A start not finished within
/// `budget` is given up (`StartError::OutOfTime`, the record comes back): the function ends
/// within its timeout however slow its calls are.
pub async fn start_messages(
    store: &dyn TaskStore,
    workflow: &dyn Workflow,
    clock: &dyn Clock,
    pacing: &Pacing,
    messages: &[&QueueMessage],
    budget: std::time::Duration,
) -> Vec<Result<StartReport, StartError>> {
    let slots: Vec<&Slot> = messages
        .iter()
        .filter_map(|message| match message {
            QueueMessage::Slot(slot) => Some(slot),
            _ => None,
        })
        .collect();
    let slots_started = async {
        tokio::time::timeout(budget, start_slots(store, workflow, clock, pacing, &slots))
            .await
            .unwrap_or_else(|_| {
                slots
                    .iter()
                    .map(|_| Err(StartError::OutOfTime(budget)))
                    .collect()
            })
    };
    let (slot_results, own_results) = join(
        slots_started,
        join_all(messages.iter().map(|message| async move {
            let (task, previous) = match message {
                QueueMessage::Slot(_) => return None,
                QueueMessage::HandOff(hand_off) => (&hand_off.task, Some(&hand_off.result)),
                QueueMessage::Task(task) => (task, None),
            };
            let start = start_task(store, workflow, clock, pacing, task, previous);
            Some(
                tokio::time::timeout(budget, start)
                    .await
                    .unwrap_or(Err(StartError::OutOfTime(budget))),
            )
        })),
    )
    .await;
    let mut slot_results = slot_results.into_iter();
    own_results
        .into_iter()
        .map(|own| own.unwrap_or_else(|| slot_results.next().expect("a result for each slot")))
        .collect()
}

/// process-sqs-records' step for the slot messages of one batch; each message's result, in
/// order. A slot of one task (the api's hand-off of a task due within [`HAND_OFF_WITHIN`]) is
/// merged with the batch's other such slots of its second: a hotspot's last-minute creations
/// then hold one Lambda at their second for every ten of them, not one each. A merged slot's
/// tasks are recorded IN_PROGRESS in it, so that the sweeps ask about the execution that has
/// them. A name already taken is a repeated delivery (the slot runs) or a slot that has run:
/// nothing to do either way (a task the slot did not run is found by the sweeps).
///
/// [`HAND_OFF_WITHIN`]: crate::pacing::HAND_OFF_WITHIN
pub async fn start_slots(
    store: &dyn TaskStore,
    workflow: &dyn Workflow,
    clock: &dyn Clock,
    pacing: &Pacing,
    slots: &[&Slot],
) -> Vec<Result<StartReport, StartError>> {
    let mut starts: Vec<(Slot, Vec<usize>, bool)> = Vec::new();
    let mut singles: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (index, slot) in slots.iter().enumerate() {
        match slot.tasks.as_slice() {
            [task] => singles
                .entry(task.timestamp.timestamp())
                .or_default()
                .push(index),
            _ => starts.push(((*slot).clone(), vec![index], false)),
        }
    }
    for (second, indexes) in singles {
        for chunk in indexes.chunks(SLOT_SIZE) {
            if let [index] = chunk {
                starts.push((slots[*index].clone(), vec![*index], false));
                continue;
            }
            let tasks = merged_tasks(
                chunk
                    .iter()
                    .map(|index| slots[*index].tasks[0].clone())
                    .collect(),
            );
            let digest = digest_of(
                None,
                tasks.iter().map(|task| (task.id.as_str(), task.series)),
            );
            let merged = Slot {
                name: format!("slot-{second}-m-{digest:016x}"),
                wake_at: pacing.wake_at(tasks[0].timestamp) - begin_time(tasks.len()),
                tasks,
                held: false,
            };
            starts.push((merged, chunk.to_vec(), true));
        }
    }
    let started = join_all(starts.iter().map(|(slot, _, merged)| async move {
        let outcome = start_soon(workflow, &Execution::of_slot(slot)).await?;
        if *merged {
            record_in_slot(store, clock, slot).await;
        }
        Ok(match outcome {
            StartOutcome::Started => StartReport::Started,
            StartOutcome::AlreadyRunning | StartOutcome::AlreadyEnded => {
                StartReport::AlreadyStarted
            }
        })
    }))
    .await;
    // Each message's index is in exactly one start: its result, in the messages' order.
    let mut results: Vec<(usize, Result<StartReport, StartError>)> = Vec::new();
    for ((slot, indexes, _), result) in starts.iter().zip(started) {
        match &result {
            Ok(report) => {
                tracing::info!(slot = %slot.name, tasks = slot.tasks.len(), ?report, "slot execution started")
            }
            Err(error) => {
                tracing::warn!(slot = %slot.name, %error, "slot start failed; the records will be redelivered")
            }
        }
        results.extend(indexes.iter().map(|index| (*index, result.clone())));
    }
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// The tasks of a second's single-task slots, as their merged slot holds them: in time order,
/// each task once. A message delivered twice in one batch is one task; and a task changed without
/// a new time (its webhook, payload, retry policy, failure callback) while its hand-off was held
/// has two held messages of one time, the earlier series and the current one. The highest series
/// is kept: a slot holding the stale one skips the task, which then waits minutes for the sweeps.
fn merged_tasks(mut tasks: Vec<DispatchMessage>) -> Vec<DispatchMessage> {
    let mut newest: HashMap<String, u32> = HashMap::new();
    for task in &tasks {
        let series = newest.entry(task.id.clone()).or_insert(task.series);
        *series = (*series).max(task.series);
    }
    in_time_order(&mut tasks);
    tasks.retain(|task| {
        // The first copy of the task's highest series; its entry goes with it, so that a copy
        // delivered twice is kept once.
        let kept = newest.get(&task.id) == Some(&task.series);
        if kept {
            newest.remove(&task.id);
        }
        kept
    });
    tasks
}

/// Starts the execution, trying twice more after a short pause: a slot's tasks are due soon,
/// and SQS would deliver the message again only after its visibility timeout (a minute). A
/// start whose answer was lost is found running by the next try.
async fn start_soon(
    workflow: &dyn Workflow,
    execution: &Execution,
) -> Result<StartOutcome, WorkflowError> {
    START_TRIES
        .run(
            &format!("start of {}", execution.name),
            |_| workflow.start(execution),
            |_| true,
        )
        .await
}

/// QUEUED -> IN_PROGRESS in the merged slot for each of its tasks. A task whose write fails
/// keeps the name of its own slot, which never started: the sweeps treat it as unstarted.
async fn record_in_slot(store: &dyn TaskStore, clock: &dyn Clock, slot: &Slot) {
    let now = clock.now();
    join_all(slot.tasks.iter().map(|task| async move {
        let change = Transition::new(Event::Start, now)
            .in_series(task.series)
            .with_changes(Changes {
                slot: Some(slot.name.clone()),
                ..Changes::default()
            });
        match store.transition(&task.id, &change).await {
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
            Err(error) => {
                tracing::warn!(task_id = %task.id, slot = %slot.name, %error, "could not record the task in its merged slot")
            }
        }
    }))
    .await;
}

/// How long `tasks` attempts take to begin at [`BEGINS_PER_SECOND`].
fn begin_time(tasks: usize) -> Duration {
    Duration::milliseconds(tasks as i64 * 1_000 / BEGINS_PER_SECOND)
}

/// What a slot run did, the slot execution's result.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotSummary {
    /// Run and recorded COMPLETED.
    pub completed: usize,
    /// Run, retried by their policy, and recorded FAILED.
    pub failed: usize,
    /// Handed off to their own execution.
    pub handed_off: usize,
    /// Cancelled, moved on, or already run.
    pub skipped: usize,
    /// Hand-offs the queue did not take: the stuck sweep finds those tasks.
    pub lost_hand_offs: usize,
}

enum SlotOutcome {
    Completed(AttemptReport),
    Failed(AttemptReport),
    Skipped,
    HandOff(QueueMessage),
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
/// [`BEGINS_PER_SECOND`] (a second's slots wake one after another, so together they keep to it),
/// then runs each attempt at its own millisecond, all at once.
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
    // Each hand-off is sent as it occurs (with those ready at the same moment, up to a batch):
    // a slot run that times out later has handed on what it could not finish.
    let (ready, hand_offs) = futures::channel::mpsc::unbounded::<QueueMessage>();
    let runs = run_tasks(store, sender, clock, pacing, inputs, ready);
    let sends = send_as_ready(queue, hand_offs);
    let (outcomes, lost) = join(runs, sends).await;
    if !lost.is_empty() {
        tracing::warn!(tasks = ?lost, "could not hand tasks off; the sweeps will find them");
    }
    let mut summary = SlotSummary {
        lost_hand_offs: lost.len(),
        ..SlotSummary::default()
    };
    let mut handed_off = 0;
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
            SlotOutcome::HandOff(message) => {
                let report = match message {
                    QueueMessage::HandOff(hand_off) => Some(hand_off.result),
                    _ => None,
                };
                handed_off += 1;
                (report, None)
            }
        };
        runs.push(TaskRun {
            id,
            report,
            recorded,
        });
    }
    summary.handed_off = handed_off - summary.lost_hand_offs;
    (summary, runs)
}

/// Sends the hand-offs as they come, those ready at the same moment together (up to a batch);
/// returns the tasks the queue did not take.
async fn send_as_ready(
    queue: &dyn DispatchQueue,
    hand_offs: futures::channel::mpsc::UnboundedReceiver<QueueMessage>,
) -> Vec<String> {
    let mut batches = hand_offs.ready_chunks(SEND_BATCH_SIZE);
    let mut lost = Vec::new();
    while let Some(batch) = batches.next().await {
        lost.extend(send_batch_soon(queue, batch).await);
    }
    lost
}

/// Runs each task at its begin time, all at once, and puts each hand-off on `ready` as it
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
                crate::wait::sleep_until(clock, begin_at).await;
                let id = input.id.clone();
                let outcome = run_one(store, sender, clock, pacing, input).await;
                if let SlotOutcome::HandOff(message) = &outcome {
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
/// slot, or a second slot of the series) is handed off without a report: its own execution,
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
    let hand_off = |report: Option<AttemptReport>| {
        SlotOutcome::HandOff(match report {
            Some(result) => QueueMessage::HandOff(HandOff {
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
            Err(_) => return hand_off(attempt.previous),
        };
        let has_callback = task.as_ref().is_some_and(|task| task.on_failure.is_some());
        if let Some(task) = &task {
            let runnable =
                Event::BeginAttempt.allows(task.task_status) && task.series == input.series;
            let begun_by_another = task.attempt_began_in_series()
                && known_attempts != Some(task.attempts)
                && task.write_token.as_deref() != Some(begin_token.as_str());
            if runnable && begun_by_another {
                return hand_off(None);
            }
        }
        let report =
            match attempt_task(store, sender, clock, pacing, &attempt, task, &begin_token).await {
                Ok(report) => report,
                Err(_) if patience.wait_to_attempt().await => continue,
                Err(_) => return hand_off(attempt.previous),
            };
        known_attempts = Some(report.attempt);
        begin_token = new_write_token();
        let final_outcome = match report.outcome {
            AttemptOutcome::Skipped | AttemptOutcome::Superseded => return SlotOutcome::Skipped,
            // A retry due soon (the default policy's 2, 4 and 8 s) runs here; a later one in the
            // task's own execution, which waits for it at no cost.
            AttemptOutcome::Retry => match report.retry_at {
                Some(at) if at <= patience.last_attempt_at() => {
                    crate::wait::sleep_until(clock, at).await;
                    attempt.previous = Some(report);
                    continue;
                }
                _ => return hand_off(Some(report)),
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
            return hand_off(Some(report));
        }
        if !record_patiently(store, &mut patience, &update).await {
            return hand_off(Some(report));
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
        if record_outcome(store, patience.clock, update).await.is_ok() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{FixedClock, MemoryStore, MemoryWorkflow};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap()
    }

    /// The api's held hand-off of a task in one series.
    fn hand_off(id: &str, due: DateTime<Utc>, series: u32) -> Slot {
        Slot {
            name: format!("slot-of-{id}-{series}"),
            wake_at: Pacing::default().wake_at(due),
            tasks: vec![DispatchMessage {
                id: id.into(),
                timestamp: due,
                series,
            }],
            held: true,
        }
    }

    #[tokio::test]
    async fn merge_keeps_the_highest_series_of_a_task() {
        let store = MemoryStore::new();
        let workflow = MemoryWorkflow::new();
        let clock = FixedClock::new(now());
        let pacing = Pacing::default();
        let due = now() + Duration::seconds(30);
        // A PATCH of its webhook (no new time) moved the task from series 4 to 5 while its
        // hand-off was held: two held messages of one task and one time, the stale one first.
        let mut task = Task::new("patched", due, &pacing, now() - Duration::hours(1));
        task.task_status = TaskStatus::Queued;
        task.series = 5;
        store.put(task);
        let slots = [
            hand_off("patched", due, 4),
            hand_off("patched", due, 5),
            hand_off("other", due + Duration::milliseconds(200), 1),
            hand_off("other", due + Duration::milliseconds(200), 1),
        ];
        let refs: Vec<&Slot> = slots.iter().collect();
        let results = start_slots(&store, &workflow, &clock, &pacing, &refs).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let started = workflow.slots();
        assert_eq!(started.len(), 1, "{started:?}");
        let merged = &started[0];
        let held: Vec<(&str, u32)> = merged
            .tasks
            .iter()
            .map(|task| (task.id.as_str(), task.series))
            .collect();
        assert_eq!(held, [("patched", 5), ("other", 1)]);
        // The current series is recorded running in the merged slot, not left to the sweeps.
        let recorded = store.get("patched").await.unwrap().unwrap();
        assert_eq!(recorded.task_status, TaskStatus::InProgress);
        assert_eq!(recorded.slot.as_deref(), Some(merged.name.as_str()));
    }
}
