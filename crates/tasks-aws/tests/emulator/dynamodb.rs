use crate::{emulator, unique};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use tasks_aws::bootstrap::ensure_table;
use tasks_aws::DynamoDbStore;
use tasks_core::{
    AttemptRecord, Changes, Event, NextAttempt, Pacing, Page, StatusQuery, StoreError, Task,
    TaskStatus, TaskStore, Transition, Webhook,
};

async fn store() -> (DynamoDbStore, Client) {
    let client = Client::new(&emulator().await);
    let table = unique("tasks");
    ensure_table(&client, &table).await.unwrap();
    (DynamoDbStore::new(client.clone(), table), client)
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap() + Duration::seconds(seconds)
}

fn task(id: &str, status: TaskStatus, start_execution_at: i64) -> Task {
    Task {
        task_status: status,
        start_execution_at: at(start_execution_at).timestamp(),
        ..Task::new(
            id,
            at(start_execution_at + 120),
            Pacing::default().lead_time,
            at(-600),
        )
    }
}

fn full_task(id: &str) -> Task {
    Task {
        webhook: Some(Webhook {
            url: "https://example.com/hooks/1?x=y".into(),
            method: "PUT".into(),
            headers: BTreeMap::from([
                ("Authorization".to_string(), "Bearer t0k3n".to_string()),
                ("X-Empty".to_string(), String::new()),
            ]),
            body: Some(json!({"n": 1.5, "list": [1, "two", null, false], "nested": {"deep": []}})),
            signing: None,
            keep_response_body: true,
        }),
        payload: Some(json!({"customer": "c-42", "amount": -7, "tags": ["a", "b"]})),
        attempts: 2,
        last_error: Some("HTTP 503 after 3 attempts".into()),
        executed_at: Some(at(120) + Duration::milliseconds(345)),
        lateness_ms: Some(345),
        idempotency_key: Some("key-1".into()),
        request_digest: Some("ab12".into()),
        ..task(id, TaskStatus::Failed, 0)
    }
}

/// The item as stored, every attribute as DynamoDB holds it.
async fn raw_item(
    client: &Client,
    store: &DynamoDbStore,
    id: &str,
) -> std::collections::HashMap<String, AttributeValue> {
    client
        .get_item()
        .table_name(store.table_name())
        .key("id", AttributeValue::S(id.into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap()
}

/// Every page of `query`, following next_token.
async fn all_pages(store: &DynamoDbStore, mut query: StatusQuery) -> Vec<Page> {
    let mut pages = Vec::new();
    loop {
        let page = store.query(&query).await.unwrap();
        query.page_token = page.next_token.clone();
        pages.push(page);
        if query.page_token.is_none() {
            return pages;
        }
    }
}

fn ids(pages: &[Page]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|page| page.tasks.iter().map(|task| task.id.clone()))
        .collect()
}

#[tokio::test]
async fn create_refuses_an_id_that_exists_and_keeps_the_first() {
    let (store, _) = store().await;
    let first = task("t1", TaskStatus::Scheduled, 0);
    store.create(&first).await.unwrap();
    let second = task("t1", TaskStatus::Queued, 60);
    assert_eq!(
        store.create(&second).await,
        Err(StoreError::AlreadyExists("t1".into()))
    );
    assert_eq!(store.get("t1").await.unwrap(), Some(first));
}

#[tokio::test]
async fn get_of_a_missing_task_is_none() {
    let (store, _) = store().await;
    assert_eq!(store.get("nope").await.unwrap(), None);
}

#[tokio::test]
async fn a_full_task_round_trips_under_the_seed_attribute_names_and_types() {
    let (store, client) = store().await;
    let task = full_task("full");
    store.create(&task).await.unwrap();
    assert_eq!(store.get("full").await.unwrap(), Some(task));

    let item = raw_item(&client, &store, "full").await;
    let s = |text: &str| AttributeValue::S(text.to_string());
    let n = |number: i64| AttributeValue::N(number.to_string());
    assert_eq!(item["id"], s("full"));
    assert_eq!(item["timestamp"], s("2030-06-01T12:02:00.000Z"));
    assert_eq!(item["startExecutionAt"], n(at(0).timestamp()));
    assert_eq!(item["taskStatus"], s("FAILED"));
    assert_eq!(item["lastUpdatedAt"], s("2030-06-01T11:50:00.000Z"));
    assert_eq!(item["attempts"], n(2));
    assert_eq!(item["latenessMs"], n(345));
    assert_eq!(item["executedAt"], s("2030-06-01T12:02:00.345Z"));
    let webhook = item["webhook"].as_m().unwrap();
    assert_eq!(webhook["method"], s("PUT"));
    assert_eq!(
        webhook["headers"].as_m().unwrap()["Authorization"],
        s("Bearer t0k3n")
    );
    assert!(webhook["body"].as_m().unwrap()["list"].is_l());
    assert!(item["payload"].is_m());
}

#[tokio::test]
async fn optional_fields_that_are_absent_are_not_stored() {
    let (store, client) = store().await;
    store
        .create(&task("bare", TaskStatus::Scheduled, 0))
        .await
        .unwrap();
    let item = raw_item(&client, &store, "bare").await;
    let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "attemptSeries",
            "attempts",
            "createdAt",
            "id",
            "lastUpdatedAt",
            "redispatches",
            "series",
            "startExecutionAt",
            "statusShard",
            "taskStatus",
            "timestamp",
            "writeToken"
        ]
    );
}

/// Five QUEUED tasks due at 0..=4 minutes, one due later, and others in other statuses.
async fn seeded_store() -> DynamoDbStore {
    let (store, _) = store().await;
    for (id, status, minute) in [
        ("q3", TaskStatus::Queued, 3),
        ("q0", TaskStatus::Queued, 0),
        ("q4", TaskStatus::Queued, 4),
        ("q1", TaskStatus::Queued, 1),
        ("q2", TaskStatus::Queued, 2),
        ("q9", TaskStatus::Queued, 9),
        ("s1", TaskStatus::Scheduled, 1),
        ("p1", TaskStatus::InProgress, 1),
    ] {
        store.create(&task(id, status, minute * 60)).await.unwrap();
    }
    store
}

#[tokio::test]
async fn a_status_query_pages_through_due_tasks_oldest_first() {
    let store = seeded_store().await;
    let query = StatusQuery {
        due_by: Some(at(4 * 60).timestamp()),
        ..StatusQuery::new(TaskStatus::Queued, 2)
    };
    let pages = all_pages(&store, query).await;
    assert_eq!(ids(&pages), ["q0", "q1", "q2", "q3", "q4"]);
    assert!(pages.iter().all(|page| page.tasks.len() <= 2));
    assert!(pages.len() >= 3);
    assert!(pages
        .iter()
        .flat_map(|page| &page.tasks)
        .all(|task| task.task_status == TaskStatus::Queued));
}

#[tokio::test]
async fn a_status_query_pages_newest_first() {
    let store = seeded_store().await;
    let query = StatusQuery {
        due_by: Some(at(3 * 60).timestamp()),
        newest_first: true,
        ..StatusQuery::new(TaskStatus::Queued, 2)
    };
    assert_eq!(
        ids(&all_pages(&store, query).await),
        ["q3", "q2", "q1", "q0"]
    );

    let unbounded = StatusQuery {
        newest_first: true,
        ..StatusQuery::new(TaskStatus::Queued, 4)
    };
    assert_eq!(
        ids(&all_pages(&store, unbounded).await),
        ["q9", "q4", "q3", "q2", "q1", "q0"]
    );
}

#[tokio::test]
async fn a_status_query_reads_a_window_of_start_times_both_ends_included() {
    let store = seeded_store().await;
    let window = |from: Option<i64>, to: Option<i64>, newest_first| StatusQuery {
        due_from: from.map(|minute| at(minute * 60).timestamp()),
        due_by: to.map(|minute| at(minute * 60).timestamp()),
        newest_first,
        ..StatusQuery::new(TaskStatus::Queued, 1)
    };
    let cases = [
        (window(Some(1), Some(3), false), vec!["q1", "q2", "q3"]),
        (window(Some(1), Some(3), true), vec!["q3", "q2", "q1"]),
        (window(Some(2), Some(2), false), vec!["q2"]),
        (window(Some(3), None, false), vec!["q3", "q4", "q9"]),
        (window(Some(5), Some(8), false), vec![]),
    ];
    for (query, expected) in cases {
        assert_eq!(
            ids(&all_pages(&store, query.clone()).await),
            expected,
            "{query:?}"
        );
    }
    // A token is a key of its window: one from outside another window is refused, not sent on.
    let first = store.query(&window(None, None, false)).await.unwrap();
    let outside = StatusQuery {
        page_token: first.next_token,
        ..window(Some(2), Some(3), false)
    };
    assert_eq!(
        store.query(&outside).await,
        Err(StoreError::InvalidPageToken)
    );
}

#[tokio::test]
async fn a_count_is_of_one_status_within_a_window_both_ends_included() {
    let store = seeded_store().await;
    let count = |status, from: i64, to: i64| {
        store.count(status, at(from * 60).timestamp(), at(to * 60).timestamp())
    };
    assert_eq!(count(TaskStatus::Queued, 1, 3).await, Ok(3));
    assert_eq!(count(TaskStatus::Queued, 0, 9).await, Ok(6));
    assert_eq!(count(TaskStatus::Queued, 5, 8).await, Ok(0));
    assert_eq!(count(TaskStatus::Scheduled, 0, 9).await, Ok(1));
    assert_eq!(count(TaskStatus::Completed, 0, 9).await, Ok(0));
}

#[tokio::test]
async fn a_query_that_fits_one_page_has_no_next_token() {
    let store = seeded_store().await;
    let page = store
        .query(&StatusQuery::new(TaskStatus::InProgress, 10))
        .await
        .unwrap();
    assert_eq!(page.tasks.len(), 1);
    assert_eq!(page.next_token, None);
}

#[tokio::test]
async fn damaged_or_foreign_page_tokens_are_invalid() {
    let store = seeded_store().await;
    let first = store
        .query(&StatusQuery::new(TaskStatus::Queued, 1))
        .await
        .unwrap();
    let queued_token = first.next_token.expect("more than one QUEUED task");
    for (status, token) in [
        (TaskStatus::Queued, "garbage!".to_string()),
        (TaskStatus::Queued, "eyJpZCI6MX0".to_string()),
        (TaskStatus::Scheduled, queued_token.clone()),
    ] {
        let query = StatusQuery {
            page_token: Some(token),
            ..StatusQuery::new(status, 1)
        };
        assert_eq!(store.query(&query).await, Err(StoreError::InvalidPageToken));
    }
    let resumed = StatusQuery {
        page_token: Some(queued_token),
        ..StatusQuery::new(TaskStatus::Queued, 1)
    };
    assert_eq!(ids(&[store.query(&resumed).await.unwrap()]), ["q1"]);
}

#[tokio::test]
async fn updated_before_keeps_tasks_untouched_since_even_across_empty_pages() {
    let (store, _) = store().await;
    for minute in 0..6 {
        let mut task = task(&format!("t{minute}"), TaskStatus::Queued, minute * 60);
        // Odd tasks were touched recently.
        if minute % 2 == 1 {
            task.last_updated_at = at(0) + Duration::milliseconds(1);
        }
        store.create(&task).await.unwrap();
    }
    let query = StatusQuery {
        updated_before: Some(at(0)),
        ..StatusQuery::new(TaskStatus::Queued, 1)
    };
    let pages = all_pages(&store, query).await;
    assert_eq!(ids(&pages), ["t0", "t2", "t4"]);
}

#[tokio::test]
async fn every_event_from_every_status_does_what_the_core_says() {
    let (store, _) = store().await;
    for event in Event::ALL {
        for status in TaskStatus::ALL {
            // No attempt; an attempt in the task's series; an attempt in an earlier series; an
            // attempt in the task's series with a retry handed over.
            for (attempts, series, handed_over) in
                [(0, 0, false), (1, 0, false), (1, 1, false), (1, 0, true)]
            {
                let id = format!("{event:?}-{status}-{attempts}-{series}-{handed_over}");
                let next_attempt = NextAttempt {
                    series,
                    after_attempt: attempts,
                    attempt_in_series: 1,
                    at: at(40),
                };
                let before = Task {
                    attempts,
                    series,
                    redispatches: 2,
                    next_attempt: handed_over.then(|| next_attempt.clone()),
                    ..full_task(&id)
                };
                let before = Task {
                    task_status: status,
                    ..before
                };
                store.create(&before).await.unwrap();
                let changes = Changes {
                    timestamp: Some((at(900), at(780).timestamp())),
                    webhook: Some(None),
                    payload: Some(Some(json!({"changed": [1, 2]}))),
                    slot: None,
                    retry: Some(Some(tasks_core::model::retry_policy::RetryPolicy::default())),
                    on_failure: Some(Some(Webhook {
                        url: "https://example.com/failed".into(),
                        method: "POST".into(),
                        headers: BTreeMap::from([("X-Key".to_string(), "k".to_string())]),
                        body: None,
                        signing: None,
                        keep_response_body: true,
                    })),
                    record_attempt: Some(AttemptRecord {
                        attempt: 1,
                        started_at: at(2),
                        duration_ms: 35,
                        status_code: Some(503),
                        error: Some("WebhookServerError: the receiver answered HTTP 503".into()),
                        response_body: Some("{\"busy\": true}".into()),
                    }),
                    attempt_history: None,
                    attempt_at: Some(at(3)),
                    next_attempt: (event == Event::ScheduleRetry).then(|| NextAttempt {
                        at: at(50),
                        ..next_attempt
                    }),
                };
                let mut change = Transition::new(event, at(1) + Duration::milliseconds(7))
                    .with_error("why")
                    .executed(at(2), 1_000)
                    .with_changes(changes);
                if event == Event::BeginAttempt {
                    change = change.unless_retry_scheduled();
                }
                let outcome = store.transition(&id, &change).await;
                if change.applies_to(&before) {
                    let after = change.apply(&before);
                    assert_eq!(outcome, Ok(after.clone()), "{id}");
                    assert_eq!(store.get(&id).await.unwrap(), Some(after), "{id}");
                } else {
                    let conflict = StoreError::Conflict {
                        current: Box::new(before.clone()),
                    };
                    assert_eq!(outcome, Err(conflict), "{id}");
                    assert_eq!(store.get(&id).await.unwrap(), Some(before), "{id}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_task_goes_through_its_lifecycle() {
    let (store, _) = store().await;
    store
        .create(&task("t", TaskStatus::Scheduled, 0))
        .await
        .unwrap();
    let step = |event, second| Transition::new(event, at(second));

    let claimed = store.transition("t", &step(Event::Claim, 1)).await.unwrap();
    assert_eq!(claimed.task_status, TaskStatus::Queued);
    assert_eq!(claimed.last_updated_at, at(1));
    let unclaimed = store
        .transition("t", &step(Event::Unclaim, 2))
        .await
        .unwrap();
    assert_eq!(unclaimed.task_status, TaskStatus::Scheduled);
    store.transition("t", &step(Event::Claim, 3)).await.unwrap();
    store
        .transition("t", &step(Event::Redispatch, 4))
        .await
        .unwrap();
    let started = store.transition("t", &step(Event::Start, 5)).await.unwrap();
    assert_eq!(
        (started.task_status, started.attempts),
        (TaskStatus::InProgress, 0)
    );
    let attempt = || {
        step(Event::BeginAttempt, 120)
            .if_attempts(0)
            .executed(at(120) + Duration::milliseconds(12), 12)
    };
    let first = store.transition("t", &attempt()).await.unwrap();
    assert_eq!(first.attempts, 1);
    // The same attempt begun again (a second execution of the series) loses.
    let repeated = store.transition("t", &attempt()).await;
    assert!(
        matches!(repeated, Err(StoreError::Conflict { .. })),
        "{repeated:?}"
    );
    let second = store
        .transition("t", &step(Event::BeginAttempt, 122).if_attempts(1))
        .await
        .unwrap();
    assert_eq!(second.attempts, 2);
    assert_eq!(
        second.executed_at,
        Some(at(120) + Duration::milliseconds(12))
    );
    let done = store
        .transition("t", &step(Event::Complete, 123))
        .await
        .unwrap();
    assert_eq!(done.task_status, TaskStatus::Completed);
    assert_eq!(done.lateness_ms, Some(12));
    assert_eq!(store.get("t").await.unwrap(), Some(done));
}

#[tokio::test]
async fn a_failure_records_its_error() {
    let (store, _) = store().await;
    store
        .create(&task("t", TaskStatus::InProgress, 0))
        .await
        .unwrap();
    let failed = store
        .transition(
            "t",
            &Transition::new(Event::Fail, at(1)).with_error("WebhookRejected: HTTP 404"),
        )
        .await
        .unwrap();
    assert_eq!(failed.task_status, TaskStatus::Failed);
    assert_eq!(
        failed.last_error.as_deref(),
        Some("WebhookRejected: HTTP 404")
    );
}

#[tokio::test]
async fn a_change_that_does_not_apply_is_a_conflict_with_the_current_task() {
    let (store, _) = store().await;
    let done = task("t", TaskStatus::Completed, 0);
    store.create(&done).await.unwrap();
    for event in [Event::Cancel, Event::Claim, Event::Fail] {
        assert_eq!(
            store.transition("t", &Transition::new(event, at(1))).await,
            Err(StoreError::Conflict {
                current: Box::new(done.clone())
            })
        );
    }
}

#[tokio::test]
async fn a_change_to_a_missing_task_is_not_found_and_creates_nothing() {
    let (store, _) = store().await;
    assert_eq!(
        store
            .transition("ghost", &Transition::new(Event::Cancel, at(1)))
            .await,
        Err(StoreError::NotFound("ghost".into()))
    );
    assert_eq!(store.get("ghost").await.unwrap(), None);
}

#[tokio::test]
async fn cancel_is_refused_once_an_attempt_began() {
    let (store, _) = store().await;
    store
        .create(&task("t", TaskStatus::Queued, 0))
        .await
        .unwrap();
    let begun = store
        .transition("t", &Transition::new(Event::BeginAttempt, at(1)))
        .await
        .unwrap();
    assert_eq!(
        store
            .transition("t", &Transition::new(Event::Cancel, at(2)))
            .await,
        Err(StoreError::Conflict {
            current: Box::new(begun)
        })
    );

    store
        .create(&task("u", TaskStatus::InProgress, 0))
        .await
        .unwrap();
    let cancelled = store
        .transition("u", &Transition::new(Event::Cancel, at(2)))
        .await
        .unwrap();
    assert_eq!(cancelled.task_status, TaskStatus::Cancelled);
}

#[tokio::test]
async fn an_item_without_attempts_counts_as_none_begun() {
    let (store, client) = store().await;
    store
        .create(&task("old", TaskStatus::Queued, 0))
        .await
        .unwrap();
    client
        .update_item()
        .table_name(store.table_name())
        .key("id", AttributeValue::S("old".into()))
        .update_expression("REMOVE attempts")
        .send()
        .await
        .unwrap();
    let begun = store
        .transition("old", &Transition::new(Event::BeginAttempt, at(1)))
        .await
        .unwrap();
    assert_eq!(begun.attempts, 1);

    store
        .create(&task("older", TaskStatus::Queued, 0))
        .await
        .unwrap();
    client
        .update_item()
        .table_name(store.table_name())
        .key("id", AttributeValue::S("older".into()))
        .update_expression("REMOVE attempts")
        .send()
        .await
        .unwrap();
    let cancelled = store
        .transition("older", &Transition::new(Event::Cancel, at(1)))
        .await
        .unwrap();
    assert_eq!(cancelled.task_status, TaskStatus::Cancelled);
}

/// Items written before `series` or `attemptSeries` existed: DynamoDB's conditions on whether an
/// attempt began in the series agree with `Transition::applies_to` on the task as decoded (each
/// missing number read as 0), for every combination.
#[tokio::test]
async fn legacy_items_without_series_or_attempt_series_are_judged_as_the_store_decodes_them() {
    let (store, client) = store().await;
    let combinations: [(Option<u32>, Option<u32>, Option<u32>); 10] = [
        (Some(1), Some(2), None),
        (Some(1), Some(0), None),
        (Some(1), None, None),
        (Some(1), None, Some(1)),
        (Some(1), None, Some(0)),
        (Some(1), Some(2), Some(2)),
        (Some(1), Some(2), Some(1)),
        (None, Some(2), None),
        (Some(0), Some(1), None),
        (Some(2), Some(1), Some(0)),
    ];
    type Change = (&'static str, fn() -> Transition);
    let changes: [Change; 2] = [
        ("cancel", || Transition::new(Event::Cancel, at(1))),
        ("fail after an attempt", || {
            Transition::new(Event::Fail, at(1)).if_attempt_began()
        }),
    ];
    let cases = combinations
        .into_iter()
        .flat_map(|combination| changes.map(|change| (combination, change)));
    for (n, ((attempts, series, attempt_series), (what, change))) in cases.enumerate() {
        let id = format!("legacy-{n}");
        store
            .create(&task(&id, TaskStatus::Queued, 0))
            .await
            .unwrap();
        let mut set = Vec::new();
        let mut remove = Vec::new();
        let mut values = HashMap::new();
        for (name, value) in [
            ("attempts", attempts),
            ("series", series),
            ("attemptSeries", attempt_series),
        ] {
            match value {
                Some(value) => {
                    set.push(format!("{name} = :{name}"));
                    values.insert(format!(":{name}"), AttributeValue::N(value.to_string()));
                }
                None => remove.push(name.to_string()),
            }
        }
        let mut update = String::new();
        if !set.is_empty() {
            update.push_str(&format!("SET {} ", set.join(", ")));
        }
        if !remove.is_empty() {
            update.push_str(&format!("REMOVE {}", remove.join(", ")));
        }
        client
            .update_item()
            .table_name(store.table_name())
            .key("id", AttributeValue::S(id.clone()))
            .update_expression(update)
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .send()
            .await
            .unwrap();
        let decoded = store.get(&id).await.unwrap().unwrap();
        let change = change();
        let expected = change.applies_to(&decoded);
        let applied = store.transition(&id, &change).await.is_ok();
        assert_eq!(
            applied, expected,
            "{what}: attempts {attempts:?}, series {series:?}, attemptSeries {attempt_series:?}"
        );
    }
}

#[tokio::test]
async fn a_claim_refuses_a_task_that_starts_later_than_it_read() {
    let (store, _) = store().await;
    let read = task("moved", TaskStatus::Scheduled, 0);
    store.create(&read).await.unwrap();
    let claim = |start_by: i64| Transition::new(Event::Claim, at(1)).if_starting_by(start_by);
    let refused = store
        .transition("moved", &claim(read.start_execution_at - 1))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    let claimed = store
        .transition("moved", &claim(read.start_execution_at))
        .await
        .unwrap();
    assert_eq!(claimed.task_status, TaskStatus::Queued);
}

#[tokio::test]
async fn the_optimistic_lock_refuses_a_task_changed_since_it_was_read() {
    let (store, _) = store().await;
    let read = task("t", TaskStatus::Queued, 0);
    store.create(&read).await.unwrap();
    let redispatch =
        Transition::new(Event::Redispatch, at(5)).if_last_updated_at(read.last_updated_at);
    let redispatched = store.transition("t", &redispatch).await.unwrap();
    assert_eq!(redispatched.last_updated_at, at(5));

    let stale = Transition::new(Event::Redispatch, at(6)).if_last_updated_at(read.last_updated_at);
    assert_eq!(
        store.transition("t", &stale).await,
        Err(StoreError::Conflict {
            current: Box::new(redispatched.clone())
        })
    );
    let fresh =
        Transition::new(Event::Redispatch, at(7)).if_last_updated_at(redispatched.last_updated_at);
    assert_eq!(
        store.transition("t", &fresh).await.unwrap().last_updated_at,
        at(7)
    );
}

#[tokio::test]
async fn a_missing_table_is_unavailable_with_the_cause() {
    let client = Client::new(&emulator().await);
    let store = DynamoDbStore::new(client, unique("missing"));
    match store.get("t").await {
        Err(StoreError::Unavailable {
            message,
            request_id,
        }) => {
            assert_eq!(
                message,
                "ResourceNotFoundException: Requested resource not found"
            );
            assert!(request_id.is_some_and(|id| !id.is_empty()));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_store_is_unavailable_with_the_cause() {
    let config = tasks_aws::emulator_config("http://127.0.0.1:1").await;
    let store = DynamoDbStore::new(Client::new(&config), "tasksTable");
    match store.get("t").await {
        Err(StoreError::Unavailable {
            message,
            request_id,
        }) => {
            assert!(message.starts_with("dispatch failure: "), "{message}");
            assert_eq!(request_id, None);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn racing_conditional_claims_of_one_task_let_exactly_one_win() {
    let (store, _) = store().await;
    store
        .create(&task("contested", TaskStatus::Scheduled, 1))
        .await
        .unwrap();
    // Sixteen writers, each with its own claim (and so its own write token).
    let claims: Vec<Transition> = (0..16)
        .map(|_| Transition::new(Event::Claim, Utc::now()))
        .collect();
    let results = futures::future::join_all(
        claims
            .iter()
            .map(|claim| store.transition("contested", claim)),
    )
    .await;
    let winners = results.iter().filter(|result| result.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|result| matches!(result, Err(StoreError::Conflict { .. })))
        .count();
    assert_eq!((winners, conflicts), (1, 15));
}

/// Tasks spread over every shard, many due in the same second, read in pages smaller than a
/// shard's share: each comes back once, in time order, whichever way and whatever the filter.
#[tokio::test]
async fn a_status_query_merges_every_shard_in_time_order_across_pages() {
    let (store, _) = store().await;
    let mut expected = Vec::new();
    for n in 0..120_i64 {
        let mut task = task(&format!("m{n:03}"), TaskStatus::Queued, (n * 7) % 13 * 60);
        if n % 5 == 0 {
            task.last_updated_at = at(0);
        }
        store.create(&task).await.unwrap();
        expected.push(task);
    }
    expected.sort_by_key(|task| task.start_execution_at);
    let shards: std::collections::BTreeSet<u32> = expected
        .iter()
        .map(|task| tasks_core::status_shard(&task.id))
        .collect();
    assert_eq!(shards.len(), tasks_core::STATUS_SHARDS as usize);

    for (newest_first, updated_before, limit) in [
        (false, None, 7),
        (true, None, 7),
        (false, None, 1),
        (true, Some(at(0)), 3),
        (false, None, 500),
    ] {
        let query = StatusQuery {
            newest_first,
            updated_before,
            ..StatusQuery::new(TaskStatus::Queued, limit)
        };
        let pages = all_pages(&store, query).await;
        let read: Vec<&Task> = pages.iter().flat_map(|page| &page.tasks).collect();
        let mut times: Vec<i64> = read.iter().map(|task| task.start_execution_at).collect();
        if newest_first {
            times.reverse();
        }
        assert!(times.is_sorted(), "{newest_first} {limit}: {times:?}");
        let mut read_ids: Vec<String> = read.iter().map(|task| task.id.clone()).collect();
        read_ids.sort_unstable();
        let mut wanted: Vec<String> = expected
            .iter()
            .filter(|task| updated_before.is_none_or(|before| task.last_updated_at < before))
            .map(|task| task.id.clone())
            .collect();
        wanted.sort_unstable();
        assert_eq!(read_ids, wanted, "{newest_first} {limit}");
        assert!(pages.iter().all(|page| page.tasks.len() <= limit as usize));
    }
}

#[tokio::test]
async fn a_transition_moves_the_item_to_its_new_status_shard() {
    let (store, client) = store().await;
    store
        .create(&task("moves", TaskStatus::Scheduled, 0))
        .await
        .unwrap();
    assert_eq!(
        raw_item(&client, &store, "moves").await["statusShard"],
        AttributeValue::S(TaskStatus::Scheduled.shard_key("moves"))
    );
    store
        .transition("moves", &Transition::new(Event::Claim, at(0)))
        .await
        .unwrap();
    assert_eq!(
        raw_item(&client, &store, "moves").await["statusShard"],
        AttributeValue::S(TaskStatus::Queued.shard_key("moves"))
    );
    let queued = store
        .query(&StatusQuery::new(TaskStatus::Queued, 10))
        .await
        .unwrap();
    assert_eq!(ids(&[queued]), ["moves"]);
}

/// A table written before the index was sharded: items without `statusShard` are missing from
/// the index until `reshard` gives them their key.
#[tokio::test]
async fn reshard_puts_unkeyed_items_back_in_the_index_once() {
    let (store, client) = store().await;
    for n in 0..5 {
        store
            .create(&task(&format!("old{n}"), TaskStatus::Scheduled, n * 60))
            .await
            .unwrap();
    }
    let set_shard = |id: &str, shard: Option<&str>| {
        let request = client
            .update_item()
            .table_name(store.table_name())
            .key("id", AttributeValue::S(id.into()))
            .expression_attribute_names("#shard", "statusShard");
        match shard {
            Some(shard) => request
                .update_expression("SET #shard = :shard")
                .expression_attribute_values(":shard", AttributeValue::S(shard.into())),
            None => request.update_expression("REMOVE #shard"),
        }
        .send()
    };
    for n in 0..4 {
        set_shard(&format!("old{n}"), None).await.unwrap();
    }
    set_shard("old4", Some("QUEUED#0")).await.unwrap();
    client
        .put_item()
        .table_name(store.table_name())
        .item("id", AttributeValue::S("stranger".into()))
        .item("taskStatus", AttributeValue::S("PENDING".into()))
        .send()
        .await
        .unwrap();
    let scheduled = || {
        store.count(
            TaskStatus::Scheduled,
            at(0).timestamp(),
            at(600).timestamp(),
        )
    };
    assert_eq!(scheduled().await, Ok(0));

    let report = store.reshard().await.unwrap();
    assert_eq!(
        (report.scanned, report.rewritten, report.not_tasks),
        (6, 5, vec!["stranger".to_string()])
    );
    assert_eq!(scheduled().await, Ok(5));
    let query = StatusQuery::new(TaskStatus::Scheduled, 2);
    assert_eq!(
        ids(&all_pages(&store, query).await),
        ["old0", "old1", "old2", "old3", "old4"]
    );
    assert_eq!(store.reshard().await.unwrap().rewritten, 0);
}

/// With a retention, a task that finishes carries `expiresAt` (the table's TTL attribute) that
/// long after, read back on the task; a retry of a FAILED task removes it.
#[tokio::test]
async fn a_finished_task_expires_after_the_retention_until_it_is_retried() {
    let (store, client) = store().await;
    let store = store.with_retention(Some(std::time::Duration::from_secs(30 * 86_400)));
    store
        .create(&task("e", TaskStatus::InProgress, 0))
        .await
        .unwrap();
    let running = store.get("e").await.unwrap().unwrap();
    assert_eq!(running.expires_at, None);
    let failed = store
        .transition("e", &Transition::new(Event::Fail, at(130)))
        .await
        .unwrap();
    assert_eq!(failed.expires_at, Some(at(130).timestamp() + 30 * 86_400));
    let item = client
        .get_item()
        .table_name(store.table_name())
        .key("id", AttributeValue::S("e".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        item.item().unwrap()["expiresAt"],
        AttributeValue::N((at(130).timestamp() + 30 * 86_400).to_string())
    );
    let retried = store
        .transition("e", &Transition::new(Event::Retry, at(140)))
        .await
        .unwrap();
    assert_eq!(retried.expires_at, None);
}
