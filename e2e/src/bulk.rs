//! The seed scenario's batch step: two tasks created in one `POST /tasks/batch` (one due with the
//! seed task, one an hour later), both cancelled in one `POST /tasks/cancel`; when the seed task
//! has run, the cancelled one due with it must still be CANCELLED, never executed.

use crate::api::{Api, ItemResult, Task, CANCELLED};
use serde_json::{json, Value};

/// Creates and cancels the pair; returns the cancelled tasks.
pub async fn create_and_cancel(
    api: &Api,
    seed_body: &Value,
    run_id: &str,
) -> Result<Vec<Task>, String> {
    let mut due_with_seed = seed_body.clone();
    due_with_seed["idempotencyKey"] = json!(format!("e2e-{run_id}-batch-0"));
    let later = json!({"hours": 1, "idempotencyKey": format!("e2e-{run_id}-batch-1")});
    let created = api
        .create_batch(&[due_with_seed, later])
        .await
        .map_err(|e| format!("POST /tasks/batch: {e}"))?;
    let tasks = expect_tasks("POST /tasks/batch", created, 201)?;
    let ids: Vec<String> = tasks.iter().map(|task| task.id.clone()).collect();
    println!(
        "seed: POST /tasks/batch -> {} ({})",
        ids.join(", "),
        statuses(&tasks)
    );
    let cancelled = api
        .cancel_many(&ids)
        .await
        .map_err(|e| format!("POST /tasks/cancel: {e}"))?;
    let cancelled = expect_tasks("POST /tasks/cancel", cancelled, 200)?;
    if let Some(task) = cancelled.iter().find(|task| task.status != CANCELLED) {
        return Err(format!(
            "POST /tasks/cancel left {} {}",
            task.id, task.status
        ));
    }
    println!("seed: POST /tasks/cancel -> {}", statuses(&cancelled));
    Ok(cancelled)
}

/// After the seed task ran: the cancelled tasks were never executed.
pub async fn check_still_cancelled(api: &Api, cancelled: &[Task]) -> Result<(), String> {
    for task in cancelled {
        let now = api
            .get(&task.id)
            .await
            .map_err(|e| format!("GET /tasks/{}: {e}", task.id))?;
        if now.status != CANCELLED || now.attempts != 0 {
            return Err(format!(
                "task {} was cancelled in a batch, yet is {} after {} attempts",
                now.id, now.status, now.attempts
            ));
        }
    }
    println!("seed: the tasks cancelled in a batch stayed CANCELLED, never attempted");
    Ok(())
}

fn expect_tasks(call: &str, results: Vec<ItemResult>, status: u16) -> Result<Vec<Task>, String> {
    results
        .into_iter()
        .enumerate()
        .map(|(index, result)| match result.task {
            Some(task) if result.status == status => Ok(task),
            _ => Err(format!(
                "{call}: item {index} answered {} {}",
                result.status,
                result.error.unwrap_or_default()
            )),
        })
        .collect()
}

fn statuses(tasks: &[Task]) -> String {
    tasks
        .iter()
        .map(|task| task.status.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
