use crate::{emulator, eventually, unique};
use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sfn::Client;
use chrono::{TimeZone, Utc};
use std::time::Duration;
use tasks_aws::bootstrap::ensure_state_machine;
use tasks_aws::StepFunctionsWorkflow;
use tasks_core::{Execution, ExecutionInput, ExecutionState, StartOutcome, Workflow};

const ROLE: &str = "arn:aws:iam::123456789012:role/tasks-local";
const PASS: &str = r#"{"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}}"#;
const WAIT: &str =
    r#"{"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": true}}}"#;

async fn workflow(definition: &str) -> (StepFunctionsWorkflow, Client) {
    let client = Client::new(&emulator().await);
    let arn = ensure_state_machine(&client, &unique("tasks"), definition, ROLE)
        .await
        .unwrap();
    (StepFunctionsWorkflow::new(client.clone(), arn), client)
}

fn input(seconds: u32) -> ExecutionInput {
    let timestamp = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, seconds).unwrap();
    ExecutionInput {
        id: uuid::Uuid::new_v4().to_string(),
        timestamp,
        wake_at: timestamp - chrono::Duration::seconds(1),
        series: 1,
    }
}

async fn executions(client: &Client, workflow: &StepFunctionsWorkflow) -> Vec<String> {
    client
        .list_executions()
        .state_machine_arn(workflow.state_machine_arn())
        .send()
        .await
        .unwrap()
        .executions
        .into_iter()
        .map(|execution| execution.name)
        .collect()
}

async fn status_becomes(client: &Client, arn: &str, wanted: ExecutionStatus) {
    eventually(
        Duration::from_secs(20),
        &format!("{arn} to be {wanted}"),
        || async {
            let execution = client
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await
                .unwrap();
            (execution.status == wanted).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn an_execution_named_after_the_task_and_series_runs_with_its_input() {
    let (workflow, client) = workflow(PASS).await;
    let input = input(0);
    assert_eq!(
        workflow.start(&Execution::of_task(&input, None)).await,
        Ok(StartOutcome::Started)
    );
    let arn = workflow.execution_arn(&input.execution_name()).unwrap();
    status_becomes(&client, &arn, ExecutionStatus::Succeeded).await;
    let execution = client
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(execution.name, Some(format!("{}-1", input.id)));
    let received: serde_json::Value =
        serde_json::from_str(execution.input.as_deref().unwrap()).unwrap();
    assert_eq!(received, serde_json::to_value(&input).unwrap());
}

/// Step Functions keeps an ended execution's name (90 days): starting it again is not a
/// repeated delivery of a running execution, and the adapter must say so.
#[tokio::test]
async fn restarting_an_ended_execution_is_reported_as_ended() {
    let (workflow, client) = workflow(PASS).await;
    let input = input(0);
    let name = input.execution_name();
    assert_eq!(workflow.state(&name).await, Ok(ExecutionState::Missing));
    workflow
        .start(&Execution::of_task(&input, None))
        .await
        .unwrap();
    status_becomes(
        &client,
        &workflow.execution_arn(&name).unwrap(),
        ExecutionStatus::Succeeded,
    )
    .await;
    assert_eq!(
        workflow.state(&name).await,
        Ok(ExecutionState::Ended("SUCCEEDED".into()))
    );
    assert_eq!(
        workflow.start(&Execution::of_task(&input, None)).await,
        Ok(StartOutcome::AlreadyEnded)
    );
    assert_eq!(executions(&client, &workflow).await, [name.as_str()]);

    let next_series = ExecutionInput {
        series: input.series + 1,
        ..input.clone()
    };
    assert_eq!(
        workflow
            .start(&Execution::of_task(&next_series, None))
            .await,
        Ok(StartOutcome::Started)
    );
}

#[tokio::test]
async fn a_repeated_start_of_a_running_task_makes_no_second_execution() {
    let (workflow, client) = workflow(WAIT).await;
    let input = input(0);
    let name = input.execution_name();
    assert_eq!(
        workflow.start(&Execution::of_task(&input, None)).await,
        Ok(StartOutcome::Started)
    );
    assert_eq!(workflow.state(&name).await, Ok(ExecutionState::Running));
    let again = workflow
        .start(&Execution::of_task(&input, None))
        .await
        .unwrap();
    assert!(matches!(
        again,
        StartOutcome::Started | StartOutcome::AlreadyRunning
    ));
    let changed = ExecutionInput {
        timestamp: input.timestamp + chrono::Duration::seconds(5),
        ..input.clone()
    };
    assert_eq!(
        workflow.start(&Execution::of_task(&changed, None)).await,
        Ok(StartOutcome::AlreadyRunning)
    );
    assert_eq!(executions(&client, &workflow).await, [name.as_str()]);
    workflow.stop(&name).await.unwrap();
}

#[tokio::test]
async fn stop_aborts_a_running_execution_and_ignores_a_missing_one() {
    let (workflow, client) = workflow(WAIT).await;
    let input = input(0);
    let name = input.execution_name();
    workflow
        .start(&Execution::of_task(&input, None))
        .await
        .unwrap();
    let arn = workflow.execution_arn(&name).unwrap();
    status_becomes(&client, &arn, ExecutionStatus::Running).await;
    assert_eq!(workflow.stop(&name).await, Ok(()));
    status_becomes(&client, &arn, ExecutionStatus::Aborted).await;
    assert_eq!(
        workflow.state(&name).await,
        Ok(ExecutionState::Ended("ABORTED".into()))
    );
    assert_eq!(workflow.stop(&name).await, Ok(()));
    assert_eq!(
        workflow
            .stop("00000000-0000-0000-0000-000000000000-1")
            .await,
        Ok(())
    );
}

#[tokio::test]
async fn a_missing_state_machine_is_an_error() {
    let client = Client::new(&emulator().await);
    let workflow = StepFunctionsWorkflow::new(
        client,
        "arn:aws:states:us-east-1:123456789012:stateMachine:missing",
    );
    let error = workflow
        .start(&Execution::of_task(&input(0), None))
        .await
        .unwrap_err();
    assert!(error.0.contains("StateMachineDoesNotExist"), "{error}");
}
