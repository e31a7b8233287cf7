//! One file per step a Lambda runs, written against the ports and the rules; here, the one
//! write two steps share (the cron's sweeps and process-sqs-records' start of an ended execution).

use crate::model::status::TaskStatus;
use crate::model::task::Task;
use crate::ports::{StoreError, TaskStore, Transition};
use crate::rules::recovery::Recovery;

pub mod api;
pub mod claim;
pub mod cron;
pub mod execute;
pub mod record;
pub mod run_slot;
pub mod start;

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
