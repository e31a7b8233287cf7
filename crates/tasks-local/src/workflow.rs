//! Plays Step Functions locally: runs `state-machine/tasks.asl.json` for each task through the
//! `asl` interpreter, with the Lambdas' own handlers behind its Task states.

use asl::{Context, DefinitionError, ExecutionOutcome, Failure, HistoryEvent, Host, StateMachine};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use execute_task::ExecuteTask;
use lambda_runtime::Diagnostic;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tasks_core::{Clock, ExecutionInput, StartOutcome, TaskStatus, Workflow, WorkflowError};
use tokio::task::JoinHandle;
use update_status::UpdateStatus;

/// The state machine a deployment runs, embedded so that local mode runs the same definition.
pub const DEFINITION: &str = include_str!("../../../state-machine/tasks.asl.json");

/// The Task `Resource` placeholders the template fills with the functions' ARNs, each answered
/// here by the function's handler.
pub const EXECUTE_TASK_RESOURCE: &str = "${ExecuteTaskFunctionArn}";
pub const UPDATE_STATUS_RESOURCE: &str = "${UpdateStatusFunctionArn}";

pub struct LocalWorkflow {
    machine: Arc<StateMachine>,
    functions: Arc<Functions>,
    /// Executions by name (the task id), as Step Functions keeps them: a name starts once.
    executions: Mutex<HashMap<String, JoinHandle<()>>>,
}

/// The Lambda handlers the state machine's Task states invoke.
struct Functions {
    execute: Arc<ExecuteTask>,
    update: Arc<UpdateStatus>,
    clock: Arc<dyn Clock>,
}

impl LocalWorkflow {
    pub fn new(
        execute: Arc<ExecuteTask>,
        update: Arc<UpdateStatus>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DefinitionError> {
        Ok(LocalWorkflow {
            machine: Arc::new(StateMachine::parse(DEFINITION)?),
            functions: Arc::new(Functions {
                execute,
                update,
                clock,
            }),
            executions: Mutex::new(HashMap::new()),
        })
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
        if executions.contains_key(&input.id) {
            return Ok(StartOutcome::AlreadyStarted);
        }
        let execution_input = serde_json::to_value(input)
            .map_err(|error| WorkflowError(format!("the execution input: {error}")))?;
        let host = ExecutionHost {
            functions: self.functions.clone(),
            name: input.id.clone(),
        };
        let machine = self.machine.clone();
        let run = async move {
            let context = Context {
                execution_name: host.name.clone(),
                start_time: host.now(),
            };
            let outcome = asl::execute(&machine, &host, execution_input, context).await;
            report(&host.name, outcome);
        };
        executions.insert(input.id.clone(), tokio::spawn(run));
        Ok(StartOutcome::Started)
    }

    async fn stop(&self, task_id: &str) -> Result<(), WorkflowError> {
        if let Some(handle) = self.executions.lock().unwrap().get(task_id) {
            handle.abort();
        }
        Ok(())
    }
}

/// Logs how an execution ended. TaskFailed is the state machine's own end for a task it
/// recorded FAILED; any other failure means the outcome could not be recorded.
fn report(task_id: &str, outcome: ExecutionOutcome) {
    match outcome {
        ExecutionOutcome::Succeeded(output) => {
            match serde_json::from_value::<TaskStatus>(output["status"].clone()) {
                Ok(TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled) => {}
                status => {
                    tracing::warn!(%task_id, ?status, "execution ended with the task not final")
                }
            }
        }
        ExecutionOutcome::Failed(failure) if failure.error == "TaskFailed" => {
            tracing::debug!(%task_id, "execution failed: the task is recorded FAILED")
        }
        ExecutionOutcome::Failed(failure) => {
            tracing::error!(%task_id, error = %failure.error, cause = ?failure.cause, "could not record the outcome")
        }
        ExecutionOutcome::TimedOut => tracing::error!(%task_id, "execution timed out"),
    }
}

/// One execution's view of the world: the real clock, tokio's timer, the in-process handlers.
struct ExecutionHost {
    functions: Arc<Functions>,
    name: String,
}

#[async_trait]
impl Host for ExecutionHost {
    fn now(&self) -> DateTime<Utc> {
        self.functions.clock.now()
    }

    /// Step Functions ends a wait at the start of the second it is due in, up to a second early
    /// (measured on the emulator; execute-task sleeps the rest before it sends).
    async fn sleep_until(&self, at: DateTime<Utc>) {
        if let Ok(wait) = (at.trunc_subsecs(0) - self.now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }

    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, Failure> {
        let functions = &self.functions;
        match resource {
            EXECUTE_TASK_RESOURCE => {
                invoke_lambda(input, |input| functions.execute.handle(input)).await
            }
            UPDATE_STATUS_RESOURCE => {
                invoke_lambda(input, |update| functions.update.handle(update)).await
            }
            other => Err(Failure::new(
                "Lambda.ResourceNotFoundException",
                format!("no local function answers {other}"),
            )),
        }
    }

    fn record(&self, event: HistoryEvent) {
        tracing::debug!(task_id = %self.name, ?event, "workflow");
    }
}

/// Calls a handler as Lambda does: the payload through JSON both ways, and a handler error
/// as Step Functions sees it, `Error` = its errorType, `Cause` = `{"errorType", "errorMessage"}`.
async fn invoke_lambda<I, O, E, F, Fut>(input: Value, handler: F) -> Result<Value, Failure>
where
    I: DeserializeOwned,
    O: Serialize,
    E: Into<Diagnostic>,
    F: FnOnce(I) -> Fut,
    Fut: Future<Output = Result<O, E>>,
{
    let failure = |diagnostic: Diagnostic| {
        let cause = serde_json::to_string(&diagnostic).unwrap_or_default();
        Failure::new(diagnostic.error_type, cause)
    };
    let payload = serde_json::from_value(input).map_err(|error| {
        failure(Diagnostic {
            error_type: "InvalidEventDataError".into(),
            error_message: error.to_string(),
        })
    })?;
    let output = handler(payload)
        .await
        .map_err(|error| failure(error.into()))?;
    serde_json::to_value(output).map_err(|error| {
        failure(Diagnostic {
            error_type: "InvalidResponseError".into(),
            error_message: error.to_string(),
        })
    })
}
