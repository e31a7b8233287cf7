//! What `make bench-lambda` and `make profile-lambda` share: seeding tasks, keeping the queue
//! shallow, and invoking a function that must succeed.

use crate::{Function, Process};
use chrono::{Duration as Span, Utc};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tasks_aws::testing::{unique, Resources};
use tasks_core::{Pacing, Task, TaskStatus, TaskStore};
use tokio::sync::Notify;

/// `count` tasks in `status`, due in `due_in`, written 16 at a time.
pub async fn seed(
    resources: &Resources,
    count: usize,
    status: TaskStatus,
    due_in: Span,
) -> Vec<Task> {
    let now = Utc::now();
    let tasks: Vec<Task> = (0..count)
        .map(|_| Task {
            task_status: status,
            ..Task::new(
                unique("bench"),
                now + due_in,
                Pacing::default().lead_time,
                now,
            )
        })
        .collect();
    let store = Arc::new(resources.store());
    for chunk in tasks.chunks(16) {
        let writes = chunk.iter().cloned().map(|task| {
            let store = store.clone();
            tokio::spawn(async move { store.create(&task).await.expect("seed a task") })
        });
        for write in writes {
            write.await.expect("seeding task");
        }
    }
    tasks
}

/// Keeps the queue shallow while a benchmark sends to it (moto's SQS slows down with depth),
/// until `stop` is notified.
pub fn drain(resources: Arc<Resources>, stop: Arc<Notify>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            resources.receive_all().await;
            tokio::select! {
                _ = stop.notified() => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
}

/// One invocation that must succeed (within two minutes): its time from the call to the
/// recorded response. Panics with the function's log otherwise.
pub async fn invoke_ok(function: &Function, process: &Process, event: Value) -> Duration {
    let (outcome, elapsed) = function
        .api
        .timed_invoke(event, Duration::from_secs(120))
        .await
        .unwrap_or_else(|| {
            panic!(
                "{} did not answer; its log:\n{}",
                function.name,
                process.log()
            )
        });
    if let Some(error_type) = outcome.error_type() {
        panic!(
            "{} failed with {error_type}: {outcome:?}\n{}",
            function.name,
            process.log()
        );
    }
    elapsed
}
