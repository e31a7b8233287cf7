use api::{router, AppState};
use axum::body::Body;
use axum::http::Request;
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tasks_core::request::signing::SigningSecretNames;
use tasks_core::testing::memory::{MemoryQueue, MemoryStore, MemoryWorkflow};
use tasks_core::{Pacing, SystemClock, Task, TaskStore};
use tower::ServiceExt;

enum Backend {
    Memory {
        store: Arc<MemoryStore>,
        queue: Arc<MemoryQueue>,
    },
    Emulator(Box<tasks_aws::testing::Resources>),
}

/// The signing secrets every test app's operator created: tasks may name `billing`.
pub const SIGNING_SECRET: &str = "billing";

fn signing_secrets() -> SigningSecretNames {
    [SIGNING_SECRET].into_iter().collect()
}

pub struct TestApp {
    router: Router,
    backend: Backend,
}

impl TestApp {
    pub async fn memory() -> Self {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let state = AppState {
            store: store.clone(),
            queue: queue.clone(),
            workflow: Arc::new(MemoryWorkflow::new()),
            clock: Arc::new(SystemClock),
            pacing: Pacing::default(),
            signing_secrets: signing_secrets(),
            diagnostics: Default::default(),
        };
        TestApp {
            router: router(state),
            backend: Backend::Memory { store, queue },
        }
    }

    /// Fresh table, queue and state machine on the shared emulator.
    pub async fn emulator() -> Self {
        let resources = tasks_aws::testing::Resources::create().await;
        let state = AppState {
            store: Arc::new(resources.store()),
            queue: Arc::new(resources.queue()),
            workflow: Arc::new(resources.workflow()),
            clock: Arc::new(SystemClock),
            pacing: Pacing::default(),
            signing_secrets: signing_secrets(),
            diagnostics: Default::default(),
        };
        TestApp {
            router: router(state),
            backend: Backend::Emulator(Box::new(resources)),
        }
    }

    /// The same app behind the `x-api-key` check.
    pub fn with_api_keys(mut self, keys: &[&str]) -> Self {
        let keys: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
        self.router = api::require_api_key(self.router, &keys);
        self
    }

    pub fn memory_store(&self) -> &MemoryStore {
        match &self.backend {
            Backend::Memory { store, .. } => store,
            Backend::Emulator(_) => panic!("not an in-memory app"),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .header("content-type", "application/json")
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{method} {uri}: not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, json)
    }

    /// Stores a task as it is (test set-up: a state the API alone would take long to reach).
    pub async fn put(&self, task: &Task) {
        match &self.backend {
            Backend::Memory { store, .. } => store.put(task.clone()),
            Backend::Emulator(resources) => resources.store().create(task).await.unwrap(),
        }
    }

    /// How many tasks the store holds.
    pub async fn stored(&self) -> usize {
        match &self.backend {
            Backend::Memory { store, .. } => store.tasks().len(),
            Backend::Emulator(resources) => resources.count_items().await,
        }
    }

    /// The task ids on the queue.
    pub async fn queued(&self) -> Vec<String> {
        match &self.backend {
            Backend::Memory { queue, .. } => queue.queued().into_iter().map(|m| m.id).collect(),
            Backend::Emulator(resources) => resources
                .receive_all()
                .await
                .into_iter()
                .map(|m| m.id)
                .collect(),
        }
    }
}
