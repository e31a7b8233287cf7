//! Plays Step Functions locally: runs each task's workflow in-process, in the order and with the
//! retry policy of `state-machine/tasks.asl.json`, calling the same handlers as the Lambdas.

use async_trait::async_trait;
use execute_task::ExecuteTask;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tasks_core::pipeline::{ExecuteError, StatusUpdate, StepError};
use tasks_core::retry::{is_retryable, RetryPolicy, STATUS_RETRY, WEBHOOK_RETRY};
use tasks_core::{
    Clock, ExecutionInput, ExecutionState, StartOutcome, TaskStatus, Workflow, WorkflowError,
};
use tokio::task::JoinHandle;
use update_status::UpdateStatus;

/// The state machine's states, in the order a successful execution enters them.
pub const STATES: [&str; 3] = ["WaitUntilWakeAt", "ExecuteTask", "MarkCompleted"];
/// The state the Catch on ExecuteTask leads to.
pub const CATCH_STATE: &str = "MarkFailed";

pub struct LocalWorkflow {
    execute: Arc<ExecuteTask>,
    update: Arc<UpdateStatus>,
    clock: Arc<dyn Clock>,
    /// Executions by name (the task id), as Step Functions keeps them: a name starts once.
    executions: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl LocalWorkflow {
    pub fn new(
        execute: Arc<ExecuteTask>,
        update: Arc<UpdateStatus>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        LocalWorkflow {
            execute,
            update,
            clock,
            executions: Mutex::new(HashMap::new()),
        }
    }

    /// Executions still waiting or running.
    pub fn running(&self) -> usize {
        let executions = self.executions.lock().unwrap();
        executions
            .values()
            .filter(|handle| !handle.is_finished())
            .count()
    }
}

#[async_trait]
impl Workflow for LocalWorkflow {
    async fn start(&self, input: &ExecutionInput) -> Result<StartOutcome, WorkflowError> {
        let mut executions = self.executions.lock().unwrap();
        match executions.get(&input.execution_name()) {
            Some(handle) if handle.is_finished() => return Ok(StartOutcome::AlreadyEnded),
            Some(_) => return Ok(StartOutcome::AlreadyRunning),
            None => {}
        }
        let run = run_execution(
            self.execute.clone(),
            self.update.clone(),
            self.clock.clone(),
            input.clone(),
        );
        executions.insert(input.execution_name(), tokio::spawn(run));
        Ok(StartOutcome::Started)
    }

    async fn state(&self, execution_name: &str) -> Result<ExecutionState, WorkflowError> {
        Ok(match self.executions.lock().unwrap().get(execution_name) {
            None => ExecutionState::Missing,
            Some(handle) if handle.is_finished() => ExecutionState::Ended("ENDED".into()),
            Some(_) => ExecutionState::Running,
        })
    }

    async fn stop(&self, execution_name: &str) -> Result<(), WorkflowError> {
        if let Some(handle) = self.executions.lock().unwrap().get(execution_name) {
            handle.abort();
        }
        Ok(())
    }
}

async fn run_execution(
    execute: Arc<ExecuteTask>,
    update: Arc<UpdateStatus>,
    clock: Arc<dyn Clock>,
    input: ExecutionInput,
) {
    let id = input.id.clone();
    tracing::debug!(task_id = %id, state = STATES[0], wake_at = %input.wake_at, "waiting");
    if let Ok(wait) = (input.wake_at - clock.now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    tracing::debug!(task_id = %id, state = STATES[1], "executing");
    let outcome = with_retries(WEBHOOK_RETRY, || async {
        execute.handle(input.clone()).await.map_err(|error| error.0)
    })
    .await;
    let (state, status_update) = match outcome {
        Ok(report) => (
            STATES[2],
            StatusUpdate {
                input,
                result: Some(report),
                error: None,
            },
        ),
        Err(error) => (
            CATCH_STATE,
            StatusUpdate {
                input,
                result: None,
                error: Some(StepError {
                    error: error.error_type.to_string(),
                    cause: error.message,
                }),
            },
        ),
    };
    tracing::debug!(task_id = %id, state, "recording the outcome");
    let recorded = with_retries(STATUS_RETRY, || async {
        update
            .handle(status_update.clone())
            .await
            .map_err(|error| ExecuteError {
                error_type: tasks_core::retry::store_error_type(&error.0),
                message: error.0.to_string(),
            })
    })
    .await;
    match recorded {
        Ok(TaskStatus::Completed) | Ok(TaskStatus::Failed) | Ok(TaskStatus::Cancelled) => {}
        Ok(status) => {
            tracing::warn!(task_id = %id, %status, "execution ended with the task not final")
        }
        Err(error) => tracing::error!(task_id = %id, %error, "could not record the outcome"),
    }
}

/// Step Functions' Retry: on a retryable error, wait `interval * rate^(n-1)` and try again, at
/// most `max_attempts` times.
async fn with_retries<T, F, Fut>(policy: RetryPolicy, mut attempt: F) -> Result<T, ExecuteError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ExecuteError>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(error) if is_retryable(error.error_type) && retries < policy.max_attempts => {
                retries += 1;
                tokio::time::sleep(policy.delay(retries)).await;
            }
            result => return result,
        }
    }
}
