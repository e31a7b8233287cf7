use crate::support::{status_of, task};
use chrono::{Duration, TimeZone, Utc};
use tasks_core::flow::cron::run_cron;
use tasks_core::testing::memory::{FixedClock, MemoryQueue, MemoryStore, MemoryWorkflow};
use tasks_core::{Pacing, QueueMessage, Slot, TaskStatus, TaskStore};

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap()
}

fn seeded(due: usize, later: usize) -> MemoryStore {
    let store = MemoryStore::new();
    for i in 0..due {
        store.put(task(
            &format!("due-{i:04}"),
            now() + Duration::seconds(179),
            TaskStatus::Scheduled,
        ));
    }
    for i in 0..later {
        store.put(task(
            &format!("later-{i:04}"),
            now() + Duration::seconds(181 + i as i64),
            TaskStatus::Scheduled,
        ));
    }
    store
}

#[tokio::test]
async fn cron_sends_exactly_the_due_tasks_once() {
    let store = seeded(1200, 300);
    let queue = MemoryQueue::new();
    let clock = FixedClock::new(now());
    let summary = run_cron(
        &store,
        &queue,
        &MemoryWorkflow::new(),
        &clock,
        &Pacing::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.due.found, 1200);
    assert_eq!(summary.due.dispatched, 1200);
    assert_eq!(summary.due.errors, 0);
    let mut ids: Vec<String> = queue.queued().into_iter().map(|m| m.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1200);
    assert!(ids.iter().all(|id| id.starts_with("due-")));
    assert_eq!(status_of(&store, "due-0000"), TaskStatus::Queued);
    assert_eq!(status_of(&store, "later-0000"), TaskStatus::Scheduled);
    // Due in the same second: slots of at most 250, each task's claim naming its slot.
    let slots: Vec<Slot> = queue
        .messages()
        .into_iter()
        .map(|message| match message {
            QueueMessage::Slot(slot) => slot,
            other => panic!("a claim is sent in a slot: {other:?}"),
        })
        .collect();
    let sizes: Vec<usize> = slots.iter().map(|slot| slot.tasks.len()).collect();
    assert_eq!(sizes, [250, 250, 250, 250, 200]);
    // Sent the lead time ahead, a cron run's slots start at once: not held in the queue.
    assert!(slots.iter().all(|slot| !slot.held));
    // Each later slot of the second wakes earlier, by the time its tasks take to begin at
    // 4,000 a second, so that the second's attempts begin at that rate together.
    let mut ahead: Vec<i64> = slots
        .iter()
        .map(|slot| (now() + Duration::seconds(178) - slot.wake_at).num_milliseconds())
        .collect();
    ahead.sort_unstable();
    assert_eq!(ahead, [62, 125, 187, 250, 300]);
    for slot in &slots {
        let first = store.get(&slot.tasks[0].id).await.unwrap().unwrap();
        assert_eq!(first.slot.as_deref(), Some(slot.name.as_str()));
        assert!(slot
            .tasks
            .windows(2)
            .all(|pair| pair[0].timestamp <= pair[1].timestamp));
    }

    let again = run_cron(
        &store,
        &queue,
        &MemoryWorkflow::new(),
        &clock,
        &Pacing::default(),
    )
    .await
    .unwrap();
    assert_eq!(again.due.found, 0);
    assert_eq!(queue.queued().len(), 1200);
}

#[tokio::test]
async fn racing_cron_runs_dispatch_each_task_once() {
    let store = seeded(500, 500);
    let queue = MemoryQueue::new();
    let clock = FixedClock::new(now());
    let pacing = Pacing::default();
    let workflow = MemoryWorkflow::new();
    let (a, b) = tokio::join!(
        run_cron(&store, &queue, &workflow, &clock, &pacing),
        run_cron(&store, &queue, &workflow, &clock, &pacing)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.due.dispatched + b.due.dispatched, 500);
    let mut ids: Vec<String> = queue.queued().into_iter().map(|m| m.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500);
    assert_eq!(queue.queued().len(), 500);
}

#[tokio::test]
async fn a_slot_whose_send_failed_is_given_back_whole() {
    let store = seeded(3, 0);
    let queue = MemoryQueue::new();
    queue.reject("due-0001");
    let clock = FixedClock::new(now());
    let summary = run_cron(
        &store,
        &queue,
        &MemoryWorkflow::new(),
        &clock,
        &Pacing::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.due.dispatched, 0);
    assert_eq!(summary.due.errors, 3);
    for id in ["due-0000", "due-0001", "due-0002"] {
        assert_eq!(status_of(&store, id), TaskStatus::Scheduled);
        assert_eq!(store.get(id).await.unwrap().unwrap().slot, None);
    }

    let queue = MemoryQueue::new();
    let retry = run_cron(
        &store,
        &queue,
        &MemoryWorkflow::new(),
        &clock,
        &Pacing::default(),
    )
    .await
    .unwrap();
    assert_eq!(retry.due.dispatched, 3);
    assert_eq!(queue.messages().len(), 1);
}

#[tokio::test]
async fn a_queue_outage_leaves_every_task_scheduled() {
    let store = seeded(25, 0);
    let queue = MemoryQueue::new();
    queue.set_unavailable(true);
    let clock = FixedClock::new(now());
    let summary = run_cron(
        &store,
        &queue,
        &MemoryWorkflow::new(),
        &clock,
        &Pacing::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.due.dispatched, 0);
    assert_eq!(summary.due.errors, 25);
    assert!(store
        .tasks()
        .iter()
        .all(|t| t.task_status == TaskStatus::Scheduled));
}

#[tokio::test]
async fn a_stranded_claim_is_sent_again_after_the_grace_period() {
    let store = seeded(1, 0);
    let queue = MemoryQueue::new();
    let clock = FixedClock::new(now());
    let pacing = Pacing::default();
    run_cron(&store, &queue, &MemoryWorkflow::new(), &clock, &pacing)
        .await
        .unwrap();
    assert_eq!(queue.queued().len(), 1);

    clock.set(now() + pacing.claim_grace - Duration::seconds(1));
    let early = run_cron(&store, &queue, &MemoryWorkflow::new(), &clock, &pacing)
        .await
        .unwrap();
    assert_eq!(early.stale.requeued, 0);

    clock.set(now() + pacing.claim_grace + Duration::seconds(1));
    let late = run_cron(&store, &queue, &MemoryWorkflow::new(), &clock, &pacing)
        .await
        .unwrap();
    assert_eq!(late.stale.requeued, 1);
    assert_eq!(queue.queued().len(), 2);
    assert_eq!(status_of(&store, "due-0000"), TaskStatus::Queued);

    let workflow = MemoryWorkflow::new();
    let (a, b) = tokio::join!(
        run_cron(&store, &queue, &workflow, &clock, &pacing),
        run_cron(&store, &queue, &workflow, &clock, &pacing)
    );
    assert_eq!(a.unwrap().stale.requeued + b.unwrap().stale.requeued, 0);
}

#[tokio::test]
async fn a_store_outage_fails_the_run() {
    let store = seeded(1, 0);
    store.set_unavailable(true);
    let result = run_cron(
        &store,
        &MemoryQueue::new(),
        &MemoryWorkflow::new(),
        &FixedClock::new(now()),
        &Pacing::default(),
    )
    .await;
    assert!(result.is_err());
}

/// Tasks due in the coming minutes, more than the start rate can start within the lead time,
/// are claimed now (look-ahead); with look-ahead off they wait for their start time.
#[tokio::test]
async fn cron_claims_a_coming_hotspot_early_and_a_steady_load_on_time() {
    let hotspot = || {
        let store = MemoryStore::new();
        for i in 0..35_000 {
            // Start times 90 s from now: due 270 s from now.
            store.put(task(
                &format!("hot-{i:05}"),
                now() + Duration::seconds(270),
                TaskStatus::Scheduled,
            ));
        }
        store.put(task(
            "after-the-hotspot",
            now() + Duration::seconds(600),
            TaskStatus::Scheduled,
        ));
        store
    };
    // 35,000 tasks are at most 200 slots (one per 250 tasks, one per second of their minute):
    // at one start a second that takes 200 s, more than the 61 s until their minute's start
    // times plus the lead time's slack (90 s), so they are claimed now, through the end of
    // their minute (120 s).
    let slow_starts = Pacing {
        start_rate: 1,
        ..Pacing::default()
    };
    let clock = FixedClock::new(now());
    let store = hotspot();
    let queue = MemoryQueue::new();
    let summary = run_cron(&store, &queue, &MemoryWorkflow::new(), &clock, &slow_starts)
        .await
        .unwrap();
    assert_eq!(summary.due.dispatched, 35_000);
    assert_eq!(summary.look_ahead_seconds, 120);
    assert_eq!(queue.messages().len(), 140);
    assert_eq!(status_of(&store, "hot-00000"), TaskStatus::Queued);
    assert_eq!(
        status_of(&store, "after-the-hotspot"),
        TaskStatus::Scheduled
    );

    for pacing in [
        Pacing::default(),
        Pacing {
            start_rate: 0,
            ..slow_starts
        },
    ] {
        let store = hotspot();
        let summary = run_cron(
            &store,
            &MemoryQueue::new(),
            &MemoryWorkflow::new(),
            &clock,
            &pacing,
        )
        .await
        .unwrap();
        assert_eq!(summary.due.found, 0, "{pacing:?}");
        assert_eq!(summary.look_ahead_seconds, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_claim_that_failed_is_tried_again_in_the_same_run() {
    for applied in [false, true] {
        let store = seeded(1, 0);
        store.fail_transitions(1, applied);
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
        assert_eq!((summary.due.dispatched, summary.due.errors), (1, 0));
        assert_eq!(
            queue.queued().len(),
            1,
            "applied behind the error: {applied}"
        );
        assert_eq!(status_of(&store, "due-0000"), TaskStatus::Queued);
    }
}
