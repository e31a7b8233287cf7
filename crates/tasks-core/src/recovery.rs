//! Tasks whose execution ended, or never started, while the task still waits for it. Step
//! Functions keeps an execution's name for 90 days after it ends, so "the name is taken" says
//! nothing by itself: the workflow engine is asked, and the task's series decides what is safe.

use crate::ports::{Clock, StoreError, TaskStore, Transition};
use crate::status::{Event, TaskStatus};
use crate::task::Task;

/// A task is re-sent or restarted at most this many times; then it ends FAILED with the reason,
/// so a task whose execution cannot be started (or keeps ending early) is never re-sent forever.
pub const MAX_REDISPATCHES: u32 = 5;

#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// Back to QUEUED (a new series for a restart): send it again.
    Requeued(Task),
    /// Recorded FAILED with the reason.
    Failed(Task),
    /// Someone else changed the task first (its execution recorded an outcome, a cancel, another
    /// sweep): nothing to do.
    LostRace,
}

/// The execution that had `task`'s current series (`execution`: its own, or its slot's) has
/// ended (`ended` says how) without the task reaching a final status. If no attempt began in this series nothing can have been delivered,
/// so the task runs again in a new series (bounded by [`MAX_REDISPATCHES`]). If an attempt began,
/// the receiver may have the request: running again could deliver twice, so the task is recorded
/// FAILED with the reason instead.
pub async fn recover_ended_execution(
    store: &dyn TaskStore,
    clock: &dyn Clock,
    task: &Task,
    execution: &str,
    ended: &str,
) -> Result<Recovery, StoreError> {
    let now = clock.now();
    let name = execution;
    let change = if task.attempt_began_in_series() {
        Transition::new(Event::Fail, now).with_error(format!(
            "execution {name} ended ({ended}) without recording the outcome of attempt {}; \
             the receiver may have received it",
            task.attempts
        ))
    } else if task.redispatches >= MAX_REDISPATCHES {
        Transition::new(Event::Fail, now).with_error(format!(
            "no execution ran the task after {} tries (the last, {name}, ended: {ended})",
            task.redispatches + 1
        ))
    } else {
        Transition::new(Event::Restart, now)
    };
    transition_read_task(store, task, change).await
}

/// A QUEUED task whose message or start was lost (no execution of its series exists): send it
/// again, or, past [`MAX_REDISPATCHES`], record FAILED.
pub fn resend_or_give_up(task: &Task, clock: &dyn Clock) -> Transition {
    let now = clock.now();
    if task.redispatches >= MAX_REDISPATCHES {
        Transition::new(Event::Fail, now).with_error(format!(
            "the task's execution never started after {} sends",
            task.redispatches + 1
        ))
    } else {
        Transition::new(Event::Redispatch, now)
    }
}

/// Applies `change` only if the task is exactly as it was read (same series, untouched since).
pub async fn transition_read_task(
    store: &dyn TaskStore,
    task: &Task,
    change: Transition,
) -> Result<Recovery, StoreError> {
    let change = change
        .in_series(task.series)
        .if_last_updated_at(task.last_updated_at);
    match store.transition(&task.id, &change).await {
        Ok(task) if task.task_status == TaskStatus::Failed => Ok(Recovery::Failed(task)),
        Ok(task) => Ok(Recovery::Requeued(task)),
        Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(Recovery::LostRace),
        Err(error) => Err(error),
    }
}
