use crate::support::{status_of, task, webhook, RecordingSender};
use chrono::{DateTime, Duration, Utc};
use tasks_core::contracts::AttemptOutcome;
use tasks_core::flow::cron::run_cron;
use tasks_core::flow::run_slot::{run_slot, SlotSummary};
use tasks_core::flow::start::start_slots;
use tasks_core::model::retry_policy::{Backoff, RetryPolicy};
use tasks_core::testing::memory::{FixedClock, MemoryQueue, MemoryStore, MemoryWorkflow};
use tasks_core::{
    DispatchMessage, Pacing, QueueMessage, Slot, SystemClock, Task, TaskStatus, TaskStore,
};

/// QUEUED tasks with a webhook, due `in_ms` from now, in one slot.
fn slot_of(store: &MemoryStore, ids: &[&str], in_ms: i64) -> Slot {
    let due = Utc::now() + Duration::milliseconds(in_ms);
    let tasks: Vec<DispatchMessage> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let mut queued = task(
                id,
                due + Duration::milliseconds(n as i64),
                TaskStatus::Queued,
            );
            queued.webhook = Some(webhook());
            queued.slot = Some("slot-test".into());
            store.put(queued.clone());
            DispatchMessage::from(&queued)
        })
        .collect();
    Slot {
        name: "slot-test".into(),
        wake_at: Pacing::default().wake_at(due),
        tasks,
        held: false,
    }
}

fn policy(max_attempts: u32, seconds: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff: Backoff {
            initial_seconds: seconds,
            multiplier: 1.0,
            max_seconds: seconds,
        },
        ..RetryPolicy::default()
    }
}

async fn run(
    store: &MemoryStore,
    queue: &MemoryQueue,
    sender: &RecordingSender,
    slot: &Slot,
) -> SlotSummary {
    run_slot(store, sender, queue, &SystemClock, &Pacing::default(), slot)
        .await
        .0
}

#[tokio::test]
async fn a_slot_sends_each_task_at_its_millisecond_and_records_it_completed() {
    let store = MemoryStore::new();
    let queue = MemoryQueue::new();
    let sender = RecordingSender::answering(Ok(204));
    let slot = slot_of(&store, &["a", "b", "c"], 800);
    let summary = run(&store, &queue, &sender, &slot).await;
    assert_eq!(summary.completed, 3, "{summary:?}");
    assert!(queue.messages().is_empty());
    let sent = sender.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 3);
    for (id, attempt, at) in sent {
        let task = store.get(&id).await.unwrap().unwrap();
        assert!(
            at >= task.timestamp,
            "{id} sent {at} before {}",
            task.timestamp
        );
        assert!(
            at - task.timestamp < Duration::milliseconds(50),
            "{id} late"
        );
        assert_eq!((attempt, task.task_status), (1, TaskStatus::Completed));
        assert_eq!(task.attempt_history.len(), 1);
    }
}

#[tokio::test]
async fn a_failing_task_is_retried_in_the_slot_then_recorded_failed() {
    let store = MemoryStore::new();
    let queue = MemoryQueue::new();
    let sender = RecordingSender::answering(Ok(503));
    let slot = slot_of(&store, &["a"], 0);
    let mut failing = store.get("a").await.unwrap().unwrap();
    failing.retry = Some(policy(2, 1));
    store.put(failing);
    let summary = run(&store, &queue, &sender, &slot).await;
    assert_eq!(summary.failed, 1, "{summary:?}");
    assert!(queue.messages().is_empty(), "nothing handed over");
    let sent = sender.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert!(
        sent[1].2 - sent[0].2 >= Duration::seconds(1),
        "retried early"
    );
    let task = store.get("a").await.unwrap().unwrap();
    assert_eq!(task.task_status, TaskStatus::Failed);
    assert!(task.last_error.unwrap().starts_with("WebhookServerError"));
}

#[tokio::test]
async fn a_retry_due_later_goes_on_in_the_task_s_own_execution() {
    let store = MemoryStore::new();
    let queue = MemoryQueue::new();
    let sender = RecordingSender::answering(Ok(503));
    let slot = slot_of(&store, &["a"], 0);
    let mut failing = store.get("a").await.unwrap().unwrap();
    failing.retry = Some(policy(3, 120));
    store.put(failing);
    let summary = run(&store, &queue, &sender, &slot).await;
    assert_eq!(summary.handed_over, 1, "{summary:?}");
    let messages = queue.messages();
    let [QueueMessage::HandOver(hand_over)] = messages.as_slice() else {
        panic!("one hand-over: {messages:?}");
    };
    assert_eq!(hand_over.task.id, "a");
    assert_eq!(hand_over.result.outcome, AttemptOutcome::Retry);
    assert!(hand_over.result.retry_at.unwrap() > Utc::now() + Duration::seconds(100));
    assert_eq!(status_of(&store, "a"), TaskStatus::InProgress);
}

#[tokio::test]
async fn a_slot_run_again_sends_nothing_twice_and_hands_on_what_began() {
    let store = MemoryStore::new();
    let queue = MemoryQueue::new();
    let sender = RecordingSender::answering(Ok(200));
    let slot = slot_of(&store, &["done", "begun"], 0);
    let mut begun = store.get("begun").await.unwrap().unwrap();
    begun.task_status = TaskStatus::InProgress;
    begun.attempts = 1;
    begun.attempt_series = begun.series;
    store.put(begun);
    let first = run(&store, &queue, &sender, &slot).await;
    assert_eq!((first.completed, first.handed_over), (1, 1), "{first:?}");
    let again = run(&store, &queue, &sender, &slot).await;
    assert_eq!((again.skipped, again.handed_over), (1, 1), "{again:?}");
    assert_eq!(sender.sent.lock().unwrap().len(), 1);
    // The task whose attempt began elsewhere goes to its own execution, named after its
    // series, which starts once however often it is handed on.
    for message in queue.messages() {
        assert_eq!(
            message,
            QueueMessage::Task(DispatchMessage::from(&task_of(&store, "begun").await))
        );
    }
}

async fn task_of(store: &MemoryStore, id: &str) -> Task {
    store.get(id).await.unwrap().unwrap()
}

fn single(id: &str, due: DateTime<Utc>) -> Slot {
    Slot {
        name: format!("slot-of-{id}"),
        wake_at: due - Duration::seconds(1),
        tasks: vec![DispatchMessage {
            id: id.into(),
            timestamp: due,
            series: 1,
        }],
        held: true,
    }
}

#[tokio::test]
async fn single_task_slots_of_one_second_start_as_one_merged_slot() {
    let store = MemoryStore::new();
    let workflow = MemoryWorkflow::new();
    let clock = FixedClock::new(crate::support::now());
    let due = crate::support::now() + Duration::seconds(30);
    for id in ["a", "b", "c", "later"] {
        let mut queued = task(id, due, TaskStatus::Queued);
        queued.series = 1;
        store.put(queued);
    }
    let slots = [
        single("a", due),
        single("b", due + Duration::milliseconds(300)),
        single("c", due),
        single("later", due + Duration::seconds(1)),
    ];
    let refs: Vec<&Slot> = slots.iter().collect();
    let results = start_slots(&store, &workflow, &clock, &Pacing::default(), &refs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let started = workflow.slots();
    assert_eq!(started.len(), 2, "{started:?}");
    let merged = started.iter().find(|slot| slot.tasks.len() == 3).unwrap();
    let ids: Vec<&str> = merged.tasks.iter().map(|task| task.id.as_str()).collect();
    assert_eq!(ids, ["a", "c", "b"], "in time order");
    for id in ["a", "b", "c"] {
        let recorded = task_of(&store, id).await;
        assert_eq!(recorded.task_status, TaskStatus::InProgress);
        assert_eq!(recorded.slot.as_deref(), Some(merged.name.as_str()));
    }
    // A slot of one alone in its second starts as it is, its task left QUEUED.
    assert!(started.iter().any(|slot| slot.name == "slot-of-later"));
    assert_eq!(status_of(&store, "later"), TaskStatus::Queued);
    // Delivered again, the batch starts nothing new.
    start_slots(&store, &workflow, &clock, &Pacing::default(), &refs).await;
    assert_eq!(workflow.slots().len(), 2);
}

#[test]
fn the_api_s_hand_over_waits_in_the_queue_until_shortly_before_it_wakes_and_a_cron_slot_does_not() {
    let now = crate::support::now();
    let far = QueueMessage::Slot(single("a", now + Duration::seconds(61)));
    assert_eq!(far.delay(now), std::time::Duration::from_secs(45));
    let near = QueueMessage::Slot(single("a", now + Duration::seconds(10)));
    assert_eq!(near.delay(now), std::time::Duration::ZERO);
    let from_cron = Slot {
        held: false,
        ..single("a", now + Duration::seconds(61))
    };
    assert_eq!(
        QueueMessage::Slot(from_cron).delay(now),
        std::time::Duration::ZERO
    );
}

#[tokio::test]
async fn the_stuck_sweep_asks_about_the_slot_of_a_task_without_its_own_execution() {
    let now = crate::support::now();
    let store = MemoryStore::new();
    let workflow = MemoryWorkflow::new();
    let clock = FixedClock::new(now);
    let pacing = Pacing::default();
    for (id, slot) in [("running", "slot-running"), ("ended", "slot-ended")] {
        let mut stuck = task(id, now - Duration::hours(1), TaskStatus::InProgress);
        stuck.attempts = 1;
        stuck.slot = Some(slot.into());
        store.put(stuck);
        let execution = tasks_core::Execution::of_slot(&Slot {
            name: slot.into(),
            wake_at: now - Duration::hours(1),
            tasks: Vec::new(),
            held: false,
        });
        tasks_core::Workflow::start(&workflow, &execution)
            .await
            .unwrap();
    }
    workflow.end("slot-ended", "SUCCEEDED");
    let summary = run_cron(&store, &MemoryQueue::new(), &workflow, &clock, &pacing)
        .await
        .unwrap();
    assert_eq!(
        (summary.stuck.running, summary.stuck.failed),
        (1, 1),
        "{summary:?}"
    );
    assert_eq!(status_of(&store, "running"), TaskStatus::InProgress);
    let ended = task_of(&store, "ended").await;
    assert_eq!(ended.task_status, TaskStatus::Failed);
    assert!(ended.last_error.unwrap().contains("slot-ended"));
}

/// The stuck alarm counts a running execution only past every deadline its task's own retry
/// policy allows: a task in a day-long policy of its own is healthy an hour past its time.
#[tokio::test]
async fn a_running_execution_is_stuck_only_past_its_own_policy_s_deadlines() {
    let now = crate::support::now();
    let store = MemoryStore::new();
    let workflow = MemoryWorkflow::new();
    let clock = FixedClock::new(now);
    let pacing = Pacing::default();
    let patient = tasks_core::model::retry_policy::RetryPolicy {
        max_attempts: 20,
        backoff: tasks_core::model::retry_policy::Backoff {
            max_seconds: 3_600,
            ..tasks_core::model::retry_policy::RetryPolicy::default().backoff
        },
        ..Default::default()
    };
    for (id, policy) in [("default-policy", None), ("patient-policy", Some(patient))] {
        let mut stuck = task(id, now - Duration::hours(1), TaskStatus::InProgress);
        stuck.attempts = 1;
        stuck.retry = policy;
        store.put(stuck.clone());
        let input = tasks_core::ExecutionInput {
            id: stuck.id.clone(),
            timestamp: stuck.timestamp,
            wake_at: stuck.timestamp,
            series: stuck.series,
        };
        let execution = tasks_core::Execution::of_task(&input, None);
        tasks_core::Workflow::start(&workflow, &execution)
            .await
            .unwrap();
    }
    let summary = run_cron(&store, &MemoryQueue::new(), &workflow, &clock, &pacing)
        .await
        .unwrap();
    assert_eq!(
        (summary.stuck.running, summary.stuck.overdue),
        (2, 1),
        "{summary:?}"
    );
    let record = tasks_core::metrics::cron_run(&summary).to_json(0);
    assert_eq!(record["StuckTasksFound"], 1.0);
    assert_eq!(record["StuckTasksStillRunning"], 1.0);
    for id in ["default-policy", "patient-policy"] {
        assert_eq!(status_of(&store, id), TaskStatus::InProgress, "left alone");
    }
}

#[tokio::test]
async fn a_task_moved_since_the_index_read_runs_on_its_own_at_its_new_time() {
    let now = crate::support::now();
    let store = MemoryStore::new();
    let queue = MemoryQueue::new();
    let moved = task("moved", now + Duration::minutes(20), TaskStatus::Scheduled);
    store.put(moved.clone());
    // The index still shows the time it had before the change.
    let stale = Task {
        timestamp: now + Duration::seconds(60),
        ..moved
    };
    let clock = FixedClock::new(now);
    let mut planner = tasks_core::rules::slot_plan::SlotPlanner::new(&Pacing::default(), now);
    let (summary, _) =
        tasks_core::flow::claim::dispatch(&store, &queue, &clock, &mut planner, vec![stale]).await;
    assert_eq!(summary.dispatched, 1);
    let messages = queue.messages();
    let [QueueMessage::Task(message)] = messages.as_slice() else {
        panic!("its own message: {messages:?}");
    };
    assert_eq!(message.timestamp, now + Duration::minutes(20));
}

#[tokio::test]
async fn a_claim_from_a_stale_read_does_not_take_a_task_moved_later() {
    let now = crate::support::now();
    let pacing = Pacing::default();
    let store = MemoryStore::new();
    let queue = MemoryQueue::new();
    // Moved two years ahead, beyond anything an execution can wait for.
    let moved = task("moved", now + Duration::days(730), TaskStatus::Scheduled);
    store.put(moved.clone());
    // The index still shows the time (and start) it had before the change.
    let was_due = now + Duration::seconds(60);
    let stale = Task {
        timestamp: was_due,
        start_execution_at: pacing.start_execution_at(was_due),
        ..moved
    };
    let clock = FixedClock::new(now);
    let mut planner = tasks_core::rules::slot_plan::SlotPlanner::new(&pacing, now);
    let (summary, _) =
        tasks_core::flow::claim::dispatch(&store, &queue, &clock, &mut planner, vec![stale]).await;
    assert_eq!(
        (summary.dispatched, summary.lost_races),
        (0, 1),
        "{summary:?}"
    );
    assert!(queue.messages().is_empty());
    assert_eq!(status_of(&store, "moved"), TaskStatus::Scheduled);
}

/// A store whose first attempt begin fails while another runner of the series (a repeated run
/// of the slot) begins the same attempt, and whose next begins fail too: every try of the run's
/// begin fails, and the run reads the task again.
struct RacedBegin {
    inner: MemoryStore,
    begins: std::sync::Mutex<u32>,
}

#[async_trait::async_trait]
impl TaskStore for RacedBegin {
    async fn create(&self, task: &Task) -> Result<(), tasks_core::StoreError> {
        self.inner.create(task).await
    }

    async fn get(&self, id: &str) -> Result<Option<Task>, tasks_core::StoreError> {
        self.inner.get(id).await
    }

    async fn query(
        &self,
        query: &tasks_core::StatusQuery,
    ) -> Result<tasks_core::Page, tasks_core::StoreError> {
        self.inner.query(query).await
    }

    async fn transition(
        &self,
        id: &str,
        change: &tasks_core::Transition,
    ) -> Result<Task, tasks_core::StoreError> {
        if change.event == tasks_core::Event::BeginAttempt {
            let begins = {
                let mut begins = self.begins.lock().unwrap();
                *begins += 1;
                *begins
            };
            if begins == 1 {
                let theirs = tasks_core::Transition::new(change.event, change.at)
                    .in_series(change.expected_series.unwrap_or_default())
                    .if_attempts(change.expected_attempts.unwrap_or_default());
                self.inner.transition(id, &theirs).await?;
            }
        }
        if *self.begins.lock().unwrap() <= 3 && change.event == tasks_core::Event::BeginAttempt {
            return Err(tasks_core::StoreError::Unavailable {
                message: "injected".into(),
                request_id: None,
            });
        }
        self.inner.transition(id, change).await
    }
}

#[tokio::test]
async fn a_slot_run_hands_off_an_attempt_another_runner_began_after_its_first_read() {
    let store = RacedBegin {
        inner: MemoryStore::new(),
        begins: std::sync::Mutex::new(0),
    };
    let queue = MemoryQueue::new();
    let sender = RecordingSender::answering(Ok(204));
    let slot = slot_of(&store.inner, &["a"], 300);
    let (summary, _) = run_slot(
        &store,
        &sender,
        &queue,
        &SystemClock,
        &Pacing::default(),
        &slot,
    )
    .await;
    assert_eq!(summary.handed_over, 1, "{summary:?}");
    assert!(
        sender.sent.lock().unwrap().is_empty(),
        "the other runner sends attempt 1; this run must not send attempt 2"
    );
    assert_eq!(store.inner.tasks()[0].attempts, 1);
}

/// The failure callback stays out of the slot's run (and its timeout): a task that fails with a
/// callback is handed over with its unrecorded report, and its own execution records FAILED and
/// calls the callback. A task without one is recorded FAILED in the slot.
#[tokio::test]
async fn a_failure_with_a_callback_is_handed_to_the_task_s_own_execution() {
    let store = MemoryStore::new();
    let queue = MemoryQueue::new();
    let sender = RecordingSender::answering(Ok(404));
    let slot = slot_of(&store, &["called-back", "plain"], 300);
    let mut with_callback = store.get("called-back").await.unwrap().unwrap();
    with_callback.on_failure = Some(webhook());
    store.put(with_callback);

    let summary = run(&store, &queue, &sender, &slot).await;
    assert_eq!((summary.failed, summary.handed_over), (1, 1), "{summary:?}");
    assert_eq!(status_of(&store, "plain"), TaskStatus::Failed);
    assert_eq!(status_of(&store, "called-back"), TaskStatus::InProgress);
    let messages = queue.messages();
    let [QueueMessage::HandOver(hand_over)] = messages.as_slice() else {
        panic!("{messages:?}");
    };
    assert_eq!(
        (hand_over.task.id.as_str(), hand_over.result.outcome),
        ("called-back", AttemptOutcome::Failed)
    );
    // Two webhook requests, no callback.
    assert_eq!(sender.sent.lock().unwrap().len(), 2);
}
