//! [`Workflow`] on a Step Functions state machine: one execution per task, named after it.

use crate::error_message;
use async_trait::async_trait;
use aws_sdk_sfn::Client;
use tasks_core::{ExecutionInput, StartOutcome, Workflow, WorkflowError};

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
    /// `arn:PARTITION:states:REGION:ACCOUNT:execution:NAME:TASK_ID`.
    pub fn execution_arn(&self, task_id: &str) -> Result<String, WorkflowError> {
        let parts: Vec<&str> = self.state_machine_arn.split(':').collect();
        match parts.as_slice() {
            ["arn", partition, "states", region, account, "stateMachine", name] => Ok(format!(
                "arn:{partition}:states:{region}:{account}:execution:{name}:{task_id}"
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
    /// Step Functions keeps execution names unique (for 90 days after an execution closes):
    /// a repeated start is `AlreadyStarted`, or, while the first one runs with the same input,
    /// answered with that execution and reported `Started`.
    async fn start(&self, input: &ExecutionInput) -> Result<StartOutcome, WorkflowError> {
        let body = serde_json::to_string(input).map_err(|e| WorkflowError(e.to_string()))?;
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(&input.id)
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
                Ok(StartOutcome::AlreadyStarted)
            }
            Err(error) => Err(WorkflowError(error_message(&error))),
        }
    }

    async fn stop(&self, task_id: &str) -> Result<(), WorkflowError> {
        let result = self
            .client
            .stop_execution()
            .execution_arn(self.execution_arn(task_id)?)
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
            .execution_arn("0b7c")
            .unwrap();
        assert_eq!(
            arn,
            "arn:aws:states:eu-west-1:123456789012:execution:tasks-dev:0b7c"
        );
    }

    #[test]
    fn a_malformed_state_machine_arn_is_reported() {
        assert!(workflow("arn:aws:lambda:eu-west-1:1:function:x")
            .execution_arn("t")
            .is_err());
    }
}
