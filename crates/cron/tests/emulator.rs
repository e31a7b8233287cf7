//! The cron against DynamoDB and SQS on the emulator.

use chrono::{Duration, Utc};
use futures::{stream, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use tasks_aws::testing::Resources;
use tasks_core::{Pacing, SystemClock, Task, TaskStatus, TaskStore};
use tasks_cron::Cron;

fn task(id: String, timestamp: chrono::DateTime<Utc>, status: TaskStatus) -> Task {
    Task {
        task_status: status,
        ..Task::new(id, timestamp, Pacing::default().lead_time, Utc::now())
    }
}

fn cron(resources: &Resources) -> Cron {
    Cron {
        store: Arc::new(resources.store()),
        queue: Arc::new(resources.queue()),
        workflow: Arc::new(resources.workflow()),
        clock: Arc::new(SystemClock),
        pacing: Pacing::default(),
        metrics: Arc::new(tasks_core::metrics::Stdout),
    }
}

async fn seed(resources: &Resources, tasks: Vec<Task>) {
    let store = resources.store();
    stream::iter(tasks)
        .for_each_concurrent(8, |task| {
            let store = &store;
            async move { store.create(&task).await.unwrap() }
        })
        .await;
}

#[tokio::test]
async fn racing_runs_send_exactly_the_due_tasks_once() {
    let resources = Resources::create().await;
    let now = Utc::now();
    let due: Vec<Task> = (0..500)
        .map(|i| {
            task(
                format!("due-{i:03}"),
                now + Duration::seconds(100),
                TaskStatus::Scheduled,
            )
        })
        .collect();
    let later: Vec<Task> = (0..500)
        .map(|i| {
            task(
                format!("later-{i:03}"),
                now + Duration::seconds(300),
                TaskStatus::Scheduled,
            )
        })
        .collect();
    seed(&resources, due.into_iter().chain(later).collect()).await;

    let (first, second) = (cron(&resources), cron(&resources));
    let (a, b) = tokio::join!(first.run(), second.run());
    let (a, b) = (a.unwrap(), b.unwrap());

    assert_eq!(a.due.dispatched + b.due.dispatched, 500);
    assert_eq!(a.due.errors + b.due.errors, 0);
    let messages = resources.receive_all().await;
    let ids: HashSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(messages.len(), 500, "each due task is sent once");
    assert_eq!(ids.len(), 500);
    assert!(ids.iter().all(|id| id.starts_with("due-")));
    let store = resources.store();
    assert_eq!(
        store.get("due-000").await.unwrap().unwrap().task_status,
        TaskStatus::Queued
    );
    assert_eq!(
        store.get("later-000").await.unwrap().unwrap().task_status,
        TaskStatus::Scheduled
    );
}

#[tokio::test]
async fn a_stranded_claim_is_sent_again_by_a_later_run() {
    let resources = Resources::create().await;
    let mut stranded = task(
        "stranded".into(),
        Utc::now() + Duration::seconds(30),
        TaskStatus::Queued,
    );
    stranded.last_updated_at = Utc::now() - Duration::minutes(5);
    stranded.start_execution_at -= 300;
    let mut fresh = task(
        "fresh".into(),
        Utc::now() + Duration::seconds(30),
        TaskStatus::Queued,
    );
    fresh.start_execution_at -= 300;
    seed(&resources, vec![stranded, fresh]).await;

    let summary = cron(&resources).run().await.unwrap();

    assert_eq!(summary.stale.requeued, 1);
    let messages = resources.receive_all().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, "stranded");
    let resent = resources.store().get("stranded").await.unwrap().unwrap();
    assert_eq!(resent.task_status, TaskStatus::Queued);
    assert!(resent.last_updated_at > Utc::now() - Duration::minutes(1));
}
