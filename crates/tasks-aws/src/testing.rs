//! Test fixtures: uniquely named resources on the shared local emulator, so integration tests
//! in any crate can run in parallel against one emulator process.

use crate::fault_proxy::FaultProxy;
use crate::{bootstrap, DynamoDbStore, SqsQueue, StepFunctionsWorkflow};
use aws_config::SdkConfig;
use tasks_core::{DispatchMessage, QueueMessage};

pub struct Resources {
    pub config: SdkConfig,
    pub table_name: String,
    pub queue_url: String,
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The shared emulator's SDK configuration. Panics (fails the test, never skips it) with the
/// emulator's own message when it is not installed.
pub async fn emulator_config() -> SdkConfig {
    let endpoint = local_emulator::shared_endpoint()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    crate::emulator_config(endpoint).await
}

impl Resources {
    /// A new table (with its index) and queue (with its DLQ).
    pub async fn create() -> Self {
        let config = emulator_config().await;
        let table_name = unique("tasks");
        let (_, queue) = bootstrap::local_resources(&config, &table_name, &unique("queue"))
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Resources {
            config,
            table_name,
            queue_url: queue.queue_url().to_string(),
        }
    }

    /// The same resources reached through a new [`FaultProxy`] in front of the emulator: the
    /// clients of the copy meet the faults the proxy is told to inject.
    pub async fn behind_fault_proxy(&self) -> (Resources, FaultProxy) {
        let emulator = local_emulator::shared_endpoint()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let proxy = FaultProxy::start(emulator)
            .await
            .unwrap_or_else(|error| panic!("could not start the fault proxy: {error}"));
        let resources = Resources {
            config: crate::emulator_config(proxy.endpoint()).await,
            table_name: self.table_name.clone(),
            queue_url: self.queue_url.clone(),
        };
        (resources, proxy)
    }

    pub fn store(&self) -> DynamoDbStore {
        DynamoDbStore::new(
            aws_sdk_dynamodb::Client::new(&self.config),
            &self.table_name,
        )
    }

    pub fn queue(&self) -> SqsQueue {
        SqsQueue::new(aws_sdk_sqs::Client::new(&self.config), &self.queue_url)
    }

    /// A workflow adapter for a state machine that does not exist: starts fail, stops are no-ops.
    pub fn workflow(&self) -> StepFunctionsWorkflow {
        StepFunctionsWorkflow::new(
            aws_sdk_sfn::Client::new(&self.config),
            "arn:aws:states:us-east-1:123456789012:stateMachine:absent",
        )
    }

    /// A workflow adapter for a new state machine that only waits a minute, so that the
    /// executions it starts can be listed while they run.
    pub async fn waiting_workflow(&self) -> StepFunctionsWorkflow {
        let client = aws_sdk_sfn::Client::new(&self.config);
        let definition =
            r#"{"StartAt":"Wait","States":{"Wait":{"Type":"Wait","Seconds":60,"End":true}}}"#;
        let arn = bootstrap::ensure_state_machine(
            &client,
            &unique("machine"),
            definition,
            "arn:aws:iam::123456789012:role/tasks-test",
        )
        .await
        .unwrap_or_else(|error| panic!("{error}"));
        StepFunctionsWorkflow::new(client, arn)
    }

    /// The names of the executions a workflow adapter's state machine has.
    pub async fn execution_names(&self, workflow: &StepFunctionsWorkflow) -> Vec<String> {
        aws_sdk_sfn::Client::new(&self.config)
            .list_executions()
            .state_machine_arn(workflow.state_machine_arn())
            .send()
            .await
            .expect("list executions")
            .executions()
            .iter()
            .map(|execution| execution.name().to_string())
            .collect()
    }

    /// How many items the table holds (a consistent scan).
    pub async fn count_items(&self) -> usize {
        aws_sdk_dynamodb::Client::new(&self.config)
            .scan()
            .table_name(&self.table_name)
            .consistent_read(true)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .send()
            .await
            .expect("scan the test table")
            .count() as usize
    }

    /// Receives and deletes every message on the queue; returns the tasks they carry.
    pub async fn receive_all(&self) -> Vec<DispatchMessage> {
        let queue = self.queue();
        let mut all = Vec::new();
        loop {
            let messages = queue.receive(10, 0).await.expect("receive");
            if messages.is_empty() {
                return all;
            }
            let receipts: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
            queue.delete(&receipts).await.expect("delete");
            for message in &messages {
                match serde_json::from_str(&message.body).expect("a queue message") {
                    QueueMessage::Slot(slot) => all.extend(slot.tasks),
                    QueueMessage::HandOver(hand_over) => all.push(hand_over.task),
                    QueueMessage::Task(task) => all.push(task),
                }
            }
        }
    }
}
