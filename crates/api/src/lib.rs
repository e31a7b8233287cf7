//! The HTTP API: an axum router that runs unchanged behind API Gateway (via lambda_http) and on a
//! TCP port in the local runner.

mod access;
mod batch;
mod bulk_cancel;
mod console;
pub mod diagnostics;
mod error;
pub mod lambda;
mod view;

pub use access::require_api_key;
pub use error::ApiError;
pub use view::{TaskView, WebhookView, REDACTED};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use diagnostics::Diagnostics;
use serde_json::json;
use std::sync::Arc;
use tasks_core::flow::api::{cancel_task, create_task, Created};
use tasks_core::flow::api::{change_task, retry_task, run_task, Changed, Ports};
use tasks_core::request::item_limits::MAX_KEY_BYTES;
use tasks_core::request::new_task::MAX_BODY_BYTES;
use tasks_core::request::signing::SigningSecretNames;
use tasks_core::{
    Clock, DispatchQueue, Pacing, StatusQuery, StoreError, Task, TaskStatus, TaskStore, Workflow,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 100;

/// What the handlers need: the ports and the pacing rules.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn TaskStore>,
    pub queue: Arc<dyn DispatchQueue>,
    pub workflow: Arc<dyn Workflow>,
    pub clock: Arc<dyn Clock>,
    pub pacing: Pacing,
    /// The names of the signing secrets a task may choose (never their values).
    pub signing_secrets: SigningSecretNames,
    /// Where a task's run is found on AWS (`GET /tasks/{id}`); nothing in local mode.
    pub diagnostics: Diagnostics,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/tasks", get(list_tasks).post(create))
        // Fixed segments win over `{id}` whatever the order: `/tasks/batch` is never a task id.
        .route(
            "/tasks/batch",
            post(batch::create_batch).layer(DefaultBodyLimit::max(batch::MAX_BATCH_BODY_BYTES + 1)),
        )
        .route("/tasks/cancel", post(bulk_cancel::cancel_many))
        .route("/tasks/{id}", get(get_task).delete(cancel).patch(change))
        .route("/tasks/{id}/run", post(run_now))
        .route("/tasks/{id}/retry", post(retry))
        .route("/tasks/{id}/attempts", get(attempts))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/console", get(console::page))
        .route("/console/", get(console::page))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // One byte over the limit is enough to tell an oversized body; the handler answers 413.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
        .with_state(state)
}

/// The OpenAPI description of this router, checked against it by the tests.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// The request body, or 413 / 400 if it could not be read.
fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| unreadable_body(rejection, MAX_BODY_BYTES))
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_body(body)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "the Idempotency-Key header must be printable ASCII",
            )
        })?),
    };
    let created = create_task(
        state.store.as_ref(),
        state.queue.as_ref(),
        state.clock.as_ref(),
        &state.pacing,
        &state.signing_secrets,
        &body,
        key,
    )
    .await?;
    tracing::info!(
        task_id = %created.task.id,
        status = %created.task.task_status,
        timestamp = %tasks_core::model::time::rfc3339_millis::format(&created.task.timestamp),
        replayed = created.replayed,
        "task created"
    );
    let status = created_status(&created);
    let location = format!("/tasks/{}", created.task.id);
    let view = TaskView::new(&created.task, state.clock.now());
    Ok((status, [(header::LOCATION, location)], Json(view)).into_response())
}

/// A body too large for the route (`limit` bytes) is a 413, any other unreadable body a 400.
fn unreadable_body(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            rejection.body_text(),
        )
    }
}

/// 201 for a new task; 200 for a repeat of an earlier request with the same idempotency key.
fn created_status(created: &Created) -> StatusCode {
    if created.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    }
}

/// An id longer than a key may be names no task; asking the store would only earn a refusal.
fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() > MAX_KEY_BYTES {
        return Err(ApiError::task_not_found(&id[..id.floor_char_boundary(64)]));
    }
    Ok(())
}

async fn get_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let task = stored_task(&state, &id).await?;
    Ok(Json(TaskView {
        diagnostics: state.diagnostics.of(&task),
        ..TaskView::new(&task, state.clock.now())
    }))
}

/// The task named in the path, or 404.
async fn stored_task(state: &AppState, id: &str) -> Result<Task, ApiError> {
    check_id(id)?;
    state
        .store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::task_not_found(id))
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    check_id(&id)?;
    let cancelled = cancel_task(
        state.store.as_ref(),
        state.workflow.as_ref(),
        state.clock.as_ref(),
        &id,
    )
    .await?;
    tracing::info!(task_id = %cancelled.id, "task cancelled");
    Ok(Json(TaskView::new(&cancelled, state.clock.now())))
}

impl AppState {
    fn ports(&self) -> Ports<'_> {
        Ports {
            store: self.store.as_ref(),
            queue: self.queue.as_ref(),
            workflow: self.workflow.as_ref(),
            clock: self.clock.as_ref(),
            pacing: &self.pacing,
            signing_secrets: &self.signing_secrets,
        }
    }
}

/// `GET /tasks/{id}/attempts`: the attempts the task keeps, newest first.
async fn attempts(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let task = stored_task(&state, &id).await?;
    let attempts: Vec<_> = task.attempt_history.iter().rev().collect();
    Ok(Json(json!({ "attempts": attempts })))
}

/// `PATCH /tasks/{id}`: a JSON merge patch of the time, webhook, payload or retry policy.
async fn change(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TaskView>, ApiError> {
    check_id(&id)?;
    let body = read_body(body)?;
    let changed = change_task(&state.ports(), &id, &body).await?;
    Ok(changed_view(&state, changed, "task changed"))
}

/// `POST /tasks/{id}/run`: run now.
async fn run_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    check_id(&id)?;
    let run = run_task(&state.ports(), &id).await?;
    Ok(changed_view(&state, run, "task run now"))
}

/// `POST /tasks/{id}/retry`: a FAILED task runs again, now or at the time the body gives.
async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TaskView>, ApiError> {
    check_id(&id)?;
    let body = read_body(body)?;
    let retried = retry_task(&state.ports(), &id, &body).await?;
    Ok(changed_view(&state, retried, "task retried"))
}

/// Logs a change a user made and answers with the task as it now is, and the stored headers the
/// change dropped.
fn changed_view(state: &AppState, changed: Changed, what: &'static str) -> Json<TaskView> {
    let task = &changed.task;
    tracing::info!(
        task_id = %task.id,
        status = %task.task_status,
        timestamp = %tasks_core::model::time::rfc3339_millis::format(&task.timestamp),
        dropped_headers = ?changed.dropped_headers,
        "{what}"
    );
    Json(TaskView {
        dropped_headers: changed.dropped_headers.clone(),
        ..TaskView::new(task, state.clock.now())
    })
}

/// `GET /tasks?status=SCHEDULED&limit=50&nextToken=...&from=...&to=...`: one page of the status
/// index, latest-due first. `from` and `to` bound the tasks' time, both included, to the second:
/// the index orders by `startExecutionAt`, whole seconds at the lead time before the task's time.
async fn list_tasks(
    State(state): State<AppState>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    })?;
    let mut query = StatusQuery::new(TaskStatus::Scheduled, DEFAULT_PAGE_SIZE);
    query.newest_first = true;
    let (mut from, mut to) = (None, None);
    for (name, value) in params {
        match name.as_str() {
            "status" => {
                query.status = value.parse().map_err(|_| {
                    invalid_query(
                        "status",
                        format!(
                            "`status` must be one of {}",
                            TaskStatus::ALL.map(TaskStatus::as_str).join(", ")
                        ),
                    )
                })?
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_PAGE_SIZE).contains(limit))
                    .ok_or_else(|| {
                        invalid_query(
                            "limit",
                            format!("`limit` must be an integer from 1 to {MAX_PAGE_SIZE}"),
                        )
                    })?
            }
            "nextToken" => query.page_token = Some(value),
            "from" => from = Some(window_bound("from", &value)?),
            "to" => to = Some(window_bound("to", &value)?),
            other => {
                return Err(invalid_query(
                    other,
                    format!(
                    "unknown query parameter `{other}`; use status, limit, nextToken, from and to"
                ),
                ))
            }
        }
    }
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(invalid_query(
                "to",
                "`to` must not be before `from`".to_string(),
            ));
        }
    }
    query.due_from = from.map(|from| state.pacing.start_execution_at(from));
    query.due_by = to.map(|to| state.pacing.start_execution_at(to));
    let page = state
        .store
        .query(&query)
        .await
        .map_err(|error| match error {
            StoreError::InvalidPageToken => invalid_query(
                "nextToken",
                "`nextToken` is not a token this API returned".to_string(),
            ),
            other => ApiError::from(other),
        })?;
    let now = state.clock.now();
    let tasks: Vec<TaskView> = page
        .tasks
        .iter()
        .map(|task| TaskView::new(task, now))
        .collect();
    Ok(Json(json!({"tasks": tasks, "nextToken": page.next_token})))
}

fn window_bound(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| {
            invalid_query(
                field,
                format!(
                    "`{field}` must be an RFC 3339 date-time such as 2030-01-01T12:00:00Z: {error}"
                ),
            )
        })
}

fn invalid_query(field: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message).with_field(field)
}
