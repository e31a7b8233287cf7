//! process-sqs-records: starts the execution each queue message asks for: a slot's (the api's
//! hand-offs of one second merged into a few), or a task's own.

use crate::contracts::{
    AttemptOutcome, AttemptReport, DispatchMessage, ExecutionInput, QueueMessage, Slot,
    StatusUpdate,
};
use crate::flow::record::update_status;
use crate::flow::transition_read_task;
use crate::model::status::{Event, TaskStatus};
use crate::model::task::{Changes, NextAttempt, Task};
use crate::ports::{
    Clock, Execution, StartOutcome, StoreError, TaskStore, Transition, Workflow, WorkflowError,
};
use crate::rules::pacing::Pacing;
use crate::rules::recovery::{after_ended_execution, Recovery};
use crate::rules::slot_plan::{begin_time, digest_of, in_time_order, SLOT_SIZE};
use crate::support::call_tries::Tries;
use futures::future::{join, join_all};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartReport {
    Started,
    /// A repeated delivery: the execution of the task's series is running already.
    AlreadyStarted,
    /// A slot's report reached a task whose execution exists already: it was applied (see
    /// `hand_over`) instead of being dropped.
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
            update_status(store, clock, &StatusUpdate::of_report(input, report)).await?;
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

/// Starts of a slot's execution before its message goes back to the queue.
const START_TRIES: Tries = Tries {
    count: 3,
    pause: std::time::Duration::from_millis(500),
};

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
                QueueMessage::HandOver(hand_over) => (&hand_over.task, Some(&hand_over.result)),
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
/// [`HAND_OFF_WITHIN`]: crate::rules::pacing::HAND_OFF_WITHIN
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::memory::{FixedClock, MemoryStore, MemoryWorkflow};
    use chrono::TimeZone;
    use chrono::{DateTime, Duration, Utc};

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
        let mut task = Task::new("patched", due, pacing.lead_time, now() - Duration::hours(1));
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
