//! Handing due tasks to the queue: the cron's run and the API's hand-off share this.

use crate::ports::{Clock, DispatchQueue, StatusQuery, StoreError, TaskStore, Transition};
use crate::schedule::Schedule;
use crate::status::{Event, TaskStatus};
use crate::task::{DispatchMessage, Task};
use futures::{stream, StreamExt};
use serde::Serialize;
use std::collections::HashSet;
use std::ops::AddAssign;

/// SQS takes at most ten messages per SendMessageBatch.
pub const SEND_BATCH_SIZE: usize = 10;
/// Claims are independent conditional writes: run many at once.
const CLAIM_CONCURRENCY: usize = 32;
const SEND_CONCURRENCY: usize = 8;
const PAGE_SIZE: u32 = 500;

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

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronSummary {
    /// SCHEDULED tasks whose start time has come.
    pub due: DispatchSummary,
    /// QUEUED tasks whose execution did not start within the claim grace period, sent again.
    pub stale: DispatchSummary,
}

/// Claims each task with a conditional write, sends the claimed ones in batches of ten, and gives
/// back (SCHEDULED again) those whose message was not accepted so that no claim is stranded.
/// Returns the summary and the tasks now on the queue.
pub async fn dispatch(
    store: &dyn TaskStore,
    queue: &dyn DispatchQueue,
    clock: &dyn Clock,
    tasks: Vec<Task>,
    event: Event,
) -> (DispatchSummary, Vec<Task>) {
    let mut summary = DispatchSummary {
        found: tasks.len(),
        ..DispatchSummary::default()
    };
    let now = clock.now();
    let claims: Vec<(String, Result<Task, StoreError>)> = stream::iter(tasks)
        .map(|task| async move {
            let mut change = Transition::new(event, now);
            if event == Event::Redispatch {
                change = change.if_last_updated_at(task.last_updated_at);
            }
            let result = store.transition(&task.id, &change).await;
            (task.id, result)
        })
        .buffer_unordered(CLAIM_CONCURRENCY)
        .collect()
        .await;

    let mut claimed = Vec::with_capacity(claims.len());
    for (id, result) in claims {
        match result {
            Ok(task) => claimed.push(task),
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

    let batches: Vec<Vec<DispatchMessage>> = claimed
        .chunks(SEND_BATCH_SIZE)
        .map(|batch| batch.iter().map(DispatchMessage::from).collect())
        .collect();
    let failed: HashSet<String> = stream::iter(batches)
        .map(|batch| async move {
            queue.send_batch(&batch).await.unwrap_or_else(|error| {
                tracing::warn!(%error, tasks = batch.len(), "send to the queue failed");
                batch.into_iter().map(|message| message.id).collect()
            })
        })
        .buffer_unordered(SEND_CONCURRENCY)
        .flat_map(stream::iter)
        .collect()
        .await;

    for id in &failed {
        if let Err(error) = store
            .transition(id, &Transition::new(Event::Unclaim, now))
            .await
        {
            tracing::warn!(task_id = %id, %error, "could not give back an unsent claim; the stale-claim sweep will resend it");
        }
    }
    summary.errors += failed.len();
    claimed.retain(|task| !failed.contains(&task.id));
    for task in &claimed {
        tracing::info!(task_id = %task.id, "task queued");
    }
    summary.dispatched = claimed.len();
    (summary, claimed)
}

/// One cron run: dispatch every due SCHEDULED task, then resend claims that went stale.
pub async fn run_cron(
    store: &dyn TaskStore,
    queue: &dyn DispatchQueue,
    clock: &dyn Clock,
    schedule: &Schedule,
) -> Result<CronSummary, StoreError> {
    let now = clock.now();
    let mut due = StatusQuery::new(TaskStatus::Scheduled, PAGE_SIZE);
    due.due_by = Some(now.timestamp());
    let stale_before = schedule.stale_claim_before(now);
    let mut stale = StatusQuery::new(TaskStatus::Queued, PAGE_SIZE);
    stale.due_by = Some(stale_before.timestamp());
    stale.updated_before = Some(stale_before);
    Ok(CronSummary {
        due: dispatch_all(store, queue, clock, due, Event::Claim).await?,
        stale: dispatch_all(store, queue, clock, stale, Event::Redispatch).await?,
    })
}

async fn dispatch_all(
    store: &dyn TaskStore,
    queue: &dyn DispatchQueue,
    clock: &dyn Clock,
    mut query: StatusQuery,
    event: Event,
) -> Result<DispatchSummary, StoreError> {
    let mut summary = DispatchSummary::default();
    loop {
        let page = store.query(&query).await?;
        summary += dispatch(store, queue, clock, page.tasks, event).await.0;
        match page.next_token {
            Some(token) => query.page_token = Some(token),
            None => return Ok(summary),
        }
    }
}
