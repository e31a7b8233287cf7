//! `POST /tasks/cancel`: many cancels in one request, each exactly as `DELETE /tasks/{id}` would
//! do it.

use crate::batch::invalid_batch;
use crate::{check_id, unreadable_body, ApiError, AppState, TaskView};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tasks_core::flow::api::cancel_task;
use tasks_core::request::new_task::MAX_BODY_BYTES;

pub const MAX_CANCEL_IDS: usize = 100;
/// Cancels at the same time: each is a conditional write and, from QUEUED on, a stop.
const CONCURRENCY: usize = 8;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    ids: Vec<String>,
}

/// Answers 200 with one result per id, in the order given.
pub async fn cancel_many(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|rejection| unreadable_body(rejection, MAX_BODY_BYTES))?;
    let request: CancelBody = serde_json::from_slice(&body).map_err(|error| {
        invalid_batch(
            "ids",
            format!("the body must be {{\"ids\": [\"<task id>\", ...]}}: {error}"),
        )
    })?;
    if !(1..=MAX_CANCEL_IDS).contains(&request.ids.len()) {
        return Err(invalid_batch(
            "ids",
            format!("`ids` must hold 1 to {MAX_CANCEL_IDS} task ids"),
        ));
    }
    let results: Vec<Value> = stream::iter(request.ids)
        .map(|id| {
            let state = state.clone();
            async move {
                let mut result = match cancel_one(&state, &id).await {
                    Ok(view) => json!({"status": 200, "task": view}),
                    Err(error) => json!({"status": error.status.as_u16(), "error": error.body()}),
                };
                result["id"] = json!(id);
                result
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    Ok(Json(json!({ "results": results })))
}

async fn cancel_one(state: &AppState, id: &str) -> Result<TaskView, ApiError> {
    check_id(id)?;
    let cancelled = cancel_task(
        state.store.as_ref(),
        state.workflow.as_ref(),
        state.clock.as_ref(),
        id,
    )
    .await?;
    tracing::info!(task_id = %cancelled.id, "task cancelled in a batch");
    Ok(TaskView::new(&cancelled, state.clock.now()))
}
