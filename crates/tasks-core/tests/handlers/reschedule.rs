use crate::support::{now, task, webhook, World, SIGNING_SECRET};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tasks_core::flow::api::{change_task, retry_task, run_task, ChangeError};
use tasks_core::{StoreError, Task, TaskStatus, TaskStore, Transition};

async fn patch(world: &World, id: &str, body: serde_json::Value) -> Result<Task, ChangeError> {
    change_task(&world.ports(), id, body.to_string().as_bytes())
        .await
        .map(|changed| changed.task)
}

/// A task claimed for its first series, as the cron leaves it.
fn put_claimed(world: &World, id: &str, at: DateTime<Utc>, status: TaskStatus) {
    world.store.put(Task {
        series: 1,
        webhook: Some(webhook()),
        ..task(id, at, status)
    });
}

#[tokio::test]
async fn moving_a_waiting_task_later_starts_a_new_series_and_stops_the_old_execution() {
    let world = World::new();
    put_claimed(
        &world,
        "q",
        now() + Duration::seconds(65),
        TaskStatus::Queued,
    );
    let moved = patch(&world, "q", json!({"minutes": 30})).await.unwrap();
    assert_eq!(moved.task_status, TaskStatus::Scheduled);
    assert_eq!(moved.timestamp, now() + Duration::minutes(30));
    assert_eq!(
        moved.start_execution_at,
        world.pacing.start_execution_at(moved.timestamp)
    );
    assert_eq!(moved.series, 2);
    assert_eq!(world.workflow.stopped(), vec!["q-1"]);
    assert!(world.queue.queued().is_empty());
}

#[tokio::test]
async fn moving_a_task_inside_the_lead_time_hands_it_off_at_once() {
    let world = World::new();
    put_claimed(
        &world,
        "p",
        now() + Duration::seconds(65),
        TaskStatus::InProgress,
    );
    let moved = patch(&world, "p", json!({"seconds": 20})).await.unwrap();
    assert_eq!(moved.task_status, TaskStatus::Queued);
    assert_eq!(moved.timestamp, now() + Duration::seconds(20));
    // The reschedule and the hand-off's claim each start a series.
    assert_eq!(moved.series, 3);
    let messages = world.queue.queued();
    assert_eq!((messages[0].id.as_str(), messages[0].series), ("p", 3));
    assert_eq!(world.workflow.stopped(), vec!["p-1"]);
}

#[tokio::test]
async fn a_scheduled_task_has_no_execution_to_stop() {
    let world = World::new();
    world
        .store
        .put(task("s", now() + Duration::hours(2), TaskStatus::Scheduled));
    let changed = patch(&world, "s", json!({"payload": {"order": 7}}))
        .await
        .unwrap();
    assert_eq!(changed.payload, Some(json!({"order": 7})));
    assert_eq!(changed.timestamp, now() + Duration::hours(2));
    assert!(world.workflow.stopped().is_empty());
}

#[tokio::test]
async fn no_change_once_an_attempt_of_the_series_began_or_the_task_is_final() {
    let world = World::new();
    let mut executing = task("x", now(), TaskStatus::InProgress);
    (
        executing.series,
        executing.attempts,
        executing.attempt_series,
    ) = (1, 1, 1);
    world.store.put(executing);
    for status in [
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ] {
        world.store.put(task(status.as_str(), now(), status));
    }
    for id in ["x", "COMPLETED", "FAILED", "CANCELLED"] {
        let error = patch(&world, id, json!({"minutes": 5})).await.unwrap_err();
        assert!(
            matches!(error, ChangeError::NotChangeable(ref t) if t.id == id),
            "{id}: {error:?}"
        );
        let error = run_task(&world.ports(), id).await.unwrap_err();
        assert!(matches!(error, ChangeError::NotChangeable(_)), "{id}");
    }
    let error = patch(&world, "nope", json!({"minutes": 5}))
        .await
        .unwrap_err();
    assert!(matches!(error, ChangeError::NotFound(_)));
    let error = patch(&world, "x", json!({"hours": "2"})).await.unwrap_err();
    assert!(matches!(error, ChangeError::Invalid(ref e) if e.code == "invalid_field"));
    assert!(world.workflow.stopped().is_empty());
}

#[tokio::test]
async fn run_now_hands_the_task_off_with_its_time_now() {
    let world = World::new();
    world
        .store
        .put(task("s", now() + Duration::days(3), TaskStatus::Scheduled));
    let run = run_task(&world.ports(), "s").await.unwrap().task;
    assert_eq!(run.task_status, TaskStatus::Queued);
    assert_eq!(run.timestamp, now());
    assert_eq!(world.queue.queued().len(), 1);
}

#[tokio::test]
async fn a_failed_task_retried_runs_again_and_its_attempts_keep_counting() {
    let world = World::new();
    world.store.put(Task {
        series: 2,
        attempts: 4,
        attempt_series: 2,
        redispatches: 5,
        last_error: Some("HttpServerError: HTTP 503".into()),
        ..task("f", now() - Duration::hours(1), TaskStatus::Failed)
    });
    let retried = retry_task(&world.ports(), "f", b"").await.unwrap().task;
    assert_eq!(retried.task_status, TaskStatus::Queued);
    assert_eq!(retried.timestamp, now());
    assert_eq!((retried.attempts, retried.redispatches), (4, 0));
    assert!(!retried.attempt_began_in_series());
    assert!(world.workflow.stopped().is_empty());

    let world = World::new();
    world
        .store
        .put(task("f", now() - Duration::hours(1), TaskStatus::Failed));
    let later = retry_task(
        &world.ports(),
        "f",
        br#"{"hours": 1, "webhook": {"url": "https://fixed.example/"}}"#,
    )
    .await
    .unwrap()
    .task;
    assert_eq!(later.task_status, TaskStatus::Scheduled);
    assert_eq!(later.timestamp, now() + Duration::hours(1));
    assert_eq!(later.webhook.unwrap().url, "https://fixed.example/");
}

#[tokio::test]
async fn only_a_failed_task_can_be_retried() {
    let world = World::new();
    for status in [
        TaskStatus::Scheduled,
        TaskStatus::Queued,
        TaskStatus::InProgress,
        TaskStatus::Completed,
        TaskStatus::Cancelled,
    ] {
        world.store.put(task("t", now(), status));
        let error = retry_task(&world.ports(), "t", b"").await.unwrap_err();
        assert!(matches!(error, ChangeError::NotRetryable(ref t) if t.task_status == status));
    }
}

#[tokio::test]
async fn after_a_retry_the_task_can_be_cancelled_again_until_its_new_attempt_begins() {
    let world = World::new();
    world.store.put(Task {
        series: 1,
        attempts: 1,
        attempt_series: 1,
        ..task("f", now() - Duration::hours(1), TaskStatus::Failed)
    });
    retry_task(&world.ports(), "f", br#"{"hours": 1}"#)
        .await
        .unwrap();
    let cancelled = world
        .store
        .transition("f", &Transition::new(tasks_core::Event::Cancel, now()))
        .await
        .unwrap();
    assert_eq!(cancelled.task_status, TaskStatus::Cancelled);
}

#[tokio::test]
async fn an_execution_of_the_old_series_can_no_longer_begin_an_attempt() {
    let world = World::new();
    put_claimed(
        &world,
        "q",
        now() + Duration::seconds(65),
        TaskStatus::InProgress,
    );
    patch(&world, "q", json!({"minutes": 30})).await.unwrap();
    let begin = Transition::new(tasks_core::Event::BeginAttempt, now()).in_series(1);
    let error = world.store.transition("q", &begin).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }));
}

#[tokio::test]
async fn a_store_failure_is_reported_and_nothing_changes() {
    let world = World::new();
    world
        .store
        .put(task("s", now() + Duration::hours(2), TaskStatus::Scheduled));
    world.store.set_unavailable(true);
    let error = patch(&world, "s", json!({"minutes": 5})).await.unwrap_err();
    assert!(matches!(
        error,
        ChangeError::Store(StoreError::Unavailable { .. })
    ));
    world.store.set_unavailable(false);
    assert_eq!(
        world.store.get("s").await.unwrap().unwrap().timestamp,
        now() + Duration::hours(2)
    );
}

#[tokio::test]
async fn a_change_may_name_only_a_signing_secret_the_operator_created_and_may_drop_it() {
    let world = World::new();
    put_claimed(
        &world,
        "s",
        now() + Duration::hours(1),
        TaskStatus::Scheduled,
    );
    let error = patch(
        &world,
        "s",
        json!({"webhook": {"signing": {"secret": "crm"}}}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ChangeError::Invalid(ref e) if e.code == "unknown_signing_secret"),
        "{error:?}"
    );
    assert_eq!(
        world.store.get("s").await.unwrap().unwrap().webhook,
        Some(webhook())
    );
    let signed = patch(
        &world,
        "s",
        json!({"webhook": {"signing": {"secret": SIGNING_SECRET}, "keepResponseBody": false}}),
    )
    .await
    .unwrap();
    let webhook_now = signed.webhook.unwrap();
    assert_eq!(webhook_now.signing.unwrap().secret, SIGNING_SECRET);
    assert!(!webhook_now.keep_response_body);
    let unsigned = patch(
        &world,
        "s",
        json!({"webhook": {"signing": null, "keepResponseBody": null}}),
    )
    .await
    .unwrap();
    assert_eq!(unsigned.webhook, Some(webhook()));
}
