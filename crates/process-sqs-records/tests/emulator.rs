//! process-sqs-records against DynamoDB and Step Functions on the emulator.

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{Duration, Utc};
use process_sqs_records::ProcessRecords;
use serde_json::json;
use std::sync::Arc;
use tasks_aws::testing::Resources;
use tasks_core::{
    DispatchMessage, Execution, ExecutionState, Pacing, StartOutcome, SystemClock, Task,
    TaskStatus, TaskStore, Workflow, WorkflowError,
};

fn queued(id: &str) -> Task {
    let timestamp = Utc::now() + Duration::seconds(90);
    Task {
        task_status: TaskStatus::Queued,
        series: 1,
        ..Task::new(id, timestamp, Pacing::default().lead_time, Utc::now())
    }
}

fn event(records: &[(String, String)]) -> SqsEvent {
    let records: Vec<_> = records
        .iter()
        .map(|(message_id, body)| json!({"messageId": message_id, "body": body}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn record(message_id: &str, task: &Task) -> (String, String) {
    let body = serde_json::to_string(&DispatchMessage::from(task)).unwrap();
    (message_id.to_string(), body)
}

async fn handler(resources: &Resources) -> (ProcessRecords, tasks_aws::StepFunctionsWorkflow) {
    let workflow = resources.waiting_workflow().await;
    let handler = ProcessRecords {
        store: Arc::new(resources.store()),
        workflow: Arc::new(workflow.clone()),
        clock: Arc::new(SystemClock),
        pacing: Pacing::default(),
        metrics: Arc::new(tasks_core::metrics::Stdout),
    };
    (handler, workflow)
}

#[tokio::test]
async fn duplicate_deliveries_of_one_task_start_one_execution() {
    let resources = Resources::create().await;
    let store = resources.store();
    let task = queued(&uuid_like("dup"));
    store.create(&task).await.unwrap();
    let (handler, workflow) = handler(&resources).await;

    let first = handler
        .handle(event(&[record("m1", &task), record("m2", &task)]))
        .await;
    let again = handler.handle(event(&[record("m3", &task)])).await;

    assert!(first.batch_item_failures.is_empty());
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(
        resources.execution_names(&workflow).await,
        vec![task.execution_name()]
    );
    let stored = store.get(&task.id).await.unwrap().unwrap();
    assert_eq!(stored.task_status, TaskStatus::InProgress);
}

#[tokio::test]
async fn only_the_failing_record_is_reported() {
    let resources = Resources::create().await;
    let store = resources.store();
    let mut records = Vec::new();
    let mut ids = Vec::new();
    for i in 0..9 {
        let task = queued(&uuid_like(&format!("ok{i}")));
        store.create(&task).await.unwrap();
        records.push(record(&format!("m{i}"), &task));
        ids.push(task.execution_name());
    }
    let bad = queued(&uuid_like("bad"));
    store.create(&bad).await.unwrap();
    records.insert(4, record("bad", &bad));
    let (mut handler, workflow) = handler(&resources).await;
    // The emulator accepts every start; this one fails as a throttled or refused start would.
    handler.workflow = Arc::new(FailingFor {
        inner: workflow.clone(),
        task_id: bad.id.clone(),
    });

    let response = handler.handle(event(&records)).await;

    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["bad"]);
    let mut started = resources.execution_names(&workflow).await;
    started.sort();
    ids.sort();
    assert_eq!(started, ids);
    let bad_now = store.get(&bad.id).await.unwrap().unwrap();
    assert_eq!(bad_now.task_status, TaskStatus::Queued);
}

#[tokio::test]
async fn malformed_records_are_reported_without_failing_the_batch() {
    let resources = Resources::create().await;
    let store = resources.store();
    let task = queued(&uuid_like("good"));
    store.create(&task).await.unwrap();
    let (handler, workflow) = handler(&resources).await;

    let response = handler
        .handle(event(&[
            ("junk".into(), "not json".into()),
            ("empty".into(), "{}".into()),
            record("good", &task),
        ]))
        .await;

    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["junk", "empty"]);
    assert_eq!(
        resources.execution_names(&workflow).await,
        vec![task.execution_name()]
    );
}

#[tokio::test]
async fn cancelled_and_unknown_tasks_are_acknowledged_without_a_start() {
    let resources = Resources::create().await;
    let store = resources.store();
    let mut cancelled = queued(&uuid_like("cancelled"));
    cancelled.task_status = TaskStatus::Cancelled;
    store.create(&cancelled).await.unwrap();
    let unknown = queued(&uuid_like("unknown"));
    let (handler, workflow) = handler(&resources).await;

    let response = handler
        .handle(event(&[record("c", &cancelled), record("u", &unknown)]))
        .await;

    assert!(response.batch_item_failures.is_empty());
    assert!(resources.execution_names(&workflow).await.is_empty());
}

struct FailingFor {
    inner: tasks_aws::StepFunctionsWorkflow,
    task_id: String,
}

#[async_trait::async_trait]
impl Workflow for FailingFor {
    async fn start(&self, execution: &Execution) -> Result<StartOutcome, WorkflowError> {
        if execution.input["id"] == self.task_id.as_str() {
            return Err(WorkflowError("ThrottlingException: rate exceeded".into()));
        }
        self.inner.start(execution).await
    }

    async fn state(&self, execution_name: &str) -> Result<ExecutionState, WorkflowError> {
        self.inner.state(execution_name).await
    }

    async fn stop(&self, execution_name: &str) -> Result<(), WorkflowError> {
        self.inner.stop(execution_name).await
    }
}

fn uuid_like(prefix: &str) -> String {
    tasks_aws::testing::unique(prefix)
}
