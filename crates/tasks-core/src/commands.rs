//! What the API does to tasks: create (with the hand-off of tasks already due) and cancel.

use crate::dispatch::hand_off_if_due;
use crate::new_task::{NewTask, ValidationError};
use crate::pacing::Pacing;
use crate::ports::{Clock, DispatchQueue, StoreError, TaskStore, Transition, Workflow};
use crate::signing::SigningSecretNames;
use crate::status::Event;
use crate::task::Task;
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
    let task = new_task.into_task(id, idempotency_key.map(str::to_string), now, pacing);
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
