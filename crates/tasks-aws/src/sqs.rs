//! [`DispatchQueue`] on an SQS queue.

use crate::error_message;
use async_trait::async_trait;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use tasks_core::{DispatchMessage, DispatchQueue, QueueError};

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
        message: &DispatchMessage,
    ) -> Result<SendMessageBatchRequestEntry, QueueError> {
        let body = serde_json::to_string(message).map_err(|e| QueueError(e.to_string()))?;
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(body);
        if self.is_fifo() {
            // A FIFO queue drops a second message for the same task within its 5-minute window.
            entry = entry
                .message_group_id(&message.id)
                .message_deduplication_id(&message.id);
        }
        entry.build().map_err(|e| QueueError(e.to_string()))
    }
}

/// The tasks of the entries SQS did not accept; entry ids are indexes into `messages`.
fn rejected_ids(
    messages: &[DispatchMessage],
    failed: &[BatchResultErrorEntry],
) -> Result<Vec<String>, QueueError> {
    failed
        .iter()
        .map(|entry| {
            let message = entry
                .id
                .parse::<usize>()
                .ok()
                .and_then(|index| messages.get(index))
                .ok_or_else(|| QueueError(format!("SQS reported an unknown entry {}", entry.id)))?;
            tracing::warn!(task_id = %message.id, code = %entry.code, reason = ?entry.message, "message not accepted");
            Ok(message.id.clone())
        })
        .collect()
}

#[async_trait]
impl DispatchQueue for SqsQueue {
    /// One SendMessageBatch; entry ids are the messages' indexes. More than ten messages is a
    /// caller's error, refused without a call.
    async fn send_batch(&self, messages: &[DispatchMessage]) -> Result<Vec<String>, QueueError> {
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
        let messages: Vec<DispatchMessage> = ["a", "b", "c"]
            .map(|id| DispatchMessage {
                id: id.to_string(),
                timestamp: Utc::now(),
                series: 1,
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
