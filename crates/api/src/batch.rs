//! `POST /tasks/batch`: many creates in one request, each exactly as `POST /tasks` would do it.

use crate::{created_status, unreadable_body, ApiError, AppState, TaskView};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tasks_core::flow::api::create_task;

pub const MAX_BATCH_ITEMS: usize = 100;
/// Largest accepted batch body. API Gateway takes 10 MB, but a Lambda invocation carries at most
/// 6 MB each way, with the body escaped inside the event and the tasks echoed in the answer.
pub const MAX_BATCH_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Items created at the same time: enough to hide the store's latency, few enough not to burst.
const CONCURRENCY: usize = 8;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    tasks: Vec<Value>,
}

/// Answers 200 with one result per item, in item order; only a body that is not a batch is
/// refused as a whole.
pub async fn create_batch(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|rejection| unreadable_body(rejection, MAX_BATCH_BODY_BYTES))?;
    let batch: BatchBody = serde_json::from_slice(&body).map_err(|error| {
        invalid_batch(
            "tasks",
            format!("the body must be {{\"tasks\": [<task>, ...]}}: {error}"),
        )
    })?;
    if !(1..=MAX_BATCH_ITEMS).contains(&batch.tasks.len()) {
        return Err(invalid_batch(
            "tasks",
            format!("`tasks` must hold 1 to {MAX_BATCH_ITEMS} tasks"),
        ));
    }
    let results: Vec<Value> = stream::iter(batch.tasks.into_iter().enumerate())
        .map(|(index, item)| {
            let state = state.clone();
            async move {
                let mut result = match create_one(&state, item).await {
                    Ok((status, view)) => json!({"status": status.as_u16(), "task": view}),
                    Err(error) => json!({"status": error.status.as_u16(), "error": error.body()}),
                };
                result["index"] = json!(index);
                result
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    Ok(Json(json!({ "results": results })))
}

/// One item: a `POST /tasks` body, with its idempotency key beside the task's fields.
async fn create_one(state: &AppState, mut item: Value) -> Result<(StatusCode, TaskView), ApiError> {
    let key = match item
        .as_object_mut()
        .and_then(|task| task.remove("idempotencyKey"))
    {
        None => None,
        Some(Value::String(key)) => Some(key),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "`idempotencyKey` must be a string",
            )
            .with_field("idempotencyKey"))
        }
    };
    let body = serde_json::to_vec(&item).expect("a JSON value serialises");
    let created = create_task(
        state.store.as_ref(),
        state.queue.as_ref(),
        state.clock.as_ref(),
        &state.pacing,
        &state.signing_secrets,
        &body,
        key.as_deref(),
    )
    .await
    .map_err(|error| {
        let error = ApiError::from(error);
        // The use case names the header a single create takes the key from.
        if error.code == "invalid_idempotency_key" {
            error.with_field("idempotencyKey")
        } else {
            error
        }
    })?;
    tracing::info!(
        task_id = %created.task.id,
        status = %created.task.task_status,
        replayed = created.replayed,
        "task created in a batch"
    );
    let status = created_status(&created);
    Ok((status, TaskView::new(&created.task, state.clock.now())))
}

pub(crate) fn invalid_batch(field: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_batch", message).with_field(field)
}
