//! An SQS standard queue with the semantics AWS documents: at-least-once delivery (a message may
//! come twice), no order, a visibility timeout after each receive (a message not deleted in time
//! comes back), `maxReceiveCount` receives and then the dead-letter queue, per-entry failures in
//! a batch, a batch accepted whose response was lost (the sender sees an error for messages
//! that were sent), and a message delayed by its sender (`DelaySeconds`).

use crate::world::{ReportedRetry, World, SDK_ATTEMPTS};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tasks_core::contracts::AttemptOutcome;
use tasks_core::{Clock, DispatchQueue, QueueError, QueueMessage};
use tokio::sync::Notify;
use tokio::time::Instant;

struct Message {
    body: QueueMessage,
    visible_at: Instant,
    receives: u32,
}

pub struct SimQueue {
    world: Arc<World>,
    visibility_timeout: std::time::Duration,
    max_receive_count: u32,
    next_id: Mutex<u64>,
    messages: Mutex<BTreeMap<u64, Message>>,
    dead_letters: Mutex<Vec<QueueMessage>>,
    arrived: Notify,
}

/// A received message: delete it by `receipt` once handled.
pub struct Received {
    pub receipt: u64,
    pub body: QueueMessage,
}

impl SimQueue {
    pub fn new(
        world: Arc<World>,
        visibility_timeout: std::time::Duration,
        max_receive_count: u32,
    ) -> Self {
        SimQueue {
            world,
            visibility_timeout,
            max_receive_count,
            next_id: Mutex::new(0),
            messages: Mutex::new(BTreeMap::new()),
            dead_letters: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        }
    }

    fn enqueue(&self, body: QueueMessage) {
        let delay = body.delay(self.world.clock.now());
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            *next
        };
        for task in body.task_ids() {
            self.world
                .record(task, format!("queued in {} as message {id}", body.key()));
        }
        self.messages.lock().unwrap().insert(
            id,
            Message {
                body,
                visible_at: Instant::now() + delay,
                receives: 0,
            },
        );
        self.arrived.notify_waiters();
    }

    /// Long-polls for up to `max` visible messages, in no particular order, for at most `wait`.
    /// A message past its last receive goes to the dead-letter queue instead.
    pub async fn receive(&self, max: usize, wait: std::time::Duration) -> Vec<Received> {
        self.world.call("sqs.ReceiveMessage");
        let deadline = Instant::now() + wait;
        loop {
            let received = self.take_visible(max);
            if !received.is_empty() || Instant::now() >= deadline {
                return received;
            }
            let next_visible = self
                .messages
                .lock()
                .unwrap()
                .values()
                .map(|message| message.visible_at)
                .min()
                .unwrap_or(deadline)
                .min(deadline);
            tokio::select! {
                biased;
                _ = self.arrived.notified() => {}
                _ = tokio::time::sleep_until(next_visible.max(Instant::now())) => {}
            }
        }
    }

    fn take_visible(&self, max: usize) -> Vec<Received> {
        let now = Instant::now();
        let mut messages = self.messages.lock().unwrap();
        let mut visible: Vec<u64> = messages
            .iter()
            .filter(|(_, message)| message.visible_at <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut received = Vec::new();
        while !visible.is_empty() && received.len() < max {
            let id = visible.swap_remove(self.world.index(visible.len()));
            let message = messages.get_mut(&id).expect("a visible message");
            if message.receives >= self.max_receive_count {
                let message = messages.remove(&id).expect("a visible message");
                for task in message.body.task_ids() {
                    self.world.record(task, "moved to the DLQ");
                }
                self.dead_letters.lock().unwrap().push(message.body);
                continue;
            }
            message.receives += 1;
            message.visible_at = now + self.visibility_timeout;
            received.push(Received {
                receipt: id,
                body: message.body.clone(),
            });
        }
        received
    }

    /// DeleteMessageBatch of the handled messages' receipts.
    pub fn delete(&self, receipts: &[u64]) {
        if receipts.is_empty() {
            return;
        }
        self.world.call("sqs.DeleteMessageBatch");
        let mut messages = self.messages.lock().unwrap();
        for receipt in receipts {
            messages.remove(receipt);
        }
    }

    pub fn dead_letters(&self) -> Vec<QueueMessage> {
        self.dead_letters.lock().unwrap().clone()
    }
}

#[async_trait]
impl DispatchQueue for SimQueue {
    async fn send_batch(&self, messages: &[QueueMessage]) -> Result<Vec<String>, QueueError> {
        self.world.call("sqs.SendMessageBatch");
        self.world.latency(5, 20).await;
        let faults = self.world.faults;
        if self.world.fault("sqs.error", faults.queue_error) {
            return Err(QueueError("InternalError".into()));
        }
        let mut rejected = Vec::new();
        let mut accepted = Vec::new();
        for message in messages {
            if self
                .world
                .fault("sqs.entry_error", faults.queue_entry_error)
            {
                rejected.extend(message.task_ids().into_iter().map(str::to_string));
                continue;
            }
            if let QueueMessage::HandOver(hand_over) = message {
                let report = &hand_over.result;
                if let Some(at) = report
                    .retry_at
                    .filter(|_| report.outcome == AttemptOutcome::Retry)
                {
                    self.world.retry_reported(ReportedRetry {
                        task_id: hand_over.task.id.clone(),
                        series: hand_over.task.series,
                        after_attempt: report.attempt,
                        at,
                    });
                }
            }
            self.enqueue(message.clone());
            if self.world.fault("sqs.duplicate", faults.queue_duplicate) {
                self.enqueue(message.clone());
            }
            accepted.push(message);
        }
        // An accepted batch whose answer was lost is sent again by the SDK, and SQS accepts it
        // again: after one lost answer the retry's is the caller's; when every answer is lost,
        // each of the SDK's attempts put the batch on the queue once more.
        let (resends, answered) = if self.world.fault("sqs.ambiguous", faults.queue_ambiguous) {
            (1, true)
        } else if self.world.fault("sqs.unanswered", faults.queue_unanswered) {
            (SDK_ATTEMPTS - 1, false)
        } else {
            (0, true)
        };
        for _ in 0..resends {
            self.world.sdk_retry("sqs.SendMessageBatch", 5, 20).await;
            for message in &accepted {
                self.enqueue((*message).clone());
            }
        }
        if !answered {
            return Err(QueueError("the response was lost".into()));
        }
        Ok(rejected)
    }
}
