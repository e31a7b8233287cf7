//! Handing due tasks to the queue: the cron's run and the API's hand-off share this.

use crate::call_tries::Tries;
use crate::look_ahead;
use crate::pacing::Pacing;
use crate::ports::{
    Changes, Clock, DispatchQueue, ExecutionState, Page, StatusQuery, StoreError, TaskStore,
    Transition, Workflow,
};
use crate::recovery::{remedy, transition_read_task, Recovery, Remedy};
use crate::slot::{in_time_order, QueueMessage, Slot, SlotPlanner};
use crate::status::{Event, TaskStatus};
use crate::task::{DispatchMessage, Task};
use crate::timing::STORE_CALL_TIMEOUT;
use chrono::{DateTime, Duration, Utc};
use futures::{stream, StreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::AddAssign;

/// SQS takes at most ten messages per SendMessageBatch.
pub const SEND_BATCH_SIZE: usize = 10;
/// Claims are independent conditional writes: run many at once.
const CLAIM_CONCURRENCY: usize = 32;
const SEND_CONCURRENCY: usize = 8;
/// Reads of an index page before the run fails: a run that stops at a failed page leaves the
/// rest of a hotspot for the next run, a minute later.
const READ_TRIES: Tries = Tries {
    count: 3,
    pause: std::time::Duration::from_millis(200),
};
/// Claims of a task before it is left for the next run: a task the API hands off is due now.
const CLAIM_TRIES: Tries = Tries {
    count: 3,
    pause: std::time::Duration::from_millis(100),
};
/// Sends of a batch before its refused claims are given back.
const SEND_TRIES: i32 = 3;
/// Each waiting task costs a DescribeExecution and a conditional write.
const SWEEP_CONCURRENCY: usize = 8;
const PAGE_SIZE: u32 = 500;
/// The look-ahead's counts (one per coming minute) run a few at a time.
const COUNT_CONCURRENCY: usize = 4;

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

/// What a sweep over waiting tasks did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverySummary {
    pub found: usize,
    /// Sent to the queue again (same series when no execution started; a new series when the
    /// execution ended before any attempt).
    pub requeued: usize,
    /// Found with an execution running whose start was not recorded: now IN_PROGRESS.
    pub resumed: usize,
    /// Recorded FAILED with the reason (an attempt may have been delivered, or too many tries).
    pub failed: usize,
    /// Still running (for example in a retry): left alone.
    pub running: usize,
    /// Of those running, the ones past every deadline their retry policy allows
    /// ([`Pacing::overdue_at`]): stuck, though left alone too.
    pub overdue: usize,
    pub lost_races: usize,
    pub errors: usize,
}

impl AddAssign for RecoverySummary {
    fn add_assign(&mut self, other: Self) {
        self.found += other.found;
        self.requeued += other.requeued;
        self.resumed += other.resumed;
        self.failed += other.failed;
        self.running += other.running;
        self.overdue += other.overdue;
        self.lost_races += other.lost_races;
        self.errors += other.errors;
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronSummary {
    /// How far past now this run claimed (seconds of `startExecutionAt`): 0 unless a hotspot is
    /// coming (`look_ahead`).
    pub look_ahead_seconds: i64,
    /// SCHEDULED tasks whose start time has come (or, looking ahead, is coming).
    pub due: DispatchSummary,
    /// QUEUED tasks whose execution did not start within the claim grace period.
    pub stale: RecoverySummary,
    /// IN_PROGRESS tasks past their time plus the stuck margin.
    pub stuck: RecoverySummary,
    /// Index items that are not valid tasks, skipped.
    pub undecodable: usize,
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

/// The pause before the `tries`-th send of a batch's refused messages.
fn send_pause(tries: i32) -> std::time::Duration {
    std::time::Duration::from_millis(200 * tries as u64)
}

/// The longest [`send_batch_soon`] takes: every send runs to the SDK's call timeout, with the
/// pauses between them.
pub fn send_batch_worst_case() -> Duration {
    let pauses = (1..SEND_TRIES)
        .map(|tries| Duration::from_std(send_pause(tries)).unwrap_or_default())
        .fold(Duration::zero(), |sum, pause| sum + pause);
    STORE_CALL_TIMEOUT * SEND_TRIES + pauses
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

/// One cron run: dispatch every due SCHEDULED task, then look after the tasks that wait too
/// long for their execution (QUEUED past the claim grace) or for its outcome (IN_PROGRESS past
/// their time plus `stuck_after`).
pub async fn run_cron(
    store: &dyn TaskStore,
    queue: &dyn DispatchQueue,
    workflow: &dyn Workflow,
    clock: &dyn Clock,
    pacing: &Pacing,
) -> Result<CronSummary, StoreError> {
    let now = clock.now();
    let claim_through = claim_horizon(store, pacing, now.timestamp()).await;
    let mut due = StatusQuery::new(TaskStatus::Scheduled, PAGE_SIZE);
    due.due_by = Some(claim_through);
    let stale_before = pacing.stale_claim_before(now);
    let mut stale = StatusQuery::new(TaskStatus::Queued, PAGE_SIZE);
    stale.due_by = Some(stale_before.timestamp());
    stale.updated_before = Some(stale_before);
    let mut stuck = StatusQuery::new(TaskStatus::InProgress, PAGE_SIZE);
    stuck.due_by = Some(pacing.stuck_start_execution_at(now));

    let mut summary = CronSummary {
        look_ahead_seconds: claim_through - now.timestamp(),
        ..CronSummary::default()
    };
    let mut pages = Pages::new(store, due);
    let mut planner = SlotPlanner::new(pacing, now);
    while let Some(tasks) = pages.next(&mut summary.undecodable).await? {
        summary.due += dispatch(store, queue, clock, &mut planner, tasks).await.0;
    }
    let sweep = Sweep {
        store,
        queue,
        workflow,
        clock,
        pacing,
    };
    let mut pages = Pages::new(store, stale);
    while let Some(tasks) = pages.next(&mut summary.undecodable).await? {
        summary.stale += sweep.run(tasks).await;
    }
    let mut pages = Pages::new(store, stuck);
    while let Some(tasks) = pages.next(&mut summary.undecodable).await? {
        summary.stuck += sweep.run(tasks).await;
    }
    Ok(summary)
}

/// The latest `startExecutionAt` this run claims: the SCHEDULED tasks of each coming minute are
/// counted, and a hotspot is claimed early enough to start its executions in time. A failed
/// count claims within the lead time only, as without look-ahead.
async fn claim_horizon(store: &dyn TaskStore, pacing: &Pacing, now: i64) -> i64 {
    if pacing.start_rate == 0 {
        return now;
    }
    let counts: Result<Vec<u64>, StoreError> = stream::iter(look_ahead::buckets(now))
        .map(|(from, to)| store.count(TaskStatus::Scheduled, from, to))
        .buffered(COUNT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect();
    match counts {
        Ok(counts) => {
            let horizon = look_ahead::claim_horizon(now, &counts, pacing);
            if horizon > now {
                let coming: u64 = counts.iter().sum();
                tracing::info!(
                    coming,
                    seconds = horizon - now,
                    "claiming ahead of a hotspot"
                );
            }
            horizon
        }
        Err(error) => {
            tracing::warn!(%error, "could not count the coming tasks; claiming within the lead time");
            now
        }
    }
}

/// Reads a query page by page.
struct Pages<'a> {
    store: &'a dyn TaskStore,
    query: StatusQuery,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(store: &'a dyn TaskStore, query: StatusQuery) -> Self {
        Pages {
            store,
            query,
            done: false,
        }
    }

    async fn read(&self) -> Result<Page, StoreError> {
        READ_TRIES
            .run(
                &format!("read of a {} index page", self.query.status),
                |_| self.store.query(&self.query),
                |_| true,
            )
            .await
    }

    /// The next page's tasks; the ids of items that are not valid tasks are added to
    /// `undecodable` (and logged) instead of failing the run.
    async fn next(&mut self, undecodable: &mut usize) -> Result<Option<Vec<Task>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self.read().await?;
        for id in &page.undecodable {
            tracing::error!(task_id = %id, status = %self.query.status, "skipped an item that is not a valid task");
        }
        *undecodable += page.undecodable.len();
        match page.next_token {
            Some(token) => self.query.page_token = Some(token),
            None => self.done = true,
        }
        Ok(Some(page.tasks))
    }
}

/// Tasks that wait too long: the workflow engine is asked about each one's execution.
struct Sweep<'a> {
    store: &'a dyn TaskStore,
    queue: &'a dyn DispatchQueue,
    workflow: &'a dyn Workflow,
    clock: &'a dyn Clock,
    pacing: &'a Pacing,
}

enum Found {
    Requeued(Box<Task>),
    Failed,
    Resumed,
    /// Left alone; `overdue`: past every deadline its policy allows.
    Running {
        overdue: bool,
    },
    LostRace,
}

impl Sweep<'_> {
    async fn run(&self, tasks: Vec<Task>) -> RecoverySummary {
        let mut summary = RecoverySummary {
            found: tasks.len(),
            ..RecoverySummary::default()
        };
        let results: Vec<(String, Result<Found, String>)> = stream::iter(tasks)
            .map(|task| async move {
                let result = self.look_after(&task).await;
                (task.id, result)
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        let mut requeued = Vec::new();
        for (id, result) in results {
            match result {
                Ok(Found::Requeued(task)) => requeued.push(*task),
                Ok(Found::Failed) => summary.failed += 1,
                Ok(Found::Resumed) => summary.resumed += 1,
                Ok(Found::Running { overdue }) => {
                    summary.running += 1;
                    summary.overdue += usize::from(overdue);
                }
                Ok(Found::LostRace) => summary.lost_races += 1,
                Err(error) => {
                    tracing::warn!(task_id = %id, %error, "could not look after a waiting task; the next run tries again");
                    summary.errors += 1;
                }
            }
        }
        let attempted = requeued.len();
        summary.requeued = send_claimed(self.store, self.queue, self.clock, requeued)
            .await
            .len();
        summary.errors += attempted - summary.requeued;
        summary
    }

    /// The execution that has the task: its own (a requeue, or a hand-off from its slot) or,
    /// when it has none, its slot's.
    async fn execution_of(&self, task: &Task) -> Result<(String, ExecutionState), String> {
        let name = task.execution_name();
        let state = self
            .workflow
            .state(&name)
            .await
            .map_err(|e| e.to_string())?;
        match (&state, &task.slot) {
            (ExecutionState::Missing, Some(slot)) => {
                let state = self.workflow.state(slot).await.map_err(|e| e.to_string())?;
                Ok((slot.clone(), state))
            }
            _ => Ok((name, state)),
        }
    }

    async fn look_after(&self, task: &Task) -> Result<Found, String> {
        let (name, state) = self.execution_of(task).await?;
        let change = match remedy(task, &name, &state, self.pacing, self.clock.now()) {
            Remedy::LeaveRunning { overdue } => return Ok(Found::Running { overdue }),
            Remedy::Change(change) => change,
        };
        let recovery = transition_read_task(self.store, task, *change)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(task_id = %task.id, execution = %name, ?state, ?recovery, "looked after a waiting task");
        Ok(match recovery {
            Recovery::Requeued(task) if task.task_status == TaskStatus::Queued => {
                Found::Requeued(Box::new(task))
            }
            Recovery::Requeued(_) => Found::Resumed,
            Recovery::Failed(_) => Found::Failed,
            Recovery::LostRace => Found::LostRace,
        })
    }
}
