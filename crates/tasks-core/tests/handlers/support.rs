use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;
use tasks_core::flow::api::Ports;
use tasks_core::request::signing::SigningSecretNames;
use tasks_core::testing::memory::{FixedClock, MemoryQueue, MemoryStore, MemoryWorkflow};
use tasks_core::{
    DeliveryError, Pacing, Task, TaskStatus, Webhook, WebhookCall, WebhookResponse, WebhookSender,
};

/// The in-memory deployment the API's commands act on, its clock fixed at [`now`].
pub struct World {
    pub store: MemoryStore,
    pub queue: MemoryQueue,
    pub workflow: MemoryWorkflow,
    pub clock: FixedClock,
    pub pacing: Pacing,
    /// The operator's signing secrets: [`SIGNING_SECRET`].
    pub signing_secrets: SigningSecretNames,
}

/// The one signing secret the operator created, for tasks to name.
pub const SIGNING_SECRET: &str = "billing";

/// The fixed time the command tests run at.
pub fn now() -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap()
}

impl World {
    pub fn new() -> Self {
        World {
            store: MemoryStore::new(),
            queue: MemoryQueue::new(),
            workflow: MemoryWorkflow::new(),
            clock: FixedClock::new(now()),
            pacing: Pacing::default(),
            signing_secrets: [SIGNING_SECRET].into_iter().collect(),
        }
    }

    pub fn ports(&self) -> Ports<'_> {
        Ports {
            store: &self.store,
            queue: &self.queue,
            workflow: &self.workflow,
            clock: &self.clock,
            pacing: &self.pacing,
            signing_secrets: &self.signing_secrets,
        }
    }
}

pub fn task(id: &str, timestamp: DateTime<Utc>, status: TaskStatus) -> Task {
    let created = timestamp - Duration::hours(1);
    Task {
        task_status: status,
        ..Task::new(id, timestamp, Pacing::default().lead_time, created)
    }
}

pub fn webhook() -> Webhook {
    Webhook::new("https://receiver.example/hook", "POST")
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
    pub answer: Result<WebhookResponse, DeliveryError>,
    pub refuse_on_prepare: bool,
    pub sent: Mutex<Vec<(String, u32, DateTime<Utc>)>>,
    /// The `webhook-id` of each request sent, in order.
    pub message_ids: Mutex<Vec<String>>,
}

impl RecordingSender {
    /// Answers with this HTTP status, or fails to get an answer.
    pub fn answering(answer: Result<u16, DeliveryError>) -> Self {
        RecordingSender {
            answer: answer.map(|status| WebhookResponse {
                status,
                retry_after: None,
                body: format!("answer {status}"),
            }),
            refuse_on_prepare: false,
            sent: Mutex::new(Vec::new()),
            message_ids: Mutex::new(Vec::new()),
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

    async fn send(&self, call: WebhookCall<'_>) -> Result<WebhookResponse, DeliveryError> {
        self.sent
            .lock()
            .unwrap()
            .push((call.task.id.clone(), call.attempt, Utc::now()));
        self.message_ids.lock().unwrap().push(call.message_id);
        self.answer.clone()
    }
}
