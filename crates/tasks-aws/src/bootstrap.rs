//! Idempotent creation of the service's resources for local runs and tests; deployments get
//! theirs from the infrastructure templates. Names are parameters: production uses
//! `tasksTable-<stage>` and `tasksQueue-<stage>`.

use crate::error_message;
use crate::{DynamoDbStore, SqsQueue, SHARD_ATTRIBUTE, STATUS_INDEX};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use std::time::{Duration, Instant};
use tasks_core::rules::timing::{QUEUE_MAX_RECEIVE_COUNT, QUEUE_VISIBILITY_TIMEOUT};

const ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{resource}: {message}")]
pub struct BootstrapError {
    pub resource: String,
    pub message: String,
}

impl BootstrapError {
    fn new<E>(resource: &str, error: SdkError<E>) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
    {
        BootstrapError {
            resource: resource.to_string(),
            message: error_message(&error),
        }
    }
}

/// Creates the task table with its status index (on-demand capacity) unless it exists, and
/// waits until both are ACTIVE.
pub async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BootstrapError> {
    let failed = |error: BuildError| BootstrapError {
        resource: name.to_string(),
        message: error.to_string(),
    };
    let attribute = |attribute: &str, kind| {
        AttributeDefinition::builder()
            .attribute_name(attribute)
            .attribute_type(kind)
            .build()
            .map_err(failed)
    };
    let key = |attribute: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(attribute)
            .key_type(kind)
            .build()
            .map_err(failed)
    };
    let index = GlobalSecondaryIndex::builder()
        .index_name(STATUS_INDEX)
        .key_schema(key(SHARD_ATTRIBUTE, KeyType::Hash)?)
        .key_schema(key("startExecutionAt", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(failed)?;
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("id", ScalarAttributeType::S)?)
        .attribute_definitions(attribute(SHARD_ATTRIBUTE, ScalarAttributeType::S)?)
        .attribute_definitions(attribute("startExecutionAt", ScalarAttributeType::N)?)
        .key_schema(key("id", KeyType::Hash)?)
        .global_secondary_indexes(index)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(error) => return Err(BootstrapError::new(name, error)),
    }
    wait_until_active(client, name).await
}

async fn wait_until_active(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BootstrapError> {
    let started = Instant::now();
    loop {
        let table = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| BootstrapError::new(name, e))?
            .table;
        let active = table.as_ref().is_some_and(|table| {
            table.table_status == Some(TableStatus::Active)
                && table
                    .global_secondary_indexes()
                    .iter()
                    .all(|index| index.index_status == Some(IndexStatus::Active))
        });
        if active {
            return Ok(());
        }
        if started.elapsed() > ACTIVE_TIMEOUT {
            return Err(BootstrapError {
                resource: name.to_string(),
                message: format!("not ACTIVE after {ACTIVE_TIMEOUT:?}"),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The table and the queue called `table_name` and `queue_name`, created if missing, with their
/// adapters.
pub async fn local_resources(
    config: &SdkConfig,
    table_name: &str,
    queue_name: &str,
) -> Result<(DynamoDbStore, SqsQueue), BootstrapError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    ensure_table(&dynamodb, table_name).await?;
    let queue_url = ensure_queue(&sqs, queue_name).await?;
    Ok((
        DynamoDbStore::new(dynamodb, table_name),
        SqsQueue::new(sqs, queue_url),
    ))
}

/// Creates the queue and its dead-letter queue `<name>-dlq` (`<base>-dlq.fifo` for a FIFO
/// queue) unless they exist; returns the queue's URL.
pub async fn ensure_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
) -> Result<String, BootstrapError> {
    let dlq_name = match name.strip_suffix(".fifo") {
        Some(base) => format!("{base}-dlq.fifo"),
        None => format!("{name}-dlq"),
    };
    let dlq_url = create_queue(client, &dlq_name, None).await?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| BootstrapError::new(&dlq_name, e))?
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| BootstrapError {
            resource: dlq_name.clone(),
            message: "no QueueArn attribute".to_string(),
        })?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": QUEUE_MAX_RECEIVE_COUNT,
    });
    create_queue(client, name, Some(redrive.to_string())).await
}

/// CreateQueue returns the existing queue when the attributes are the same.
async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    redrive_policy: Option<String>,
) -> Result<String, BootstrapError> {
    let mut request = client.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    if let Some(policy) = redrive_policy {
        // The dispatch queue times out as the deployed one does (SQS's default is 30 s).
        request = request
            .attributes(QueueAttributeName::RedrivePolicy, policy)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                QUEUE_VISIBILITY_TIMEOUT.num_seconds().to_string(),
            );
    }
    request
        .send()
        .await
        .map_err(|e| BootstrapError::new(name, e))?
        .queue_url
        .ok_or_else(|| BootstrapError {
            resource: name.to_string(),
            message: "CreateQueue returned no URL".to_string(),
        })
}

/// Returns the ARN of the state machine called `name`, creating it if there is none. An
/// existing machine is kept as it is, definition included. On moto, post the emulator's
/// configuration first: it executes only machines created after it.
pub async fn ensure_state_machine(
    client: &aws_sdk_sfn::Client,
    name: &str,
    definition_json: &str,
    role_arn: &str,
) -> Result<String, BootstrapError> {
    let mut pages = client.list_state_machines().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| BootstrapError::new(name, e))?;
        if let Some(machine) = page.state_machines.into_iter().find(|m| m.name == name) {
            return Ok(machine.state_machine_arn);
        }
    }
    let created = client
        .create_state_machine()
        .name(name)
        .definition(definition_json)
        .role_arn(role_arn)
        .send()
        .await
        .map_err(|e| BootstrapError::new(name, e))?;
    Ok(created.state_machine_arn)
}
