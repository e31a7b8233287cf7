//! [`Workflow`] on a Step Functions state machine: one execution per delivery series of a task,
//! named `<task id>-<series>`.

use crate::error_message;
use async_trait::async_trait;
use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sfn::Client;
use tasks_core::{Execution, ExecutionState, StartOutcome, Workflow, WorkflowError};

#[derive(Debug, Clone)]
pub struct StepFunctionsWorkflow {
    client: Client,
    state_machine_arn: String,
}

impl StepFunctionsWorkflow {
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        StepFunctionsWorkflow {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }

    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    /// `arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME` ->
    /// `arn:PARTITION:states:REGION:ACCOUNT:execution:NAME:EXECUTION_NAME`.
    pub fn execution_arn(&self, execution_name: &str) -> Result<String, WorkflowError> {
        let parts: Vec<&str> = self.state_machine_arn.split(':').collect();
        match parts.as_slice() {
            ["arn", partition, "states", region, account, "stateMachine", name] => Ok(format!(
                "arn:{partition}:states:{region}:{account}:execution:{name}:{execution_name}"
            )),
            _ => Err(WorkflowError(format!(
                "not a state machine ARN: {}",
                self.state_machine_arn
            ))),
        }
    }
}

#[async_trait]
impl Workflow for StepFunctionsWorkflow {
    /// Step Functions keeps execution names unique for 90 days after an execution ends, and
    /// answers `ExecutionAlreadyExists` for a running and an ended execution alike (a repeated
    /// start with the same input while the first runs is answered with that execution, as a
    /// success). So a taken name is looked up: running or ended.
    async fn start(&self, execution: &Execution) -> Result<StartOutcome, WorkflowError> {
        let body = execution.input.to_string();
        let name = execution.name.clone();
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(&name)
            .input(body)
            .send()
            .await;
        match result {
            Ok(_) => Ok(StartOutcome::Started),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_already_exists()) =>
            {
                Ok(match self.state(&name).await? {
                    ExecutionState::Running => StartOutcome::AlreadyRunning,
                    ExecutionState::Ended(_) | ExecutionState::Missing => {
                        StartOutcome::AlreadyEnded
                    }
                })
            }
            Err(error) => Err(WorkflowError(error_message(&error))),
        }
    }

    async fn state(&self, execution_name: &str) -> Result<ExecutionState, WorkflowError> {
        let result = self
            .client
            .describe_execution()
            .execution_arn(self.execution_arn(execution_name)?)
            .send()
            .await;
        match result {
            Ok(output) => Ok(match output.status() {
                ExecutionStatus::Running | ExecutionStatus::PendingRedrive => {
                    ExecutionState::Running
                }
                status => ExecutionState::Ended(status.as_str().to_string()),
            }),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(ExecutionState::Missing)
            }
            Err(error) => Err(WorkflowError(error_message(&error))),
        }
    }

    async fn stop(&self, execution_name: &str) -> Result<(), WorkflowError> {
        let result = self
            .client
            .stop_execution()
            .execution_arn(self.execution_arn(execution_name)?)
            .cause("task cancelled")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(())
            }
            Err(error) => Err(WorkflowError(error_message(&error))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::config::{BehaviorVersion, Config, Region};

    fn workflow(arn: &str) -> StepFunctionsWorkflow {
        let config = Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::from_static("us-east-1"))
            .build();
        StepFunctionsWorkflow::new(Client::from_conf(config), arn)
    }

    #[test]
    fn the_execution_arn_is_named_after_the_task() {
        let arn = workflow("arn:aws:states:eu-west-1:123456789012:stateMachine:tasks-dev")
            .execution_arn("0b7c-1")
            .unwrap();
        assert_eq!(
            arn,
            "arn:aws:states:eu-west-1:123456789012:execution:tasks-dev:0b7c-1"
        );
    }

    #[test]
    fn a_malformed_state_machine_arn_is_reported() {
        assert!(workflow("arn:aws:lambda:eu-west-1:1:function:x")
            .execution_arn("t")
            .is_err());
    }
}
