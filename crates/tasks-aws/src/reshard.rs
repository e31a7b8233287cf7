//! Gives every item the status index key its status and id call for ([`SHARD_ATTRIBUTE`]).
//!
//! Items written before the index was sharded have no `statusShard` and are missing from the
//! index: the cron would never see them. Every write since sets it with the status, so one pass
//! after the upgrade is deployed is enough; a second finds nothing to do.

use crate::dynamodb::{unavailable, SHARD_ATTRIBUTE};
use crate::DynamoDbStore;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use tasks_core::{StoreError, TaskStatus};

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resharded {
    pub scanned: u64,
    /// Items given their key.
    pub rewritten: u64,
    /// Items written by someone else between the scan and the update (which sets the key).
    pub changed_meanwhile: u64,
    /// Ids of items whose `taskStatus` is not a status: no key is right for them.
    pub not_tasks: Vec<String>,
}

impl DynamoDbStore {
    /// Scans the table and sets the key of each item whose key is missing or not its status's,
    /// conditional on the status it was read with.
    pub async fn reshard(&self) -> Result<Resharded, StoreError> {
        let (client, table) = (self.client(), self.table_name());
        let mut report = Resharded::default();
        let mut start_key = None;
        loop {
            let page = client
                .scan()
                .table_name(table)
                .projection_expression("#id, #status, #shard")
                .expression_attribute_names("#id", "id")
                .expression_attribute_names("#status", "taskStatus")
                .expression_attribute_names("#shard", SHARD_ATTRIBUTE)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                report.scanned += 1;
                reshard_item(client, table, item, &mut report).await?;
            }
            match page.last_evaluated_key.filter(|key| !key.is_empty()) {
                Some(key) => start_key = Some(key),
                None => return Ok(report),
            }
        }
    }
}

async fn reshard_item(
    client: &Client,
    table: &str,
    item: &HashMap<String, AttributeValue>,
    report: &mut Resharded,
) -> Result<(), StoreError> {
    let text = |name: &str| item.get(name).and_then(|value| value.as_s().ok());
    let Some(id) = text("id") else {
        return Ok(());
    };
    let Some(status) = text("taskStatus").and_then(|status| status.parse::<TaskStatus>().ok())
    else {
        report.not_tasks.push(id.clone());
        return Ok(());
    };
    let key = status.shard_key(id);
    if text(SHARD_ATTRIBUTE) == Some(&key) {
        return Ok(());
    }
    let result = client
        .update_item()
        .table_name(table)
        .key("id", AttributeValue::S(id.clone()))
        .condition_expression("#status = :status")
        .update_expression("SET #shard = :shard")
        .expression_attribute_names("#status", "taskStatus")
        .expression_attribute_names("#shard", SHARD_ATTRIBUTE)
        .expression_attribute_values(":status", AttributeValue::S(status.to_string()))
        .expression_attribute_values(":shard", AttributeValue::S(key))
        .send()
        .await;
    match result {
        Ok(_) => report.rewritten += 1,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            report.changed_meanwhile += 1
        }
        Err(error) => return Err(unavailable(error)),
    }
    Ok(())
}
