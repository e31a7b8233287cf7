//! What the API does to tasks: create them (handing off those due soon), cancel them, and change,
//! run or retry them. A change, run or retry is one conditional write that moves the task to a
//! new delivery series, so an execution started for the old values can never begin an attempt;
//! the old execution is then stopped as a courtesy, and a task now due is handed off at once, as a
//! new one would be.

use crate::flow::claim::hand_off_if_due;
use crate::model::status::{Event, TaskStatus};
use crate::model::task::{execution_name, Task, ATTEMPT_HISTORY_KEPT_ON_RETRY};
use crate::model::time::rfc3339_millis;
use crate::ports::{Clock, DispatchQueue, StoreError, TaskStore, Transition, Workflow};
use crate::request::new_task::{NewTask, ValidationError};
use crate::request::signing::SigningSecretNames;
use crate::request::task_patch::TaskPatch;
use crate::rules::pacing::Pacing;
use uuid::Uuid;

/// Task ids derived from idempotency keys live in their own UUID v5 namespace.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x5d1c_2f0e_8a4b_4c8e_9f61_2b7d_0e3a_91c4);
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the idempotency key was already used with a different request")]
    IdempotencyConflict(Box<Task>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub task: Task,
    /// The request repeated an earlier one with the same idempotency key: nothing new was stored.
    pub replayed: bool,
}

/// Validates and stores a task. A task whose start time has already come (due within the lead
/// time) is handed to the queue at once instead of waiting for the next cron run.
///
/// With an idempotency key the task id is derived from the key, so the store's
/// `attribute_not_exists(id)` condition makes a repeated request a no-op in one write.
pub async fn create_task(
    store: &dyn TaskStore,
    queue: &dyn DispatchQueue,
    clock: &dyn Clock,
    pacing: &Pacing,
    signing_secrets: &SigningSecretNames,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> Result<Created, CreateError> {
    let now = clock.now();
    if let Some(key) = idempotency_key {
        validate_idempotency_key(key)?;
    }
    let new_task = NewTask::parse(body, now)?;
    signing_secrets.check_requests(new_task.webhook.as_ref(), new_task.on_failure.as_ref())?;
    let id = match idempotency_key {
        Some(key) => Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, key.as_bytes()),
        None => Uuid::new_v4(),
    }
    .to_string();
    let task = new_task.into_task(
        id,
        idempotency_key.map(str::to_string),
        now,
        pacing.lead_time,
    );
    let (task, replayed) = match store.create(&task).await {
        Ok(()) => (task, false),
        Err(StoreError::AlreadyExists(id)) => {
            let existing = store
                .get(&id)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            if idempotency_key.is_none() || existing.request_digest != task.request_digest {
                return Err(CreateError::IdempotencyConflict(Box::new(existing)));
            }
            (existing, true)
        }
        Err(error) => return Err(error.into()),
    };
    // A replay is handed off too: the first request may have stored the task and failed before
    // its hand-off, and a task due now must not wait for the cron.
    Ok(Created {
        task: hand_off_if_due(store, queue, clock, pacing, now, task).await,
        replayed,
    })
}

fn validate_idempotency_key(key: &str) -> Result<(), ValidationError> {
    let printable = key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !printable {
        return Err(ValidationError::new(
            "invalid_idempotency_key",
            Some("Idempotency-Key"),
            format!("the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"),
        ));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("task {0} not found")]
    NotFound(String),
    /// Finished, already cancelled, or its webhook attempt has begun.
    #[error("task {} is {} and can no longer be cancelled", .0.id, .0.task_status)]
    NotCancellable(Box<Task>),
    #[error(transparent)]
    Store(StoreError),
}

/// Cancels a task that has not begun executing, and stops its workflow execution if one may exist.
pub async fn cancel_task(
    store: &dyn TaskStore,
    workflow: &dyn Workflow,
    clock: &dyn Clock,
    id: &str,
) -> Result<Task, CancelError> {
    let cancelled = match store
        .transition(id, &Transition::new(Event::Cancel, clock.now()))
        .await
    {
        Ok(task) => task,
        Err(StoreError::NotFound(id)) => return Err(CancelError::NotFound(id)),
        Err(StoreError::Conflict { current }) => return Err(CancelError::NotCancellable(current)),
        Err(error) => return Err(CancelError::Store(error)),
    };
    // The execution may exist from QUEUED on; execute-task also skips cancelled tasks, so a failed
    // stop only costs an idle execution.
    if cancelled.series == 0 {
        return Ok(cancelled);
    }
    if let Err(error) = workflow.stop(&cancelled.execution_name()).await {
        tracing::warn!(task_id = %id, %error, "could not stop the execution of a cancelled task");
    }
    Ok(cancelled)
}

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
        let mut changes = patch.changes_for(&task, ports.pacing.lead_time)?;
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
