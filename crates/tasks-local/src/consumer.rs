//! Plays Lambda's SQS event source: long-polls the queue and feeds batches of up to ten records
//! to process-sqs-records, deleting only the records it did not report as failed.

use aws_lambda_events::event::sqs::SqsEvent;
use process_sqs_records::ProcessRecords;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use tasks_aws::SqsQueue;

/// Concurrent pollers, as Lambda's event source starts with.
pub const POLLERS: usize = 5;
/// Seconds a receive waits for messages, as an event source mapping does.
const LONG_POLL_SECONDS: i32 = 1;

pub async fn consume(queue: &SqsQueue, handler: &ProcessRecords) {
    loop {
        let messages = match queue.receive(10, LONG_POLL_SECONDS).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "receive failed; polling again shortly");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let records: Vec<_> = messages
            .iter()
            .map(|m| json!({"messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body}))
            .collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records }))
            .expect("an SQS event built from received messages");
        let response = handler.handle(event).await;
        let failed: HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|failure| failure.item_identifier)
            .collect();
        let done: Vec<String> = messages
            .into_iter()
            .filter(|m| !failed.contains(&m.message_id))
            .map(|m| m.receipt_handle)
            .collect();
        if let Err(error) = queue.delete(&done).await {
            tracing::warn!(%error, "delete failed; the records will be delivered again (starts are idempotent)");
        }
    }
}
