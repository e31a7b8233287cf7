use crate::support::{now, status_of, task, World, SIGNING_SECRET};
use chrono::Duration;
use serde_json::json;
use tasks_core::flow::api::{cancel_task, create_task, CancelError, CreateError};
use tasks_core::{QueueMessage, StoreError, Task, TaskStatus};

async fn create(
    world: &World,
    body: serde_json::Value,
    key: Option<&str>,
) -> Result<tasks_core::flow::api::Created, CreateError> {
    create_task(
        &world.store,
        &world.queue,
        &world.clock,
        &world.pacing,
        &world.signing_secrets,
        body.to_string().as_bytes(),
        key,
    )
    .await
}

#[tokio::test]
async fn a_later_task_is_stored_scheduled_and_not_queued() {
    let world = World::new();
    let created = create(&world, json!({"minutes": 10}), None).await.unwrap();
    assert_eq!(created.task.task_status, TaskStatus::Scheduled);
    assert_eq!(created.task.timestamp, now() + Duration::minutes(10));
    assert!(uuid::Uuid::parse_str(&created.task.id).is_ok());
    assert!(world.queue.queued().is_empty());
    assert_eq!(world.store.tasks().len(), 1);
}

#[tokio::test]
async fn a_task_due_within_the_lead_time_is_handed_off_at_once() {
    let world = World::new();
    let created = create(&world, json!({"seconds": 30}), None).await.unwrap();
    assert_eq!(created.task.task_status, TaskStatus::Queued);
    assert_eq!(world.queue.queued().len(), 1);
    assert_eq!(world.queue.queued()[0].id, created.task.id);
    assert!(
        matches!(&world.queue.messages()[0], QueueMessage::Slot(slot) if slot.held),
        "the api's hand-off is held to be merged"
    );
}

#[tokio::test]
async fn a_failed_hand_off_leaves_the_task_for_the_cron() {
    let world = World::new();
    world.queue.set_unavailable(true);
    let created = create(&world, json!({"seconds": 30}), None).await.unwrap();
    assert_eq!(created.task.task_status, TaskStatus::Scheduled);
    assert_eq!(
        status_of(&world.store, &created.task.id),
        TaskStatus::Scheduled
    );
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_return_the_same_task() {
    let world = World::new();
    let first = create(
        &world,
        json!({"minutes": 10, "payload": {"a": 1}}),
        Some("order-42"),
    )
    .await
    .unwrap();
    assert!(!first.replayed);
    world.clock.set(now() + Duration::seconds(5));
    let second = create(
        &world,
        json!({"payload": {"a": 1}, "minutes": 10}),
        Some("order-42"),
    )
    .await
    .unwrap();
    assert!(second.replayed);
    assert_eq!(second.task, first.task);
    assert_eq!(world.store.tasks().len(), 1);
}

#[tokio::test]
async fn a_replay_hands_off_a_due_task_its_first_request_left_scheduled() {
    let world = World::new();
    world.queue.set_unavailable(true);
    let first = create(&world, json!({"seconds": 30}), Some("order-43"))
        .await
        .unwrap();
    assert_eq!(first.task.task_status, TaskStatus::Scheduled);
    world.queue.set_unavailable(false);
    let replay = create(&world, json!({"seconds": 30}), Some("order-43"))
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.task.task_status, TaskStatus::Queued);
    assert_eq!(world.queue.queued().len(), 1);
    let again = create(&world, json!({"seconds": 30}), Some("order-43"))
        .await
        .unwrap();
    assert_eq!(again.task.task_status, TaskStatus::Queued);
    assert_eq!(world.queue.queued().len(), 1);
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_body_conflicts() {
    let world = World::new();
    create(&world, json!({"minutes": 10}), Some("order-42"))
        .await
        .unwrap();
    let error = create(&world, json!({"minutes": 11}), Some("order-42"))
        .await
        .unwrap_err();
    assert!(matches!(error, CreateError::IdempotencyConflict(_)));
    assert_eq!(world.store.tasks().len(), 1);
}

#[tokio::test]
async fn invalid_requests_and_keys_write_nothing() {
    let world = World::new();
    let error = create(&world, json!({"minutes": -1}), None)
        .await
        .unwrap_err();
    assert!(matches!(error, CreateError::Invalid(ref e) if e.code == "invalid_field"));
    let error = create(&world, json!({"minutes": 1}), Some(""))
        .await
        .unwrap_err();
    assert!(matches!(error, CreateError::Invalid(ref e) if e.code == "invalid_idempotency_key"));
    let long = "k".repeat(256);
    assert!(create(&world, json!({"minutes": 1}), Some(&long))
        .await
        .is_err());
    assert!(world.store.tasks().is_empty());
    assert!(world.queue.queued().is_empty());
}

#[tokio::test]
async fn a_store_outage_surfaces_as_a_store_error() {
    let world = World::new();
    world.store.set_unavailable(true);
    let error = create(&world, json!({"minutes": 1}), None)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        CreateError::Store(StoreError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn cancelling_a_waiting_task_stops_its_execution() {
    let world = World::new();
    for (id, status) in [
        ("s", TaskStatus::Scheduled),
        ("q", TaskStatus::Queued),
        ("p", TaskStatus::InProgress),
    ] {
        // A task never claimed has no execution to stop; a claimed one is in series 1.
        let series = u32::from(status != TaskStatus::Scheduled);
        world.store.put(Task {
            series,
            ..task(id, now() + Duration::minutes(1), status)
        });
        let cancelled = cancel_task(&world.store, &world.workflow, &world.clock, id)
            .await
            .unwrap();
        assert_eq!(cancelled.task_status, TaskStatus::Cancelled);
    }
    assert_eq!(world.workflow.stopped(), vec!["q-1", "p-1"]);
}

#[tokio::test]
async fn a_finished_or_executing_task_cannot_be_cancelled() {
    let world = World::new();
    for status in [
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ] {
        world.store.put(task("t", now(), status));
        let error = cancel_task(&world.store, &world.workflow, &world.clock, "t")
            .await
            .unwrap_err();
        assert!(matches!(error, CancelError::NotCancellable(ref t) if t.task_status == status));
    }
    let mut executing = task("x", now(), TaskStatus::InProgress);
    executing.attempts = 1;
    world.store.put(executing);
    let error = cancel_task(&world.store, &world.workflow, &world.clock, "x")
        .await
        .unwrap_err();
    assert!(matches!(error, CancelError::NotCancellable(_)));
    let error = cancel_task(&world.store, &world.workflow, &world.clock, "nope")
        .await
        .unwrap_err();
    assert!(matches!(error, CancelError::NotFound(_)));
    assert!(world.workflow.stopped().is_empty());
}

#[tokio::test]
async fn a_task_may_name_only_a_signing_secret_the_operator_created() {
    let world = World::new();
    let named = |secret: &str| {
        json!({"minutes": 10, "webhook": {"url": "https://a.example/",
               "signing": {"secret": secret}}})
    };
    let error = create(&world, named("crm"), None).await.unwrap_err();
    assert!(
        matches!(error, CreateError::Invalid(ref e) if e.code == "unknown_signing_secret"
            && e.field.as_deref() == Some("webhook.signing.secret")),
        "{error:?}"
    );
    let callback = json!({"minutes": 10, "onFailure": {"url": "https://a.example/",
                          "signing": {"secret": "crm"}}});
    let error = create(&world, callback, None).await.unwrap_err();
    assert!(
        matches!(error, CreateError::Invalid(ref e) if e.field.as_deref() == Some("onFailure.signing.secret")),
        "{error:?}"
    );
    assert!(world.store.tasks().is_empty());
    let created = create(&world, named(SIGNING_SECRET), None).await.unwrap();
    let signing = created.task.webhook.unwrap().signing.unwrap();
    assert_eq!(signing.secret, SIGNING_SECRET);
}
