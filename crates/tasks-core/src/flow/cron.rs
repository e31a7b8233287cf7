//! The cron's run: claim every due task into slots (with the look-ahead's horizon), then sweep
//! the tasks that wait too long for their execution or its outcome.

use crate::flow::claim::{dispatch, send_claimed, DispatchSummary};
use crate::flow::transition_read_task;
use crate::model::status::TaskStatus;
use crate::model::task::Task;
use crate::ports::{
    Clock, DispatchQueue, ExecutionState, Page, StatusQuery, StoreError, TaskStore, Workflow,
};
use crate::rules::look_ahead;
use crate::rules::pacing::Pacing;
use crate::rules::recovery::{remedy, Recovery, Remedy};
use crate::rules::slot_plan::SlotPlanner;
use crate::support::call_tries::Tries;
use futures::{stream, StreamExt};
use serde::Serialize;
use std::ops::AddAssign;

/// Reads of an index page before the run fails: a run that stops at a failed page leaves the
/// rest of a hotspot for the next run, a minute later.
const READ_TRIES: Tries = Tries {
    count: 3,
    pause: std::time::Duration::from_millis(200),
};

/// Each waiting task costs a DescribeExecution and a conditional write.
const SWEEP_CONCURRENCY: usize = 8;

const PAGE_SIZE: u32 = 500;

/// The look-ahead's counts (one per coming minute) run a few at a time.
const COUNT_CONCURRENCY: usize = 4;

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

    /// The execution that has the task: its own (a requeue, or a hand-over from its slot) or,
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
