//! A small client for the Tasks API.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::time::{Duration, Instant};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HEALTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_POLL: Duration = Duration::from_millis(250);
const CREATE_ATTEMPTS: u32 = 3;
const CREATE_BACKOFF: Duration = Duration::from_millis(250);

pub const COMPLETED: &str = "COMPLETED";
pub const FAILED: &str = "FAILED";
pub const CANCELLED: &str = "CANCELLED";

/// The fields of a task that the checks use; the API sends more, which are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub status: String,
    pub timestamp: DateTime<Utc>,
    pub time_left_seconds: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub executed_at: Option<DateTime<Utc>>,
    pub lateness_ms: Option<i64>,
}

impl Task {
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), COMPLETED | FAILED | CANCELLED)
    }
}

/// One webhook attempt, as `GET /tasks/{id}/attempts` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskPage {
    tasks: Vec<Task>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct Attempts {
    attempts: Vec<Attempt>,
}

/// The API's own format: RFC 3339 in UTC with milliseconds.
pub fn format_time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug)]
pub enum ApiError {
    Transport(String),
    Status { status: u16, message: String },
    Decode(String),
}

impl ApiError {
    /// Whether sending the same request again may succeed: the request may never have arrived,
    /// or the service failed on its side.
    fn is_retryable(&self) -> bool {
        match self {
            ApiError::Transport(_) => true,
            ApiError::Status { status, .. } => *status >= 500,
            ApiError::Decode(_) => false,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Transport(message) => write!(f, "{message}"),
            ApiError::Status { status, message } => write!(f, "HTTP {status}: {message}"),
            ApiError::Decode(message) => write!(f, "unexpected answer: {message}"),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// One item's outcome in a batch answer: the status a single request would have had, with the
/// task or the error.
#[derive(Debug, Deserialize)]
pub struct ItemResult {
    pub status: u16,
    pub task: Option<Task>,
    pub error: Option<Value>,
}

#[derive(Deserialize)]
struct Results {
    results: Vec<ItemResult>,
}

#[derive(Deserialize)]
struct Health {
    status: String,
    version: Option<Value>,
}

#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    /// A client of the API at `base`, sending `api_key` (if any) as `x-api-key` on every request.
    pub fn new(base: &str, max_idle: usize, api_key: Option<&str>) -> Result<Self, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = api_key {
            let mut value = reqwest::header::HeaderValue::from_str(key)
                .map_err(|_| "the API key is not a valid header value".to_string())?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(max_idle)
            .user_agent(concat!("tasks-e2e/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Api {
            client,
            base: base.to_string(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Polls `GET /health` until it answers `ok`, and returns the service's version.
    pub async fn wait_healthy(&self, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        let url = format!("{}/health", self.base);
        loop {
            let last_error = match self.health(&url).await {
                Ok(version) => return Ok(version),
                Err(error) => error,
            };
            if Instant::now() + HEALTH_POLL >= deadline {
                return Err(format!(
                    "the API at API_URL={} did not answer GET /health within {} s \
                     (last: {last_error}); start the service or set API_URL",
                    self.base,
                    within.as_secs()
                ));
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    async fn health(&self, url: &str) -> Result<String, ApiError> {
        let response = self
            .client
            .get(url)
            .timeout(HEALTH_REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| ApiError::Transport(describe(&e)))?;
        let health: Health = decode(response).await?;
        if health.status != "ok" {
            return Err(ApiError::Decode(format!("status {:?}", health.status)));
        }
        Ok(health
            .version
            .map(|version| match version {
                Value::String(text) => text,
                other => other.to_string(),
            })
            .unwrap_or_else(|| "unknown".into()))
    }

    /// `POST /tasks`, retried on transport errors and 5xx: the idempotency key makes a retry
    /// of a create that did arrive return the same task instead of a second one.
    pub async fn create(&self, body: &Value, idempotency_key: &str) -> Result<Task, ApiError> {
        let mut attempt = 1;
        loop {
            match self.try_create(body, idempotency_key).await {
                Err(error) if error.is_retryable() && attempt < CREATE_ATTEMPTS => {
                    tokio::time::sleep(CREATE_BACKOFF * attempt).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn try_create(&self, body: &Value, idempotency_key: &str) -> Result<Task, ApiError> {
        let response = self
            .client
            .post(format!("{}/tasks", self.base))
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await
            .map_err(|e| ApiError::Transport(describe(&e)))?;
        decode(response).await
    }

    /// `POST /tasks/batch`: one result per item, in item order.
    pub async fn create_batch(&self, tasks: &[Value]) -> Result<Vec<ItemResult>, ApiError> {
        let body = serde_json::json!({ "tasks": tasks });
        self.post_results("/tasks/batch", &body).await
    }

    /// `POST /tasks/cancel`: one result per id, in the order given.
    pub async fn cancel_many(&self, ids: &[String]) -> Result<Vec<ItemResult>, ApiError> {
        let body = serde_json::json!({ "ids": ids });
        self.post_results("/tasks/cancel", &body).await
    }

    async fn post_results(&self, path: &str, body: &Value) -> Result<Vec<ItemResult>, ApiError> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| ApiError::Transport(describe(&e)))?;
        let results: Results = decode(response).await?;
        Ok(results.results)
    }

    /// `PATCH /tasks/{id}` with a JSON merge patch.
    pub async fn change(&self, id: &str, patch: &Value) -> Result<Task, ApiError> {
        let response = self
            .client
            .patch(format!("{}/tasks/{id}", self.base))
            .json(patch)
            .send()
            .await
            .map_err(|e| ApiError::Transport(describe(&e)))?;
        decode(response).await
    }

    /// `POST /tasks/{id}/run`: run now.
    pub async fn run_now(&self, id: &str) -> Result<Task, ApiError> {
        self.post_task(&format!("/tasks/{id}/run"), None).await
    }

    /// `POST /tasks/{id}/retry`, now or as the optional body says.
    pub async fn retry(&self, id: &str, body: Option<&Value>) -> Result<Task, ApiError> {
        self.post_task(&format!("/tasks/{id}/retry"), body).await
    }

    async fn post_task(&self, path: &str, body: Option<&Value>) -> Result<Task, ApiError> {
        let mut request = self.client.post(format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::Transport(describe(&e)))?;
        decode(response).await
    }

    /// `GET /tasks?status=...&from=...&to=...`: every task in one status whose time is in the
    /// window, following `nextToken` to the last page.
    pub async fn list_window(
        &self,
        status: &str,
        from: &DateTime<Utc>,
        to: &DateTime<Utc>,
    ) -> Result<Vec<Task>, ApiError> {
        let mut tasks = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("status", status.to_string()),
                ("from", format_time(from)),
                ("to", format_time(to)),
            ];
            if let Some(token) = token.take() {
                query.push(("nextToken", token));
            }
            let url = url::Url::parse_with_params(&format!("{}/tasks", self.base), &query)
                .map_err(|e| ApiError::Transport(format!("bad API URL: {e}")))?;
            let response = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| ApiError::Transport(describe(&e)))?;
            let page: TaskPage = decode(response).await?;
            tasks.extend(page.tasks);
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok(tasks),
            }
        }
    }

    /// `GET /tasks/{id}/attempts`, newest first.
    pub async fn attempts(&self, id: &str) -> Result<Vec<Attempt>, ApiError> {
        let response = self
            .client
            .get(format!("{}/tasks/{id}/attempts", self.base))
            .send()
            .await
            .map_err(|e| ApiError::Transport(describe(&e)))?;
        let attempts: Attempts = decode(response).await?;
        Ok(attempts.attempts)
    }

    pub async fn get(&self, id: &str) -> Result<Task, ApiError> {
        let response = self
            .client
            .get(format!("{}/tasks/{id}", self.base))
            .send()
            .await
            .map_err(|e| ApiError::Transport(describe(&e)))?;
        decode(response).await
    }
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ApiError> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| ApiError::Transport(describe(&e)))?;
    if !status.is_success() {
        let message = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => format!("{}: {}", body.error.code, body.error.message),
            Err(_) => snippet(&text),
        };
        return Err(ApiError::Status {
            status: status.as_u16(),
            message,
        });
    }
    serde_json::from_str(&text).map_err(|e| ApiError::Decode(format!("{e} in {}", snippet(&text))))
}

/// reqwest's top-level message hides the cause (connection refused, timed out...).
fn describe(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

fn snippet(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}
