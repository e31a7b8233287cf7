//! update-status: records the outcome of a task's execution (its report, or the error the state
//! machine caught).

use crate::contracts::{AttemptOutcome, StatusUpdate};
use crate::model::status::{Event, TaskStatus};
use crate::model::task::AttemptRecord;
use crate::ports::{Clock, StoreError, TaskStore, Transition};

/// `record`, unless the task's history has its attempt already.
async fn unrecorded(
    store: &dyn TaskStore,
    id: &str,
    record: Option<AttemptRecord>,
) -> Result<Option<AttemptRecord>, StoreError> {
    let Some(record) = record else {
        return Ok(None);
    };
    let recorded = store.get(id).await?.is_some_and(|task| {
        task.attempt_history
            .iter()
            .any(|done| done.attempt == record.attempt)
    });
    Ok((!recorded).then_some(record))
}

/// update-status: IN_PROGRESS -> COMPLETED or FAILED. Idempotent: repeating an update that was
/// already recorded, or one for a task that was cancelled meanwhile, succeeds without a change.
/// Returns the task's status afterwards.
pub async fn update_status(
    store: &dyn TaskStore,
    clock: &dyn Clock,
    update: &StatusUpdate,
) -> Result<TaskStatus, StoreError> {
    let now = clock.now();
    let mut change = match (&update.error, &update.result) {
        // An execution's error (a Lambda crash or timeout, a store outage past every retry)
        // ends the task only if its attempt began: otherwise nothing was sent, and the
        // sweeps run it again in a new series.
        (Some(error), _) => Transition::new(Event::Fail, now)
            .with_error(error.describe())
            .if_attempt_began(),
        (None, Some(report))
            if matches!(
                report.outcome,
                AttemptOutcome::Skipped | AttemptOutcome::Superseded
            ) =>
        {
            return Ok(report.task_status.unwrap_or(TaskStatus::Cancelled))
        }
        // execute-task recorded the delivery itself.
        (None, Some(report)) if report.recorded => return Ok(TaskStatus::Completed),
        (None, Some(report)) if report.outcome == AttemptOutcome::Failed => {
            Transition::new(Event::Fail, now).with_error(
                report
                    .error
                    .clone()
                    .unwrap_or_else(|| "the attempt failed".into()),
            )
        }
        (None, Some(report)) if report.outcome == AttemptOutcome::Retry => {
            Transition::new(Event::Fail, now)
                .with_error("the workflow recorded a retry as the outcome")
        }
        (None, Some(report)) => {
            let change = Transition::new(Event::Complete, now);
            match (report.executed_at, report.lateness_ms) {
                (Some(at), Some(lateness)) => change.executed(at, lateness),
                _ => change,
            }
        }
        (None, None) => Transition::new(Event::Fail, now)
            .with_error("the workflow reported neither a result nor an error"),
    }
    .in_series(update.input.series);
    change.changes.record_attempt = update.result.as_ref().and_then(|r| r.record.clone());
    if update.error.is_some() {
        // After a Catch, the result is the report of the attempt before the one that failed,
        // whose record the failed run's begin may have written already: one record an attempt.
        change.changes.record_attempt =
            unrecorded(store, &update.input.id, change.changes.record_attempt).await?;
    }
    if change.event == Event::Fail && update.error.is_none() {
        if let Some(at) = update.result.as_ref().and_then(|r| r.executed_at) {
            let lateness = update
                .result
                .as_ref()
                .and_then(|r| r.lateness_ms)
                .unwrap_or(0);
            change = change.executed(at, lateness);
        }
    }
    match store.transition(&update.input.id, &change).await {
        Ok(task) => Ok(task.task_status),
        Err(StoreError::Conflict { current }) => {
            let in_series = current.series == update.input.series;
            if in_series && !current.task_status.is_terminal() && !current.attempt_began_in_series()
            {
                tracing::warn!(
                    task_id = %current.id,
                    status = %current.task_status,
                    "the execution failed before any attempt: left to the sweeps to run again"
                );
            } else if current.task_status != change.event.to() && in_series {
                tracing::warn!(
                    task_id = %current.id,
                    status = %current.task_status,
                    wanted = %change.event.to(),
                    "outcome not recorded: the task had already moved on"
                );
            }
            Ok(current.task_status)
        }
        Err(error) => Err(error),
    }
}
