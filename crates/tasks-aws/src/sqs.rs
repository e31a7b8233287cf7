//! [`DispatchQueue`] on an SQS queue.

use crate::error_message;
use async_trait::async_trait;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use tasks_core::{DispatchQueue, QueueError, QueueMessage};

/// SQS accepts at most this many entries in one SendMessageBatch.
const MAX_BATCH: usize = 10;

/// A message as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Up to `max_messages` (1-10) messages, waiting up to `wait_seconds` for the first: what
    /// Lambda's event source does, for the local runner.
    pub async fn receive(
        &self,
        max_messages: i32,
        wait_seconds: i32,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max_messages)
            .wait_time_seconds(wait_seconds)
            .send()
            .await
            .map_err(|e| QueueError(error_message(&e)))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|message| {
                Some(ReceivedMessage {
                    message_id: message.message_id?,
                    receipt_handle: message.receipt_handle?,
                    body: message.body.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Deletes received messages, ten per DeleteMessageBatch.
    pub async fn delete(&self, receipt_handles: &[String]) -> Result<(), QueueError> {
        for chunk in receipt_handles.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| QueueError(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError(error_message(&e)))?;
            if let Some(first) = output.failed.first() {
                return Err(QueueError(format!(
                    "{} of {} deletes failed, first: {}: {}",
                    output.failed.len(),
                    chunk.len(),
                    first.code,
                    first.message.as_deref().unwrap_or("no message")
                )));
            }
        }
        Ok(())
    }

    fn is_fifo(&self) -> bool {
        self.queue_url.ends_with(".fifo")
    }

    fn entry(
        &self,
        index: usize,
        message: &QueueMessage,
    ) -> Result<SendMessageBatchRequestEntry, QueueError> {
        let body = serde_json::to_string(message).map_err(|e| QueueError(e.to_string()))?;
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(body);
        let delay = message.delay(chrono::Utc::now()).as_secs();
        if delay > 0 && !self.is_fifo() {
            entry = entry.delay_seconds(delay as i32);
        }
        if self.is_fifo() {
            // A FIFO queue drops a second message of the same key within its 5-minute window.
            let key = message.key();
            entry = entry.message_group_id(&key).message_deduplication_id(&key);
        }
        entry.build().map_err(|e| QueueError(e.to_string()))
    }
}

/// The tasks of the entries SQS did not accept; entry ids are indexes into `messages`.
fn rejected_ids(
    messages: &[QueueMessage],
    failed: &[BatchResultErrorEntry],
) -> Result<Vec<String>, QueueError> {
    let mut rejected = Vec::new();
    for entry in failed {
        let message = entry
            .id
            .parse::<usize>()
            .ok()
            .and_then(|index| messages.get(index))
            .ok_or_else(|| QueueError(format!("SQS reported an unknown entry {}", entry.id)))?;
        tracing::warn!(message = %message.key(), code = %entry.code, reason = ?entry.message, "message not accepted");
        rejected.extend(message.task_ids().into_iter().map(str::to_string));
    }
    Ok(rejected)
}

#[async_trait]
impl DispatchQueue for SqsQueue {
    /// One SendMessageBatch; entry ids are the messages' indexes. More than ten messages is a
    /// caller's error, refused without a call.
    async fn send_batch(&self, messages: &[QueueMessage]) -> Result<Vec<String>, QueueError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        if messages.len() > MAX_BATCH {
            return Err(QueueError(format!(
                "at most {MAX_BATCH} messages per batch, got {}",
                messages.len()
            )));
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(index, message)| self.entry(index, message))
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError(error_message(&e)))?;
        rejected_ids(messages, &output.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn failed(id: &str) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .code("InternalError")
            .sender_fault(false)
            .build()
            .unwrap()
    }

    #[test]
    fn failed_entries_are_reported_by_task_id() {
        let messages: Vec<QueueMessage> = ["a", "b", "c"]
            .map(|id| {
                QueueMessage::Task(tasks_core::DispatchMessage {
                    id: id.to_string(),
                    timestamp: Utc::now(),
                    series: 1,
                })
            })
            .to_vec();
        assert_eq!(
            rejected_ids(&messages, &[failed("2"), failed("0")]),
            Ok(vec!["c".to_string(), "a".to_string()])
        );
        assert_eq!(rejected_ids(&messages, &[]), Ok(vec![]));
        assert!(rejected_ids(&messages, &[failed("3")]).is_err());
        assert!(rejected_ids(&messages, &[failed("x")]).is_err());
    }
}
