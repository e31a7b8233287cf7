//! Tasks whose execution ended, or never started, while the task still waits for it. Step
//! Functions keeps an execution's name for 90 days after it ends, so "the name is taken" says
//! nothing by itself: the workflow engine is asked, and the task's series decides what is safe.

use crate::model::status::{Event, TaskStatus};
use crate::model::task::Task;
use crate::ports::{ExecutionState, Transition};
use crate::rules::pacing::Pacing;
use chrono::{DateTime, Utc};

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

/// What to do with a task that waits for an execution, given the state of the execution that
/// has it (`execution`: its own, or its slot's).
#[derive(Debug, Clone, PartialEq)]
pub enum Remedy {
    /// The execution runs the task: leave it. `overdue`: past every deadline the task's retry
    /// policy allows ([`Pacing::overdue_at`]), which the stuck alarm counts.
    LeaveRunning { overdue: bool },
    /// Write this change, if the task is still as it was read (`flow::transition_read_task`).
    Change(Box<Transition>),
}

/// The sweeps' table: a task the cron found waiting too long (QUEUED past the claim grace, or
/// IN_PROGRESS past its time and the stuck margin), the state of its execution, and what to do.
pub fn remedy(
    task: &Task,
    execution: &str,
    state: &ExecutionState,
    pacing: &Pacing,
    now: DateTime<Utc>,
) -> Remedy {
    match (state, task.task_status) {
        (ExecutionState::Running, TaskStatus::InProgress) => Remedy::LeaveRunning {
            overdue: now > pacing.overdue_at(task.timestamp, &task.retry_policy()),
        },
        // The execution runs but its start was never recorded.
        (ExecutionState::Running, _) => {
            Remedy::Change(Box::new(Transition::new(Event::Start, now)))
        }
        (ExecutionState::Missing, TaskStatus::Queued) => {
            Remedy::Change(Box::new(resend_or_give_up(task, now)))
        }
        (ExecutionState::Ended(_) | ExecutionState::Missing, _) => {
            Remedy::Change(Box::new(after_ended_execution(task, execution, state, now)))
        }
    }
}

/// The execution that had `task`'s current series (`execution`: its own, or its slot's) has
/// ended, or is missing, without the task reaching a final status. If no attempt began in this
/// series nothing can have been delivered, so the task runs again in a new series (bounded by
/// [`MAX_REDISPATCHES`]). If an attempt began, the receiver may have the request: running again
/// could deliver twice, so the task is recorded FAILED with the reason instead.
pub fn after_ended_execution(
    task: &Task,
    execution: &str,
    state: &ExecutionState,
    now: DateTime<Utc>,
) -> Transition {
    let name = execution;
    let ended = match state {
        ExecutionState::Ended(status) => status.as_str(),
        ExecutionState::Missing => "never started",
        ExecutionState::Running => "running again",
    };
    if task.attempt_began_in_series() {
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
    }
}

/// A QUEUED task whose message or start was lost (no execution of its series exists): send it
/// again, or, past [`MAX_REDISPATCHES`], record FAILED.
pub fn resend_or_give_up(task: &Task, now: DateTime<Utc>) -> Transition {
    if task.redispatches >= MAX_REDISPATCHES {
        Transition::new(Event::Fail, now).with_error(format!(
            "the task's execution never started after {} sends",
            task.redispatches + 1
        ))
    } else {
        Transition::new(Event::Redispatch, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::retry_policy::RetryPolicy;
    use chrono::Duration;

    /// A task of series 1 due an hour ago, in `status`, with `attempts` begun in this series.
    fn waiting(status: TaskStatus, attempts: u32) -> Task {
        let now = Utc::now();
        Task {
            task_status: status,
            series: 1,
            attempts,
            attempt_series: if attempts > 0 { 1 } else { 0 },
            ..Task::new(
                "t",
                now - Duration::hours(1),
                Pacing::default().lead_time,
                now,
            )
        }
    }

    /// The event and the error of a remedy's change (`None`: left running).
    fn decided(task: &Task, state: ExecutionState) -> Option<(Event, Option<String>)> {
        match remedy(task, "t-1", &state, &Pacing::default(), Utc::now()) {
            Remedy::LeaveRunning { .. } => None,
            Remedy::Change(change) => Some((change.event, change.last_error)),
        }
    }

    #[test]
    fn each_row_of_the_table() {
        use ExecutionState::{Ended, Missing, Running};
        let in_progress = waiting(TaskStatus::InProgress, 0);
        let queued = waiting(TaskStatus::Queued, 0);
        let begun = waiting(TaskStatus::InProgress, 1);
        // A running execution has the task; one whose start was not recorded is recorded.
        assert_eq!(decided(&in_progress, Running), None);
        assert_eq!(decided(&queued, Running), Some((Event::Start, None)));
        // No execution of a queued task's series: sent again.
        assert_eq!(decided(&queued, Missing), Some((Event::Redispatch, None)));
        // Ended, or never started, before an attempt began: a new series.
        for state in [Ended("SUCCEEDED".into()), Missing] {
            assert_eq!(decided(&in_progress, state), Some((Event::Restart, None)));
        }
        assert_eq!(
            decided(&queued, Ended("ABORTED".into())),
            Some((Event::Restart, None))
        );
        // After an attempt began: FAILED with the reason, never sent again.
        let (event, error) = decided(&begun, Ended("TIMED_OUT".into())).unwrap();
        assert_eq!(event, Event::Fail);
        assert!(error
            .unwrap()
            .contains("ended (TIMED_OUT) without recording the outcome of attempt 1"));
        // Past the bound on restarts and re-sends: FAILED.
        let tired = Task {
            redispatches: MAX_REDISPATCHES,
            ..in_progress.clone()
        };
        let (event, error) = decided(&tired, Missing).unwrap();
        assert_eq!(event, Event::Fail);
        assert!(error.unwrap().contains("ended: never started"));
        let tired = Task {
            redispatches: MAX_REDISPATCHES,
            ..queued
        };
        assert_eq!(decided(&tired, Missing).unwrap().0, Event::Fail);
    }

    #[test]
    fn a_running_execution_is_overdue_past_its_task_s_policy() {
        let pacing = Pacing::default();
        let task = waiting(TaskStatus::InProgress, 1);
        let overdue = |task: &Task| match remedy(
            task,
            "t-1",
            &ExecutionState::Running,
            &pacing,
            Utc::now(),
        ) {
            Remedy::LeaveRunning { overdue } => overdue,
            Remedy::Change(change) => panic!("{change:?}"),
        };
        assert!(overdue(&task), "an hour past, with the default policy");
        let patient = Task {
            retry: Some(RetryPolicy {
                max_attempts: 20,
                ..RetryPolicy::default()
            }),
            ..task
        };
        assert!(!overdue(&patient), "twenty attempts up to 300 s apart");
    }
}
