//! Every write recognises its own success. The AWS SDK retries a write whose answer was lost;
//! when the first try was applied, the retry fails its condition on the item the first try
//! wrote (a create's finds its id taken). The in-memory store answers that way when told to
//! (`LostAnswer::AppliedRetried`, calibrated against the real SDK in tasks-sim's calibration
//! test), and each path below must take that answer as the success it is: before, each read it
//! as another writer's change.

use crate::support::{now, status_of, task, webhook, RecordingSender, World};
use chrono::{Duration, Utc};
use serde_json::json;
use tasks_core::contracts::AttemptOutcome;
use tasks_core::flow::api::{cancel_task, create_task};
use tasks_core::flow::api::{change_task, retry_task};
use tasks_core::flow::cron::run_cron;
use tasks_core::flow::execute::execute_task;
use tasks_core::flow::transition_read_task;
use tasks_core::rules::recovery::{resend_or_give_up, Recovery};
use tasks_core::testing::memory::{
    FixedClock, LostAnswer, MemoryQueue, MemoryStore, MemoryWorkflow,
};
use tasks_core::{DispatchMessage, Pacing, SystemClock, TaskStatus};

const RETRIED: LostAnswer = LostAnswer::AppliedRetried;

#[tokio::test]
async fn begin_attempt_whose_answer_was_lost_still_sends() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(204));
    let mut due = task(
        "a",
        Utc::now() + Duration::milliseconds(50),
        TaskStatus::Queued,
    );
    due.webhook = Some(webhook());
    store.put(due.clone());
    let pacing = Pacing::default();
    let input = pacing.execution_input(&DispatchMessage::from(&due));
    store.lose_transition_answers(1, RETRIED);
    let report = execute_task(&store, &sender, &SystemClock, &pacing, &input.into())
        .await
        .unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Delivered);
    assert_eq!(sender.sent.lock().unwrap().len(), 1, "the attempt was sent");
    let stored = &store.tasks()[0];
    assert_eq!(
        (stored.attempts, stored.task_status),
        (1, TaskStatus::Completed)
    );
}

#[tokio::test]
async fn begin_attempt_whose_every_answer_was_lost_is_tried_again_and_sends_once() {
    let store = MemoryStore::new();
    let sender = RecordingSender::answering(Ok(204));
    let mut due = task(
        "a",
        Utc::now() + Duration::milliseconds(300),
        TaskStatus::Queued,
    );
    due.webhook = Some(webhook());
    store.put(due.clone());
    let pacing = Pacing::default();
    let input = pacing.execution_input(&DispatchMessage::from(&due));
    store.lose_transition_answers(1, LostAnswer::AppliedUnanswered);
    let report = execute_task(&store, &sender, &SystemClock, &pacing, &input.into())
        .await
        .unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Delivered);
    let sent = sender.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, 1, "the attempt begun, not a second one");
    assert_eq!(store.tasks()[0].attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn claim_whose_answer_was_lost_is_sent_in_the_same_run() {
    let store = MemoryStore::new();
    store.put(task(
        "due",
        now() + Duration::seconds(179),
        TaskStatus::Scheduled,
    ));
    store.lose_transition_answers(1, RETRIED);
    let queue = MemoryQueue::new();
    let summary = run_cron(
        &store,
        &queue,
        &MemoryWorkflow::new(),
        &FixedClock::new(now()),
        &Pacing::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (summary.due.dispatched, summary.due.lost_races),
        (1, 0),
        "{summary:?}"
    );
    assert_eq!(queue.queued().len(), 1);
    assert_eq!(status_of(&store, "due"), TaskStatus::Queued);
}

#[tokio::test]
async fn create_without_a_key_whose_answer_was_lost_is_created_not_a_conflict() {
    let world = World::new();
    world.store.lose_create_answers(1, RETRIED);
    let created = create_task(
        &world.store,
        &world.queue,
        &world.clock,
        &world.pacing,
        &world.signing_secrets,
        json!({"minutes": 10}).to_string().as_bytes(),
        None,
    )
    .await
    .expect("the create was applied: no 409");
    assert!(!created.replayed);
    assert_eq!(world.store.tasks().len(), 1);
}

#[tokio::test]
async fn cancel_whose_answer_was_lost_is_cancelled_not_a_conflict() {
    let world = World::new();
    world
        .store
        .put(task("a", now() + Duration::hours(1), TaskStatus::Scheduled));
    world.store.lose_transition_answers(1, RETRIED);
    let cancelled = cancel_task(&world.store, &world.workflow, &world.clock, "a")
        .await
        .expect("the cancel was applied: no 409");
    assert_eq!(cancelled.task_status, TaskStatus::Cancelled);
}

#[tokio::test]
async fn change_whose_answer_was_lost_is_applied_once_not_a_conflict() {
    let world = World::new();
    world
        .store
        .put(task("a", now() + Duration::hours(1), TaskStatus::Scheduled));
    world.store.lose_transition_answers(1, RETRIED);
    let changed = change_task(&world.ports(), "a", br#"{"payload": {"n": 2}}"#)
        .await
        .expect("the change was applied: no 409");
    assert_eq!(changed.task.payload, Some(json!({"n": 2})));
    assert_eq!(changed.task.series, 1, "applied once: one new series");
}

#[tokio::test]
async fn retry_whose_answer_was_lost_is_a_new_series_not_a_conflict() {
    let retried = |lost: bool| async move {
        let world = World::new();
        let mut failed = task("a", now() - Duration::hours(1), TaskStatus::Failed);
        failed.series = 1;
        world.store.put(failed);
        if lost {
            world.store.lose_transition_answers(1, RETRIED);
        }
        retry_task(&world.ports(), "a", b"").await
    };
    let expected = retried(false).await.unwrap();
    let after_a_lost_answer = retried(true).await.expect("the retry was applied: no 409");
    assert_eq!(
        (
            after_a_lost_answer.task.series,
            after_a_lost_answer.task.task_status
        ),
        (expected.task.series, expected.task.task_status),
        "applied once, as without the fault"
    );
}

#[tokio::test]
async fn sweep_requeue_whose_answer_was_lost_is_requeued_not_a_lost_race() {
    let store = MemoryStore::new();
    let mut queued = task("a", now() - Duration::minutes(5), TaskStatus::Queued);
    queued.series = 1;
    store.put(queued.clone());
    store.lose_transition_answers(1, RETRIED);
    let clock = FixedClock::new(now());
    let recovery = transition_read_task(
        &store,
        &queued,
        resend_or_give_up(&queued, tasks_core::Clock::now(&clock)),
    )
    .await
    .unwrap();
    assert!(
        matches!(recovery, Recovery::Requeued(ref task) if task.redispatches == 1),
        "{recovery:?}"
    );
}
