use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tasks_core::flow::api::ChangeError;
use tasks_core::flow::api::{CancelError, CreateError};
use tasks_core::{StoreError, TaskStatus, ValidationError};

/// Every failure answers `{"error": {"code", "message", ...}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    details: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    pub fn with_field(self, field: &str) -> Self {
        self.with_detail("field", json!(field))
    }

    pub fn with_status(self, status: TaskStatus) -> Self {
        self.with_detail("status", json!(status))
    }

    fn with_detail(mut self, name: &str, value: Value) -> Self {
        self.details.insert(name.to_string(), value);
        self
    }

    pub fn task_not_found(id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "task_not_found",
            format!("no task with id `{id}`"),
        )
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        let status = if error.code == "payload_too_large" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        let api = ApiError::new(status, error.code, error.message);
        match &error.field {
            Some(field) => api.with_field(field),
            None => api,
        }
    }
}

/// A store failure is the service's, not the caller's: 503 with a request id to quote, logged with
/// the same id.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let request_id = match &error {
            StoreError::Unavailable {
                request_id: Some(id),
                ..
            } => id.clone(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        tracing::error!(%error, request_id, "task store failure");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "the task store is unavailable; retry later",
        )
        .with_detail("requestId", json!(request_id))
    }
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::Invalid(invalid) => invalid.into(),
            ChangeError::NotFound(id) => ApiError::task_not_found(&id),
            ChangeError::NotChangeable(task) => {
                let why = match task.task_status {
                    TaskStatus::Failed => "is FAILED: retry it with POST /tasks/{id}/retry",
                    status if status.is_terminal() => "has ended and can no longer change",
                    _ => "has begun its attempt and can no longer change",
                };
                ApiError::new(
                    StatusCode::CONFLICT,
                    "not_changeable",
                    format!("task {} {why}", task.id),
                )
                .with_status(task.task_status)
            }
            ChangeError::NotRetryable(task) => ApiError::new(
                StatusCode::CONFLICT,
                "not_retryable",
                format!(
                    "task {} is {}: only a FAILED task can be retried",
                    task.id, task.task_status
                ),
            )
            .with_status(task.task_status),
            ChangeError::Store(error) => error.into(),
        }
    }
}

impl ApiError {
    /// `{"code", "message", ...}`: what the response carries under `error`, and a batch result too.
    pub fn body(self) -> Value {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        body.extend(self.details);
        Value::Object(body)
    }
}

impl From<CreateError> for ApiError {
    fn from(error: CreateError) -> Self {
        match error {
            CreateError::Invalid(invalid) => ApiError::from(invalid),
            // The other task is not the caller's business: its id is not told.
            CreateError::IdempotencyConflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "the Idempotency-Key was already used with a different request body",
            ),
            CreateError::Store(error) => ApiError::from(error),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(error: CancelError) -> Self {
        match error {
            CancelError::NotFound(id) => ApiError::task_not_found(&id),
            CancelError::NotCancellable(task) => ApiError::new(
                StatusCode::CONFLICT,
                "not_cancellable",
                format!(
                    "task {} is {}{} and can no longer be cancelled",
                    task.id,
                    task.task_status,
                    if task.task_status.is_terminal() {
                        ""
                    } else {
                        ", executing"
                    }
                ),
            )
            .with_status(task.task_status),
            CancelError::Store(error) => ApiError::from(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        (status, Json(json!({ "error": self.body() }))).into_response()
    }
}
