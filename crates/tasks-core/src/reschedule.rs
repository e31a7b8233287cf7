//! What a user may do to a task after creating it: change it (`PATCH`), run it now, or retry it
//! after it FAILED. Each is one conditional write that moves the task to a new delivery series,
//! so an execution started for the old values can never begin an attempt; the old execution is
//! then stopped as a courtesy, and a task now due is handed off at once, as a new one would be.

use crate::dispatch::hand_off_if_due;
use crate::new_task::ValidationError;
use crate::pacing::Pacing;
use crate::ports::{Clock, DispatchQueue, StoreError, TaskStore, Transition, Workflow};
use crate::signing::SigningSecretNames;
use crate::status::{Event, TaskStatus};
use crate::task::{execution_name, rfc3339_millis, Task, ATTEMPT_HISTORY_KEPT_ON_RETRY};
use crate::task_patch::TaskPatch;

/// A read-then-write that keeps losing to concurrent changes gives up after this many tries.
const MAX_TRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("task {0} not found")]
    NotFound(String),
    /// Final, or an attempt of its current series has begun.
    #[error("task {} is {}: it can no longer change", .0.id, .0.task_status)]
    NotChangeable(Box<Task>),
    /// Only a FAILED task can be retried.
    #[error("task {} is {}: only a FAILED task can be retried", .0.id, .0.task_status)]
    NotRetryable(Box<Task>),
    #[error(transparent)]
    Store(StoreError),
}

/// A task as a change left it, and the stored headers the change dropped for moving their
/// webhook or callback to another origin (`webhook.headers.<name>`), which the answer names.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub task: Task,
    pub dropped_headers: Vec<String>,
}

/// The ports a change needs.
pub struct Ports<'a> {
    pub store: &'a dyn TaskStore,
    pub queue: &'a dyn DispatchQueue,
    pub workflow: &'a dyn Workflow,
    pub clock: &'a dyn Clock,
    pub pacing: &'a Pacing,
    /// The signing secrets a changed webhook or callback may name.
    pub signing_secrets: &'a SigningSecretNames,
}

/// `PATCH /tasks/{id}`: changes the time, webhook or payload of a task whose current series has
/// not begun an attempt (SCHEDULED, QUEUED, or IN_PROGRESS still waiting for its time).
pub async fn change_task(ports: &Ports<'_>, id: &str, body: &[u8]) -> Result<Changed, ChangeError> {
    let patch = TaskPatch::parse(body, ports.clock.now())?;
    apply(ports, id, Event::Reschedule, &patch).await
}

/// `POST /tasks/{id}/run`: the task's time becomes now; the same rules as a change.
pub async fn run_task(ports: &Ports<'_>, id: &str) -> Result<Changed, ChangeError> {
    let patch = TaskPatch::time(Some(rfc3339_millis::truncate(ports.clock.now())));
    apply(ports, id, Event::Reschedule, &patch).await
}

/// `POST /tasks/{id}/retry`: a FAILED task starts a new series of attempts, now or at the time the
/// body gives (which may also change the webhook or payload). The attempts made keep counting.
pub async fn retry_task(ports: &Ports<'_>, id: &str, body: &[u8]) -> Result<Changed, ChangeError> {
    let now = ports.clock.now();
    let patch = TaskPatch::parse_optional(body, now)?.at(rfc3339_millis::truncate(now));
    apply(ports, id, Event::Retry, &patch).await
}

async fn apply(
    ports: &Ports<'_>,
    id: &str,
    event: Event,
    patch: &TaskPatch,
) -> Result<Changed, ChangeError> {
    let mut task = ports
        .store
        .get(id)
        .await
        .map_err(ChangeError::Store)?
        .ok_or_else(|| ChangeError::NotFound(id.to_string()))?;
    for _ in 0..MAX_TRIES {
        let change = Transition::new(event, ports.clock.now());
        if !change.applies_to(&task) {
            return Err(refused(event, task));
        }
        // The merge was computed from this read: write it only if nobody changed the task since.
        let mut changes = patch.changes_for(&task, ports.pacing)?;
        ports.signing_secrets.check_requests(
            changes.webhook.as_ref().and_then(Option::as_ref),
            changes.on_failure.as_ref().and_then(Option::as_ref),
        )?;
        if event == Event::Retry {
            // The new series adds its attempts to a history kept within its bound.
            let excess = task
                .attempt_history
                .len()
                .saturating_sub(ATTEMPT_HISTORY_KEPT_ON_RETRY);
            if excess > 0 {
                changes.attempt_history = Some(task.attempt_history[excess..].to_vec());
            }
        }
        let change = change
            .with_changes(changes)
            .if_last_updated_at(task.last_updated_at);
        match ports.store.transition(id, &change).await {
            Ok(changed) => {
                return Ok(Changed {
                    dropped_headers: patch.dropped_headers(&task),
                    task: after_change(ports, &task, changed).await,
                })
            }
            Err(StoreError::Conflict { current }) => task = *current,
            Err(StoreError::NotFound(id)) => return Err(ChangeError::NotFound(id)),
            Err(error) => return Err(ChangeError::Store(error)),
        }
    }
    Err(refused(event, task))
}

fn refused(event: Event, task: Task) -> ChangeError {
    match event {
        Event::Retry => ChangeError::NotRetryable(Box::new(task)),
        _ => ChangeError::NotChangeable(Box::new(task)),
    }
}

/// Hands the task off if its new time has come near (`hand_off_if_due`), then stops the
/// execution of the series the task left (it can no longer deliver, but it would wait idle until
/// the old time): a task run now does not wait for the stop.
async fn after_change(ports: &Ports<'_>, before: &Task, changed: Task) -> Task {
    let changed = hand_off_if_due(
        ports.store,
        ports.queue,
        ports.clock,
        ports.pacing,
        ports.clock.now(),
        changed,
    )
    .await;
    if matches!(
        before.task_status,
        TaskStatus::Queued | TaskStatus::InProgress
    ) {
        let old = execution_name(&before.id, before.series);
        if let Err(error) = ports.workflow.stop(&old).await {
            tracing::warn!(task_id = %before.id, %error, "could not stop the execution of the old series");
        }
    }
    changed
}
