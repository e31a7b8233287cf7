//! Plays Step Functions locally: runs `state-machine/tasks.asl.json` for each slot and task through the
//! `asl` interpreter, with the Lambdas' own handlers behind its Task states.
//!
//! Like Step Functions, an execution name starts once and stays taken after its execution
//! ends, here for [`ENDED_RETENTION`] (Step Functions: 90 days), longer than the cron takes to
//! settle a task whose execution ended without an outcome. Executions live in this process: a
//! restart forgets them. The cron's sweeps then find the tasks that waited for them (QUEUED past
//! the claim grace, IN_PROGRESS past their time plus the stuck margin), see no execution of
//! their name, and send them again (no attempt began) or record them FAILED with the reason
//! (an attempt began, so the receiver may have it), as on AWS after an execution is lost.

use asl::{
    Context, DefinitionError, ExecutionOutcome, Executions, Failure, FinalStatus, HistoryEvent,
    Host, StateMachine,
};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use execute_task::ExecuteTask;
use serde_json::Value;
use std::sync::Arc;
use tasks_core::{Clock, ExecutionState, StartOutcome, TaskStatus, Workflow, WorkflowError};
use tokio::task::JoinHandle;
use update_status::UpdateStatus;

/// The state machine a deployment runs, embedded so that local mode runs the same definition.
pub const DEFINITION: &str = include_str!("../../../state-machine/tasks.asl.json");

/// The Task `Resource` placeholders the template fills with the functions' ARNs, each answered
/// here by the function's handler.
pub const EXECUTE_TASK_RESOURCE: &str = "${ExecuteTaskFunctionArn}";
pub const UPDATE_STATUS_RESOURCE: &str = "${UpdateStatusFunctionArn}";

/// How long an ended execution's name stays taken.
pub const ENDED_RETENTION: chrono::Duration = chrono::Duration::hours(1);

pub struct LocalWorkflow {
    machine: Arc<StateMachine>,
    functions: Arc<Functions>,
    /// Executions by name (a slot's, or `<task id>-<series>`), as Step Functions keeps them.
    executions: Arc<Executions<JoinHandle<()>>>,
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
            executions: Arc::new(Executions::new(Some(ENDED_RETENTION))),
        })
    }

    /// Executions still waiting or running.
    pub fn running(&self) -> usize {
        self.executions.running()
    }
}

#[async_trait]
impl Workflow for LocalWorkflow {
    async fn start(
        &self,
        execution: &tasks_core::Execution,
    ) -> Result<StartOutcome, WorkflowError> {
        let execution_input = execution.input.clone();
        let host = ExecutionHost {
            functions: self.functions.clone(),
            name: execution.name.clone(),
        };
        let machine = self.machine.clone();
        let registry = self.executions.clone();
        let run = async move {
            let context = Context {
                execution_name: host.name.clone(),
                start_time: host.now(),
            };
            let outcome = asl::execute(&machine, &host, execution_input, context).await;
            report(&host.name, &outcome);
            registry.end(&host.name, FinalStatus::from(&outcome), host.now());
        };
        let now = self.functions.clock.now();
        Ok(self
            .executions
            .start(&execution.name, now, || tokio::spawn(run))
            .into())
    }

    async fn state(&self, execution_name: &str) -> Result<ExecutionState, WorkflowError> {
        Ok(self.executions.state(execution_name).into())
    }

    async fn stop(&self, execution_name: &str) -> Result<(), WorkflowError> {
        let now = self.functions.clock.now();
        self.executions
            .stop(execution_name, now, |handle| handle.abort());
        Ok(())
    }
}

/// Logs how an execution ended. TaskFailed is the state machine's own end for a task it
/// recorded FAILED; any other failure means the outcome could not be recorded.
fn report(name: &str, outcome: &ExecutionOutcome) {
    match outcome {
        // A slot's tasks that did not complete went on in their own executions.
        ExecutionOutcome::Succeeded(output) if output.get("summary").is_some() => {}
        ExecutionOutcome::Succeeded(output) => {
            match serde_json::from_value::<TaskStatus>(output["status"].clone()) {
                Ok(TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled) => {}
                status => {
                    tracing::warn!(execution = %name, ?status, "execution ended with the task not final")
                }
            }
        }
        ExecutionOutcome::Failed(failure) if failure.error == "TaskFailed" => {
            tracing::debug!(execution = %name, "execution failed: the task is recorded FAILED");
        }
        ExecutionOutcome::Failed(failure) => {
            tracing::error!(execution = %name, error = %failure.error, cause = ?failure.cause, "could not record the outcome");
        }
        ExecutionOutcome::TimedOut => {
            tracing::error!(execution = %name, "execution timed out");
        }
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
        let answer = match resource {
            EXECUTE_TASK_RESOURCE => {
                tasks_lambda::invoke_json(&input, |input| functions.execute.handle(input)).await
            }
            UPDATE_STATUS_RESOURCE => {
                tasks_lambda::invoke_json(&input, |update| functions.update.handle(update)).await
            }
            other => {
                return Err(Failure::new(
                    "Lambda.ResourceNotFoundException",
                    format!("no local function answers {other}"),
                ))
            }
        };
        answer.map_err(|error| Failure::of_lambda(&error.error_type, &error.error_message))
    }

    fn record(&self, event: HistoryEvent) {
        tracing::debug!(execution = %self.name, ?event, "workflow");
    }
}
