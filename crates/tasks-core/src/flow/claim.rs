//! Claiming due tasks into slots and sending them to the queue: the cron's run and the api's
//! hand-off of a task due soon share this.

use crate::contracts::{DispatchMessage, QueueMessage, Slot};
use crate::model::status::{Event, TaskStatus};
use crate::model::task::{Changes, Task};
use crate::ports::{Clock, DispatchQueue, StoreError, TaskStore, Transition};
use crate::rules::pacing::Pacing;
use crate::rules::slot_plan::{in_time_order, SlotPlanner};
use crate::rules::timing::{send_pause, SEND_BATCH_SIZE, SEND_TRIES};
use crate::support::call_tries::Tries;
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::AddAssign;

/// Claims are independent conditional writes: run many at once.
const CLAIM_CONCURRENCY: usize = 32;
const SEND_CONCURRENCY: usize = 8;
/// Claims of a task before it is left for the next run: a task the API hands off is due now.
const CLAIM_TRIES: Tries = Tries {
    count: 3,
    pause: std::time::Duration::from_millis(100),
};
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchSummary {
    /// Tasks read from the index.
    pub found: usize,
    /// Claimed and accepted by the queue.
    pub dispatched: usize,
    /// Claimed (or cancelled) by someone else first: a normal outcome of concurrent runs.
    pub lost_races: usize,
    /// Failed claims or sends; those tasks are left for a later run.
    pub errors: usize,
}

impl AddAssign for DispatchSummary {
    fn add_assign(&mut self, other: Self) {
        self.found += other.found;
        self.dispatched += other.dispatched;
        self.lost_races += other.lost_races;
        self.errors += other.errors;
    }
}

/// Claims each task with a conditional write into its slot (`SlotPlanner`), sends each slot's
/// claimed tasks as one message, and gives back (SCHEDULED again) those whose message was not
/// accepted so that no claim is stranded. Returns the summary and the tasks now on the queue.
pub async fn dispatch(
    store: &dyn TaskStore,
    queue: &dyn DispatchQueue,
    clock: &dyn Clock,
    planner: &mut SlotPlanner,
    tasks: Vec<Task>,
) -> (DispatchSummary, Vec<Task>) {
    let mut summary = DispatchSummary {
        found: tasks.len(),
        ..DispatchSummary::default()
    };
    let now = clock.now();
    let planned: Vec<(Slot, Task)> = planner
        .plan(tasks)
        .into_iter()
        .flat_map(|(slot, tasks)| tasks.into_iter().map(move |task| (slot.clone(), task)))
        .collect();
    let claims: Vec<(Slot, Task, Result<Task, StoreError>)> = stream::iter(planned)
        .map(|(slot, task)| async move {
            let change = Transition::new(Event::Claim, now)
                .if_starting_by(task.start_execution_at)
                .with_changes(Changes {
                    slot: Some(slot.name.clone()),
                    ..Changes::default()
                });
            let result = CLAIM_TRIES
                .run(
                    &format!("claim of {}", task.id),
                    |_| claim(store, &task.id, &change),
                    |error| matches!(error, StoreError::Unavailable { .. }),
                )
                .await;
            (slot, task, result)
        })
        .buffer_unordered(CLAIM_CONCURRENCY)
        .collect()
        .await;

    let mut slots: BTreeMap<String, (Slot, Vec<Task>)> = BTreeMap::new();
    let mut own: Vec<(QueueMessage, Vec<Task>)> = Vec::new();
    for (slot, read, result) in claims {
        let id = read.id;
        match result {
            // The index lags the table: a task moved to another time since it was read belongs
            // to no slot of this run, and runs in its own execution at its new time.
            Ok(task) if task.timestamp != read.timestamp => {
                own.push((QueueMessage::Task(DispatchMessage::from(&task)), vec![task]));
            }
            Ok(task) => slots
                .entry(slot.name.clone())
                .or_insert_with(|| (slot, Vec::new()))
                .1
                .push(task),
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {
                tracing::debug!(task_id = %id, "claim lost to a concurrent change");
                summary.lost_races += 1;
            }
            Err(error) => {
                tracing::warn!(task_id = %id, %error, "claim failed");
                summary.errors += 1;
            }
        }
    }
    let messages: Vec<(QueueMessage, Vec<Task>)> = slots
        .into_values()
        .map(|(mut slot, mut claimed)| {
            in_time_order(&mut claimed);
            slot.tasks = claimed.iter().map(DispatchMessage::from).collect();
            (QueueMessage::Slot(slot), claimed)
        })
        .chain(own)
        .collect();
    let claimed_count: usize = messages.iter().map(|(_, tasks)| tasks.len()).sum();
    let sent = send(store, queue, clock, messages).await;
    summary.errors += claimed_count - sent.len();
    summary.dispatched = sent.len();
    (summary, sent)
}

/// The api's hand-off of a task it created or changed: a SCHEDULED task due before the next cron
/// run could claim it in time (`Pacing::hands_off_at_once`) is claimed and sent at once, in a
/// slot of its own held to be merged (`SlotPlanner::for_hand_off`). Returns the task as it now
/// stands: QUEUED, or as it was when it is not due yet or the hand-off failed (the cron claims it).
pub async fn hand_off_if_due(
    store: &dyn TaskStore,
    queue: &dyn DispatchQueue,
    clock: &dyn Clock,
    pacing: &Pacing,
    now: DateTime<Utc>,
    task: Task,
) -> Task {
    if task.task_status != TaskStatus::Scheduled || !pacing.hands_off_at_once(task.timestamp, now) {
        return task;
    }
    let planner = &mut SlotPlanner::for_hand_off(pacing, now);
    let (_, mut dispatched) = dispatch(store, queue, clock, planner, vec![task.clone()]).await;
    dispatched.pop().unwrap_or(task)
}

/// One try of a claim. A claim whose answer was an error may have been applied (its answer
/// lost): the task, read again, says. A claim found applied (the task carries its write) goes
/// into its slot like any other; one not applied (or not readable) keeps the error, and is tried
/// again with the same write, which the store settles as ours if an earlier try was applied.
async fn claim(store: &dyn TaskStore, id: &str, change: &Transition) -> Result<Task, StoreError> {
    match store.transition(id, change).await {
        Err(StoreError::Unavailable { .. }) => match store.get(id).await? {
            Some(task) if change.wrote(&task) => Ok(task),
            _ => Err(StoreError::Unavailable {
                message: "the claim failed".into(),
                request_id: None,
            }),
        },
        result => result,
    }
}

/// Sends requeued (QUEUED) tasks, each for its own execution, in batches of ten, and gives
/// back (SCHEDULED again) those whose message was not accepted so that no claim is stranded.
/// Returns the tasks now on the queue.
pub async fn send_claimed(
    store: &dyn TaskStore,
    queue: &dyn DispatchQueue,
    clock: &dyn Clock,
    claimed: Vec<Task>,
) -> Vec<Task> {
    let messages = claimed
        .into_iter()
        .map(|task| (QueueMessage::Task(DispatchMessage::from(&task)), vec![task]))
        .collect();
    send(store, queue, clock, messages).await
}

/// Sends messages in batches of ten; the tasks of a message not accepted are given back.
async fn send(
    store: &dyn TaskStore,
    queue: &dyn DispatchQueue,
    clock: &dyn Clock,
    messages: Vec<(QueueMessage, Vec<Task>)>,
) -> Vec<Task> {
    let (messages, claimed): (Vec<QueueMessage>, Vec<Vec<Task>>) = messages.into_iter().unzip();
    let mut claimed: Vec<Task> = claimed.into_iter().flatten().collect();
    let batches: Vec<Vec<QueueMessage>> = messages
        .chunks(SEND_BATCH_SIZE)
        .map(<[QueueMessage]>::to_vec)
        .collect();
    let failed: BTreeSet<String> = stream::iter(batches)
        .map(|batch| send_batch_soon(queue, batch))
        .buffer_unordered(SEND_CONCURRENCY)
        .flat_map(stream::iter)
        .collect()
        .await;

    let now = clock.now();
    for task in claimed.iter().filter(|task| failed.contains(&task.id)) {
        let change = Transition::new(Event::Unclaim, now).in_series(task.series);
        if let Err(error) = store.transition(&task.id, &change).await {
            tracing::warn!(task_id = %task.id, %error, "could not give back an unsent claim; the stale-claim sweep will resend it");
        }
    }
    claimed.retain(|task| !failed.contains(&task.id));
    for task in &claimed {
        tracing::info!(task_id = %task.id, series = task.series, slot = task.slot, "task queued");
    }
    claimed
}

/// Sends a batch, and its refused messages again twice after a short pause: a slot is many
/// tasks, and one given back waits for the next cron run. Returns the tasks of the messages
/// still refused. A message sent twice (its answer lost) starts its execution once.
pub(crate) async fn send_batch_soon(
    queue: &dyn DispatchQueue,
    mut batch: Vec<QueueMessage>,
) -> Vec<String> {
    for tries in 1..=SEND_TRIES {
        let refused: BTreeSet<String> = match queue.send_batch(&batch).await {
            Ok(refused) => refused.into_iter().collect(),
            Err(error) => {
                tracing::warn!(%error, messages = batch.len(), tries, "send to the queue failed");
                batch
                    .iter()
                    .flat_map(|message| message.task_ids())
                    .map(str::to_string)
                    .collect()
            }
        };
        batch.retain(|message| message.task_ids().iter().any(|id| refused.contains(*id)));
        if batch.is_empty() || tries == SEND_TRIES {
            break;
        }
        tokio::time::sleep(send_pause(tries)).await;
    }
    batch
        .iter()
        .flat_map(|message| message.task_ids())
        .map(str::to_string)
        .collect()
}
