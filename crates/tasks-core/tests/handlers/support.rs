use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;
use tasks_core::memory::MemoryStore;
use tasks_core::{DeliveryError, Task, TaskStatus, Webhook, WebhookCall, WebhookSender};

pub fn task(id: &str, timestamp: DateTime<Utc>, status: TaskStatus) -> Task {
    let schedule = tasks_core::Schedule::default();
    Task {
        id: id.to_string(),
        timestamp,
        start_execution_at: schedule.start_execution_at(timestamp),
        task_status: status,
        created_at: timestamp - Duration::hours(1),
        last_updated_at: timestamp - Duration::hours(1),
        webhook: None,
        payload: None,
        attempts: 0,
        last_error: None,
        executed_at: None,
        lateness_ms: None,
        idempotency_key: None,
        request_digest: None,
    }
}

pub fn webhook() -> Webhook {
    Webhook {
        url: "https://receiver.example/hook".into(),
        method: "POST".into(),
        headers: Default::default(),
        body: None,
    }
}

pub fn status_of(store: &MemoryStore, id: &str) -> TaskStatus {
    store
        .tasks()
        .into_iter()
        .find(|task| task.id == id)
        .expect("task exists")
        .task_status
}

/// A webhook receiver stand-in: answers with a set result and records when each call was sent.
pub struct RecordingSender {
    pub answer: Result<u16, DeliveryError>,
    pub refuse_on_prepare: bool,
    pub sent: Mutex<Vec<(String, u32, DateTime<Utc>)>>,
}

impl RecordingSender {
    pub fn answering(answer: Result<u16, DeliveryError>) -> Self {
        RecordingSender {
            answer,
            refuse_on_prepare: false,
            sent: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl WebhookSender for RecordingSender {
    async fn prepare(&self, _: &Webhook) -> Result<(), DeliveryError> {
        if self.refuse_on_prepare {
            return Err(DeliveryError::Refused(
                "127.0.0.1 is a loopback address".into(),
            ));
        }
        Ok(())
    }

    async fn send(&self, call: WebhookCall<'_>) -> Result<u16, DeliveryError> {
        self.sent
            .lock()
            .unwrap()
            .push((call.task.id.clone(), call.attempt, Utc::now()));
        self.answer.clone()
    }
}
