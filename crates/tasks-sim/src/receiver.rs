//! Webhook receivers: each request is recorded as received (when the receiver got it), then
//! answered as the fault rates say: 2xx after a latency, 5xx, 429, an answer slower than the
//! timeout (received, but the sender sees a timeout: an ambiguous outcome), a refused connection
//! (not received), or 410 for a receiver that is gone for good.

use crate::world::World;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tasks_core::{Clock, DeliveryError, Webhook, WebhookCall, WebhookResponse, WebhookSender};

/// One request a receiver got.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub task_id: String,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    /// The task's time when the request was sent.
    pub due: DateTime<Utc>,
    /// The task's series when the request was sent.
    pub series: u32,
    /// The `Idempotency-Key` (and `webhook-id`) the request carried.
    pub key: String,
    /// Whether the sender got a 2xx answer: the attempt was delivered.
    pub succeeded: bool,
}

/// A failure callback that reached its receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    pub task_id: String,
    /// The task's series when the callback was sent.
    pub series: u32,
}

pub struct SimReceivers {
    world: Arc<World>,
    timeout: std::time::Duration,
    gone: Mutex<BTreeSet<String>>,
    deliveries: Mutex<Vec<Delivery>>,
    callbacks: Mutex<Vec<Callback>>,
}

impl SimReceivers {
    pub fn new(world: Arc<World>, timeout: std::time::Duration) -> Self {
        SimReceivers {
            world,
            timeout,
            gone: Mutex::new(BTreeSet::new()),
            deliveries: Mutex::new(Vec::new()),
            callbacks: Mutex::new(Vec::new()),
        }
    }

    /// The receiver of this task answers 410 Gone.
    /// The receiver at `url` answers 410 from now on.
    pub fn make_gone(&self, url: &str) {
        self.gone.lock().unwrap().insert(url.to_string());
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }
}

#[async_trait]
impl WebhookSender for SimReceivers {
    async fn prepare(&self, _: &Webhook) -> Result<(), DeliveryError> {
        self.world.latency(0, 3).await;
        Ok(())
    }

    async fn send(&self, call: WebhookCall<'_>) -> Result<WebhookResponse, DeliveryError> {
        if call.message_id.contains("-failed-") {
            return Ok(self.callback(&call).await);
        }
        if self
            .world
            .fault("webhook.unreachable", self.world.faults.webhook_unreachable)
        {
            self.world.latency(1, 5).await;
            return Err(DeliveryError::Connection("connection refused".into()));
        }
        self.world.latency(0, 3).await;
        let at = self.world.clock.now();
        self.deliveries.lock().unwrap().push(Delivery {
            task_id: call.task.id.clone(),
            attempt: call.attempt,
            at,
            due: call.task.timestamp,
            series: call.task.series,
            key: call.message_id.clone(),
            succeeded: false,
        });
        let answer = self.answer(&call).await;
        if answer
            .as_ref()
            .is_ok_and(|answer| answer.failure().is_none())
        {
            if let Some(delivery) =
                self.deliveries
                    .lock()
                    .unwrap()
                    .iter_mut()
                    .rev()
                    .find(|delivery| {
                        delivery.key == call.message_id && delivery.attempt == call.attempt
                    })
            {
                delivery.succeeded = true;
            }
        }
        answer
    }
}

impl SimReceivers {
    /// A failure callback reached its receiver: kept apart from the webhook's deliveries.
    async fn callback(&self, call: &WebhookCall<'_>) -> WebhookResponse {
        self.world.latency(0, 3).await;
        self.world.record(
            &call.task.id,
            format!("failure callback of series {}", call.task.series),
        );
        self.callbacks.lock().unwrap().push(Callback {
            task_id: call.task.id.clone(),
            series: call.task.series,
        });
        WebhookResponse {
            status: 204,
            retry_after: None,
            body: String::new(),
        }
    }

    pub fn callbacks(&self) -> Vec<Callback> {
        self.callbacks.lock().unwrap().clone()
    }

    /// The receiver's answer to a request that reached it.
    async fn answer(&self, call: &WebhookCall<'_>) -> Result<WebhookResponse, DeliveryError> {
        let faults = self.world.faults;
        let id = &call.task.id;
        let at = self.world.clock.now();
        self.world.record(
            id,
            format!(
                "delivered attempt {} {} ms after its time",
                call.attempt,
                (at - call.task.timestamp).num_milliseconds()
            ),
        );
        if self.gone.lock().unwrap().contains(&call.webhook.url) {
            self.world.latency(2, 20).await;
            return Ok(answer(410, None));
        }
        if self.world.fault("webhook.slow", faults.webhook_slow) {
            tokio::time::sleep(self.timeout).await;
            return Err(DeliveryError::Timeout(self.timeout.as_millis() as u64));
        }
        if self.world.fault("webhook.5xx", faults.webhook_error) {
            self.world.latency(2, 30).await;
            return Ok(answer(503, None));
        }
        if self.world.fault("webhook.429", faults.webhook_throttled) {
            self.world.latency(2, 30).await;
            // Some throttling receivers say when to come back.
            let retry_after = self.world.chance(0.5).then_some(5);
            return Ok(answer(429, retry_after));
        }
        self.world.latency(5, 60).await;
        Ok(answer(200, None))
    }
}

fn answer(status: u16, retry_after: Option<u32>) -> WebhookResponse {
    WebhookResponse {
        status,
        retry_after,
        body: format!("{{\"status\": {status}}}"),
    }
}
