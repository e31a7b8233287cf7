//! The Lambda Runtime API (2018-06-01) as one function's process sees it: `next` hands out the
//! queued events one at a time, `response` and `error` complete the invocation.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How an invocation ended, as the Lambda service reports it to the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    Response(Value),
    Error {
        error_type: String,
        error_message: String,
    },
}

impl Invocation {
    pub fn response(self) -> Value {
        match self {
            Invocation::Response(value) => value,
            Invocation::Error {
                error_type,
                error_message,
            } => panic!("expected a response, got error {error_type}: {error_message}"),
        }
    }

    pub fn error_type(&self) -> Option<&str> {
        match self {
            Invocation::Error { error_type, .. } => Some(error_type),
            Invocation::Response(_) => None,
        }
    }
}

struct Shared {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Invocation>>>,
}

/// The emulator, on a free loopback port.
pub struct RuntimeApi {
    address: String,
    events: mpsc::UnboundedSender<(String, Value)>,
    shared: Arc<Shared>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Runtime API emulator");
        let address = listener.local_addr().expect("its address").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        RuntimeApi {
            address,
            events,
            shared,
        }
    }

    /// `host:port`, as `AWS_LAMBDA_RUNTIME_API` names it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Queues `event` for the function's next poll and waits for its outcome; `None` when the
    /// function did not answer within `timeout`.
    pub async fn invoke(&self, event: Value, timeout: Duration) -> Option<Invocation> {
        let id = uuid::Uuid::new_v4().to_string();
        let (done, outcome) = oneshot::channel();
        self.shared.waiting.lock().unwrap().insert(id.clone(), done);
        self.events.send((id.clone(), event)).ok()?;
        let outcome = tokio::time::timeout(timeout, outcome).await;
        self.shared.waiting.lock().unwrap().remove(&id);
        outcome.ok()?.ok()
    }

    /// Like `invoke`, also returning the time from the call to the recorded outcome.
    pub async fn timed_invoke(
        &self,
        event: Value,
        timeout: Duration,
    ) -> Option<(Invocation, Duration)> {
        let started = Instant::now();
        let outcome = self.invoke(event, timeout).await?;
        Some((outcome, started.elapsed()))
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let Some((id, event)) = shared.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = chrono::Utc::now().timestamp_millis() + 900_000;
    (
        [
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:local".to_string(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0"
                    .to_string(),
            ),
            ("content-type", "application/json".to_string()),
        ],
        event.to_string(),
    )
        .into_response()
}

fn complete(shared: &Shared, id: &str, outcome: Invocation) -> StatusCode {
    match shared.waiting.lock().unwrap().remove(id) {
        Some(done) => {
            let _ = done.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn respond(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    complete(&shared, &id, Invocation::Response(value))
}

async fn fail(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let error_type = body["errorType"]
        .as_str()
        .or_else(|| {
            headers
                .get("lambda-runtime-function-error-type")
                .and_then(|value| value.to_str().ok())
        })
        .unwrap_or_default()
        .to_string();
    let error_message = body["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    complete(
        &shared,
        &id,
        Invocation::Error {
            error_type,
            error_message,
        },
    )
}

async fn init_error(body: Bytes) -> StatusCode {
    eprintln!(
        "the function failed to initialise: {}",
        String::from_utf8_lossy(&body)
    );
    StatusCode::ACCEPTED
}
