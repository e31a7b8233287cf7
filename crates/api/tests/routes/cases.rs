use crate::app::{TestApp, SIGNING_SECRET};
pub use crate::bulk::*;
pub use crate::window::*;
use serde_json::{json, Value};
use tasks_core::{AttemptRecord, Pacing, Task, TaskStatus};

fn ts(seconds_from_now: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds_from_now))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn create(app: &TestApp, body: Value) -> Value {
    let (status, created) = app
        .call("POST", "/tasks", Some(&body.to_string()), &[])
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

pub async fn create_with_relative_time_answers_201_and_can_be_read_back(app: &TestApp) {
    let before = chrono::Utc::now();
    let created = create(app, json!({"hours": 0, "minutes": 10, "seconds": 5})).await;
    assert_eq!(created["status"], "SCHEDULED");
    let timestamp: chrono::DateTime<chrono::Utc> =
        created["timestamp"].as_str().unwrap().parse().unwrap();
    let offset = (timestamp - before).num_seconds();
    assert!((604..=606).contains(&offset), "{offset}");
    assert_eq!(
        created["startExecutionAt"].as_i64().unwrap(),
        timestamp.timestamp() - 180
    );
    assert!((600..=605).contains(&created["timeLeftSeconds"].as_i64().unwrap()));
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));
    let id = created["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());

    let (status, fetched) = app.call("GET", &format!("/tasks/{id}"), None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(fetched["id"], created["id"]);
    assert_eq!(fetched["timestamp"], created["timestamp"]);
    assert_eq!(fetched["status"], "SCHEDULED");
    assert_eq!(app.stored().await, 1);
}

pub async fn create_with_absolute_time_and_webhook_hides_header_and_query_values(app: &TestApp) {
    let day = (chrono::Utc::now() + chrono::Duration::days(200)).date_naive();
    let created = create(
        app,
        json!({
            "timestamp": format!("{day}T01:00:00.5+01:00"),
            "webhook": {"url": "https://example.com/hook?v=2",
                        "headers": {"Authorization": "Bearer s3cret", "X-Token": "zq9-tok3n"},
                        "body": {"hello": "world"}},
            "payload": {"order": 42}
        }),
    )
    .await;
    assert_eq!(created["timestamp"], format!("{day}T00:00:00.500Z"));
    assert_eq!(created["webhook"]["method"], "POST");
    // The query's values are masked (its names kept): the full URL only goes to the receiver.
    assert_eq!(
        created["webhook"]["url"],
        format!("https://example.com/hook?v={}", api::REDACTED)
    );
    assert_eq!(
        created["webhook"]["headers"],
        json!({"Authorization": api::REDACTED, "X-Token": api::REDACTED})
    );
    assert_eq!(created["webhook"]["body"]["hello"], "world");
    assert_eq!(created["payload"]["order"], 42);
    let id = created["id"].as_str().unwrap();
    let (_, fetched) = app.call("GET", &format!("/tasks/{id}"), None, &[]).await;
    assert_eq!(fetched["webhook"], created["webhook"]);
    assert_eq!(fetched["payload"], created["payload"]);
    let (_, listed) = app.call("GET", "/tasks", None, &[]).await;
    assert_eq!(listed["tasks"][0]["webhook"], created["webhook"]);
    for shown in [&created, &fetched, &listed] {
        let text = shown.to_string();
        // Neither value can occur by chance in the rest of the JSON (ids are hexadecimal).
        assert!(
            !text.contains("s3cret") && !text.contains("zq9-tok3n"),
            "{text}"
        );
    }
}

pub async fn a_task_due_within_the_hand_off_window_is_queued_at_once(app: &TestApp) {
    let created = create(app, json!({"seconds": 10})).await;
    assert_eq!(created["status"], "QUEUED");
    assert_eq!(
        app.queued().await,
        vec![created["id"].as_str().unwrap().to_string()]
    );
}

pub async fn a_task_due_later_in_the_lead_time_waits_for_the_cron(app: &TestApp) {
    // The next cron run (within a minute) claims it into a slot with the others of its second.
    let created = create(app, json!({"seconds": 110})).await;
    assert_eq!(created["status"], "SCHEDULED");
    assert!(app.queued().await.is_empty());
}

pub async fn idempotency_key_replays_or_conflicts(app: &TestApp) {
    let body = json!({"timestamp": ts(600), "payload": {"n": 1}}).to_string();
    let headers = [("Idempotency-Key", "invoice-7")];
    let (first_status, first) = app.call("POST", "/tasks", Some(&body), &headers).await;
    assert_eq!(first_status, 201);
    let (again_status, again) = app.call("POST", "/tasks", Some(&body), &headers).await;
    assert_eq!(again_status, 200);
    assert_eq!(again["id"], first["id"]);
    let other = json!({"timestamp": ts(700)}).to_string();
    let (status, conflict) = app.call("POST", "/tasks", Some(&other), &headers).await;
    assert_error(status, &conflict, 409, "idempotency_conflict");
    assert!(
        !conflict.to_string().contains(first["id"].as_str().unwrap()),
        "a conflict does not tell the other task's id: {conflict}"
    );
    let (status, bad) = app
        .call("POST", "/tasks", Some(&body), &[("Idempotency-Key", "")])
        .await;
    assert_error(status, &bad, 400, "invalid_idempotency_key");
    assert_eq!(app.stored().await, 1);
}

pub async fn unknown_task_is_404(app: &TestApp) {
    let (status, body) = app
        .call(
            "GET",
            "/tasks/6b1f6f4e-0000-4000-8000-000000000000",
            None,
            &[],
        )
        .await;
    assert_error(status, &body, 404, "task_not_found");
    let (status, body) = app.call("DELETE", "/tasks/nope", None, &[]).await;
    assert_error(status, &body, 404, "task_not_found");
    // Longer than a DynamoDB key may be: still just not found, never a store error.
    let long = format!("/tasks/{}", "x".repeat(2049));
    for method in ["GET", "DELETE"] {
        let (status, body) = app.call(method, &long, None, &[]).await;
        assert_error(status, &body, 404, "task_not_found");
    }
}

pub async fn list_pages_newest_due_first_with_next_token(app: &TestApp) {
    let mut ids = Vec::new();
    for minutes in 1..=5 {
        let created = create(app, json!({"minutes": minutes * 10})).await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut uri = "/tasks?status=SCHEDULED&limit=2".to_string();
    for _ in 0..4 {
        let (status, page) = app.call("GET", &uri, None, &[]).await;
        assert_eq!(status, 200, "{page}");
        let tasks = page["tasks"].as_array().unwrap();
        assert!(tasks.len() <= 2);
        seen.extend(tasks.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match page["nextToken"].as_str() {
            Some(token) => {
                uri = format!(
                    "/tasks?status=SCHEDULED&limit=2&nextToken={}",
                    encode(token)
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let (status, queued) = app.call("GET", "/tasks?status=QUEUED", None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(queued["tasks"], json!([]));
    let (_, default) = app.call("GET", "/tasks", None, &[]).await;
    assert_eq!(default["tasks"].as_array().unwrap().len(), 5);
}

fn encode(token: &str) -> String {
    token
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn list_rejects_bad_parameters(app: &TestApp) {
    for (query, field) in [
        ("status=DONE", "status"),
        ("status=scheduled", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("colour=red", "colour"),
        ("nextToken=garbage!", "nextToken"),
    ] {
        let (status, body) = app.call("GET", &format!("/tasks?{query}"), None, &[]).await;
        assert_error(status, &body, 400, "invalid_query");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
}

pub async fn cancel_a_scheduled_task_then_conflict(app: &TestApp) {
    let created = create(app, json!({"minutes": 30})).await;
    let uri = format!("/tasks/{}", created["id"].as_str().unwrap());
    let (status, cancelled) = app.call("DELETE", &uri, None, &[]).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    let (status, again) = app.call("DELETE", &uri, None, &[]).await;
    assert_error(status, &again, 409, "not_cancellable");
    assert_eq!(again["error"]["status"], "CANCELLED");
    let (_, fetched) = app.call("GET", &uri, None, &[]).await;
    assert_eq!(fetched["status"], "CANCELLED");
}

pub async fn health_and_openapi_answer(app: &TestApp) {
    let (status, health) = app.call("GET", "/health", None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let (status, spec) = app.call("GET", "/openapi.json", None, &[]).await;
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
}

pub async fn unknown_routes_and_methods_answer_json(app: &TestApp) {
    let (status, body) = app.call("GET", "/nope", None, &[]).await;
    assert_error(status, &body, 404, "not_found");
    for (method, uri) in [
        ("PUT", "/tasks"),
        ("PUT", "/tasks/abc"),
        ("GET", "/tasks/abc/run"),
        ("DELETE", "/tasks/abc/retry"),
        ("POST", "/health"),
    ] {
        let (status, body) = app.call(method, uri, Some("{}"), &[]).await;
        assert_error(status, &body, 405, "method_not_allowed");
    }
    assert_eq!(app.stored().await, 0);
}

pub async fn every_bad_body_is_a_4xx_naming_the_field_and_writes_nothing(app: &TestApp) {
    let cases: Vec<(String, &str, Option<&str>)> =
        vec![
        ("{\"minutes\": ".into(), "malformed_json", None),
        ("[1]".into(), "invalid_body", None),
        (
            json!({"minutes": 1, "extra": true}).to_string(),
            "unknown_field",
            Some("extra"),
        ),
        (
            json!({"minutes": "1"}).to_string(),
            "invalid_field",
            Some("minutes"),
        ),
        (
            json!({"minutes": -5}).to_string(),
            "invalid_field",
            Some("minutes"),
        ),
        (
            json!({"timestamp": ts(600), "minutes": 1}).to_string(),
            "conflicting_time",
            Some("timestamp"),
        ),
        (
            json!({"payload": 1}).to_string(),
            "missing_time",
            Some("timestamp"),
        ),
        (
            json!({"timestamp": "next tuesday"}).to_string(),
            "invalid_timestamp",
            Some("timestamp"),
        ),
        (
            json!({"timestamp": ts(-60)}).to_string(),
            "time_in_past",
            Some("timestamp"),
        ),
        (
            json!({"timestamp": ts(3654 * 86400)}).to_string(),
            "time_too_far",
            Some("timestamp"),
        ),
        (
            json!({"hours": 87673}).to_string(),
            "time_too_far",
            Some("timestamp"),
        ),
        (
            json!({"minutes": 1, "webhook": {"url": "::nope"}}).to_string(),
            "invalid_webhook_url",
            Some("webhook.url"),
        ),
        (
            json!({"minutes": 1, "webhook": {"url": "file:///etc/passwd"}}).to_string(),
            "invalid_webhook_url",
            Some("webhook.url"),
        ),
        (
            json!({"minutes": 1, "webhook": {"url": "https://e.com", "method": "TRACE"}})
                .to_string(),
            "invalid_webhook_method",
            Some("webhook.method"),
        ),
        (
            json!({"minutes": 1, "webhook": {"url": "https://e.com", "headers": {"X": 5}}})
                .to_string(),
            "invalid_field",
            Some("webhook.headers.X"),
        ),
        (
            json!({"minutes": 1, "webhook": {"url": "https://e.com", "headers": ["X"]}})
                .to_string(),
            "invalid_field",
            Some("webhook.headers"),
        ),
        (
            json!({"minutes": 1, "webhook": {"url": "https://e.com",
                "headers": {"Idempotency-Key": "k", "X-Task-Id": "t", "host": "h"}}})
            .to_string(),
            "reserved_webhook_header",
            Some("webhook.headers"),
        ),
        (
            json!({"minutes": 1, "webhook": {"url": "https://e.com", "headers": {"X-A": "a\rb"}}})
                .to_string(),
            "invalid_webhook_header",
            Some("webhook.headers.X-A"),
        ),
        (
            json!({"minutes": 1, "webhook": {"url": "https://u:p@e.com/"}}).to_string(),
            "invalid_webhook_url",
            Some("webhook.url"),
        ),
        (
            r#"{"minutes": 1, "payload": {"big": 1e200}}"#.to_string(),
            "number_out_of_range",
            Some("payload"),
        ),
        (
            r#"{"minutes": 1, "payload": [1e-200]}"#.to_string(),
            "number_out_of_range",
            Some("payload"),
        ),
        (
            format!(r#"{{"minutes": 1, "payload": {}1{}}}"#, "[".repeat(32), "]".repeat(32)),
            "too_deeply_nested",
            Some("payload"),
        ),
        (
            format!(
                r#"{{"minutes": 1, "webhook": {{"url": "https://e.com", "body": {}1{}}}}}"#,
                "[".repeat(31),
                "]".repeat(31)
            ),
            "too_deeply_nested",
            Some("webhook.body"),
        ),
    ];
    for (body, code, field) in cases {
        let (status, error) = app.call("POST", "/tasks", Some(&body), &[]).await;
        assert_error(status, &error, 400, code);
        assert_eq!(error["error"]["field"].as_str(), field, "{body}: {error}");
    }
    assert_eq!(app.stored().await, 0);
    assert!(app.queued().await.is_empty());
}

pub async fn an_oversized_body_is_413_and_writes_nothing(app: &TestApp) {
    let body = json!({"minutes": 1, "payload": "x".repeat(300 * 1024)}).to_string();
    let (status, error) = app.call("POST", "/tasks", Some(&body), &[]).await;
    assert_error(status, &error, 413, "payload_too_large");
    // Small enough as JSON, too large as an item: lists of lists take more room stored.
    let lists = vec!["[[]]"; 51_000].join(",");
    let body = format!(r#"{{"minutes": 1, "payload": [{lists}]}}"#);
    let (status, error) = app.call("POST", "/tasks", Some(&body), &[]).await;
    assert_error(status, &error, 413, "payload_too_large");
    assert_eq!(app.stored().await, 0);
}

pub async fn the_deepest_payload_the_store_takes_is_accepted(app: &TestApp) {
    let payload = format!("{}1{}", "[".repeat(31), "]".repeat(31));
    let body = format!(r#"{{"minutes": 1, "payload": {payload}}}"#);
    let (status, created) = app.call("POST", "/tasks", Some(&body), &[]).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (_, fetched) = app.call("GET", &format!("/tasks/{id}"), None, &[]).await;
    assert_eq!(fetched["payload"].to_string(), payload);
}

fn stored_task(id: &str, seconds_from_now: i64, status: TaskStatus) -> Task {
    let now = chrono::Utc::now();
    Task {
        task_status: status,
        ..Task::new(
            id,
            now + chrono::Duration::seconds(seconds_from_now),
            Pacing::default().lead_time,
            now,
        )
    }
}

pub async fn patch_moves_a_task_and_hands_it_off_inside_the_lead_time(app: &TestApp) {
    let created = create(
        app,
        json!({"minutes": 30, "webhook": {"url": "https://example.com/a",
               "headers": {"Authorization": "Bearer s3cret"}}}),
    )
    .await;
    let uri = format!("/tasks/{}", created["id"].as_str().unwrap());
    let body =
        json!({"minutes": 45, "webhook": {"url": "https://example.com/b"}, "payload": {"v": 2}});
    let (status, moved) = app.call("PATCH", &uri, Some(&body.to_string()), &[]).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["status"], "SCHEDULED");
    assert!(
        (2690..=2701).contains(&moved["timeLeftSeconds"].as_i64().unwrap()),
        "{moved}"
    );
    assert_eq!(moved["webhook"]["url"], "https://example.com/b");
    assert_eq!(moved["webhook"]["headers"]["Authorization"], api::REDACTED);
    assert_eq!(moved["payload"], json!({"v": 2}));
    assert!(app.queued().await.is_empty());

    let (status, soon) = app
        .call("PATCH", &uri, Some(r#"{"seconds": 10}"#), &[])
        .await;
    assert_eq!(status, 200, "{soon}");
    assert_eq!(soon["status"], "QUEUED");
    assert!(soon["timeLeftSeconds"].as_i64().unwrap() <= 20);
    assert_eq!(app.queued().await, vec![created["id"].as_str().unwrap()]);
    let (_, fetched) = app.call("GET", &uri, None, &[]).await;
    assert_eq!(fetched["timestamp"], soon["timestamp"]);
    assert_eq!(fetched["payload"], json!({"v": 2}));
}

pub async fn patch_and_run_refuse_bad_input_missing_and_begun_tasks(app: &TestApp) {
    let created = create(app, json!({"minutes": 30})).await;
    let uri = format!("/tasks/{}", created["id"].as_str().unwrap());
    for (body, code) in [
        ("{}", "empty_change"),
        ("", "empty_change"),
        ("{", "malformed_json"),
        (r#"{"minutes": -1}"#, "invalid_field"),
        (r#"{"status": "QUEUED"}"#, "unknown_field"),
        (
            r#"{"webhook": {"url": "file:///etc/passwd"}}"#,
            "invalid_webhook_url",
        ),
    ] {
        let (status, error) = app.call("PATCH", &uri, Some(body), &[]).await;
        assert_error(status, &error, 400, code);
    }
    let (_, unchanged) = app.call("GET", &uri, None, &[]).await;
    assert_eq!(unchanged["timestamp"], created["timestamp"]);
    for (method, uri) in [("PATCH", "/tasks/missing"), ("POST", "/tasks/missing/run")] {
        let (status, error) = app.call(method, uri, Some(r#"{"minutes": 5}"#), &[]).await;
        assert_error(status, &error, 404, "task_not_found");
    }

    let mut begun = stored_task("begun", 1, TaskStatus::InProgress);
    (begun.series, begun.attempts, begun.attempt_series) = (1, 1, 1);
    app.put(&begun).await;
    for (method, uri) in [("PATCH", "/tasks/begun"), ("POST", "/tasks/begun/run")] {
        let (status, error) = app.call(method, uri, Some(r#"{"minutes": 5}"#), &[]).await;
        assert_error(status, &error, 409, "not_changeable");
        assert_eq!(error["error"]["status"], "IN_PROGRESS");
    }
    app.put(&stored_task("done", -60, TaskStatus::Completed))
        .await;
    let (status, error) = app
        .call("PATCH", "/tasks/done", Some(r#"{"minutes": 5}"#), &[])
        .await;
    assert_error(status, &error, 409, "not_changeable");
}

pub async fn run_now_and_retry_a_failed_task(app: &TestApp) {
    let created = create(app, json!({"hours": 5})).await;
    let id = created["id"].as_str().unwrap();
    let (status, run) = app
        .call("POST", &format!("/tasks/{id}/run"), None, &[])
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "QUEUED");
    assert_eq!(run["timeLeftSeconds"], 0);
    let (status, error) = app
        .call("POST", &format!("/tasks/{id}/retry"), None, &[])
        .await;
    assert_error(status, &error, 409, "not_retryable");
    assert_eq!(error["error"]["status"], "QUEUED");

    let failed = Task {
        series: 2,
        attempts: 4,
        attempt_series: 2,
        last_error: Some("HttpServerError: the receiver answered HTTP 503".into()),
        ..stored_task("failed", -600, TaskStatus::Failed)
    };
    app.put(&failed).await;
    let (status, error) = app
        .call(
            "POST",
            "/tasks/failed/retry",
            Some(r#"{"hours": "1"}"#),
            &[],
        )
        .await;
    assert_error(status, &error, 400, "invalid_field");
    let (status, retried) = app
        .call("POST", "/tasks/failed/retry", Some(r#"{"hours": 1}"#), &[])
        .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["status"], "SCHEDULED");
    assert_eq!(retried["attempts"], 4);
    assert!((3590..=3600).contains(&retried["timeLeftSeconds"].as_i64().unwrap()));
    let (status, error) = app.call("POST", "/tasks/failed/retry", None, &[]).await;
    assert_error(status, &error, 409, "not_retryable");
    let (status, error) = app.call("POST", "/tasks/missing/retry", None, &[]).await;
    assert_error(status, &error, 404, "task_not_found");
}

pub async fn a_task_s_retry_policy_is_checked_shown_and_changed(app: &TestApp) {
    let created = create(app, json!({"minutes": 30})).await;
    assert_eq!(created["retry"]["maxAttempts"], 4, "the default is shown");
    assert_eq!(
        created["retry"]["retryOn"],
        json!(["5xx", 408, 429, "timeout", "connection"])
    );
    let created = create(
        app,
        json!({"minutes": 30, "retry": {"maxAttempts": 10, "backoff": {"initialSeconds": 60}, "retryOn": [404]}}),
    )
    .await;
    assert_eq!(created["retry"]["maxAttempts"], 10);
    assert_eq!(
        created["retry"]["backoff"],
        json!({"initialSeconds": 60, "multiplier": 2.0, "maxSeconds": 300}),
        "unnamed fields take the default's values"
    );
    let uri = format!("/tasks/{}", created["id"].as_str().unwrap());
    let (status, changed) = app
        .call(
            "PATCH",
            &uri,
            Some(r#"{"retry": {"backoff": {"maxSeconds": 600}}}"#),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["retry"]["backoff"]["maxSeconds"], 600);
    assert_eq!(changed["retry"]["maxAttempts"], 10, "merged, not replaced");
    let (status, reset) = app
        .call("PATCH", &uri, Some(r#"{"retry": null}"#), &[])
        .await;
    assert_eq!(status, 200, "{reset}");
    assert_eq!(reset["retry"]["maxAttempts"], 4);

    for (body, field) in [
        (
            json!({"minutes": 5, "retry": {"maxAttempts": 0}}),
            "retry.maxAttempts",
        ),
        (
            json!({"minutes": 5, "retry": {"maxAttempts": 21}}),
            "retry.maxAttempts",
        ),
        (
            json!({"minutes": 5, "retry": {"retryOn": [410]}}),
            "retry.retryOn",
        ),
        (
            json!({"minutes": 5, "retry": {"retryOn": ["4xx"]}}),
            "retry.retryOn",
        ),
        (
            json!({"minutes": 5, "retry": {"backoff": {"initialSeconds": 600}}}),
            "retry.backoff.maxSeconds",
        ),
        (
            json!({"minutes": 5, "retry": {"backoff": {"multiplier": 0.5}}}),
            "retry.backoff.multiplier",
        ),
    ] {
        let (status, error) = app
            .call("POST", "/tasks", Some(&body.to_string()), &[])
            .await;
        assert_error(status, &error, 400, "invalid_retry");
        assert_eq!(error["error"]["field"], field, "{body}");
    }
    let (status, error) = app
        .call(
            "POST",
            "/tasks",
            Some(r#"{"minutes": 5, "retry": {"tries": 3}}"#),
            &[],
        )
        .await;
    assert_error(status, &error, 400, "unknown_field");
    let (status, error) = app
        .call(
            "PATCH",
            &uri,
            Some(r#"{"retry": {"maxAttempts": 99}}"#),
            &[],
        )
        .await;
    assert_error(status, &error, 400, "invalid_retry");
    assert_eq!(
        app.stored().await,
        2,
        "only the two valid tasks were stored"
    );
}

pub async fn attempts_are_listed_newest_first(app: &TestApp) {
    let record = |attempt: u32, status: u16| AttemptRecord {
        attempt,
        started_at: chrono::Utc::now() - chrono::Duration::seconds(60 - i64::from(attempt)),
        duration_ms: 20,
        status_code: Some(status),
        error: (status >= 300)
            .then(|| format!("WebhookServerError: the receiver answered HTTP {status}")),
        response_body: Some(format!("{{\"n\": {attempt}}}")),
    };
    let done = Task {
        attempts: 2,
        attempt_history: vec![record(1, 503), record(2, 200)],
        ..stored_task("done", -60, TaskStatus::Completed)
    };
    app.put(&done).await;
    let (status, listed) = app.call("GET", "/tasks/done/attempts", None, &[]).await;
    assert_eq!(status, 200, "{listed}");
    let attempts = listed["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["attempt"], 2);
    assert_eq!(attempts[0]["statusCode"], 200);
    assert!(attempts[0].get("error").is_none(), "{listed}");
    assert_eq!(attempts[1]["attempt"], 1);
    assert_eq!(attempts[1]["responseBody"], "{\"n\": 1}");
    assert!(attempts[1]["error"]
        .as_str()
        .unwrap()
        .starts_with("WebhookServerError"));
    assert_eq!(attempts[1]["durationMs"], 20);

    let created = create(app, json!({"minutes": 30})).await;
    let uri = format!("/tasks/{}/attempts", created["id"].as_str().unwrap());
    let (status, none) = app.call("GET", &uri, None, &[]).await;
    assert_eq!((status, none), (200, json!({"attempts": []})));
    let (status, error) = app.call("GET", "/tasks/missing/attempts", None, &[]).await;
    assert_error(status, &error, 404, "task_not_found");
}

pub async fn a_failure_callback_is_checked_shown_redacted_and_changed(app: &TestApp) {
    let created = create(
        app,
        json!({"minutes": 30, "onFailure": {"url": "https://example.com/failed",
               "headers": {"X-Key": "s3cret"}}}),
    )
    .await;
    assert_eq!(created["onFailure"]["url"], "https://example.com/failed");
    assert_eq!(created["onFailure"]["method"], "POST");
    assert_eq!(created["onFailure"]["headers"]["X-Key"], api::REDACTED);
    let uri = format!("/tasks/{}", created["id"].as_str().unwrap());
    let (status, moved) = app
        .call(
            "PATCH",
            &uri,
            Some(r#"{"onFailure": {"url": "https://example.com/other"}}"#),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["onFailure"]["url"], "https://example.com/other");
    assert_eq!(
        moved["onFailure"]["headers"]["X-Key"],
        api::REDACTED,
        "merged: the same origin keeps its secrets"
    );
    assert!(moved.get("droppedHeaders").is_none(), "{moved}");
    // Another origin: the stored value stays behind, and the answer says so.
    let (status, elsewhere) = app
        .call(
            "PATCH",
            &uri,
            Some(r#"{"onFailure": {"url": "https://example.org/other"}}"#),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{elsewhere}");
    assert_eq!(elsewhere["onFailure"]["url"], "https://example.org/other");
    assert!(
        elsewhere["onFailure"]
            .get("headers")
            .is_none_or(|headers| headers == &json!({})),
        "{elsewhere}"
    );
    assert_eq!(
        elsewhere["droppedHeaders"],
        json!(["onFailure.headers.X-Key"])
    );
    let (status, removed) = app
        .call("PATCH", &uri, Some(r#"{"onFailure": null}"#), &[])
        .await;
    assert_eq!(status, 200, "{removed}");
    assert!(removed.get("onFailure").is_none(), "{removed}");
    for (on_failure, code, field) in [
        (
            json!({"url": "http://"}),
            "invalid_webhook_url",
            "onFailure.url",
        ),
        (
            json!({"url": "https://x", "body": "b"}),
            "unknown_field",
            "onFailure.body",
        ),
        (
            json!({"url": "https://x", "headers": {"Webhook-Id": "1"}}),
            "reserved_webhook_header",
            "onFailure.headers",
        ),
    ] {
        let body = json!({"minutes": 5, "onFailure": on_failure});
        let (status, error) = app
            .call("POST", "/tasks", Some(&body.to_string()), &[])
            .await;
        assert_error(status, &error, 400, code);
        assert_eq!(error["error"]["field"], field, "{body}");
    }
    assert_eq!(app.stored().await, 1);
}

/// A task may name a signing secret the operator created (the test app has `billing`) and keep
/// no answers: both are shown (the name, never a value) and changed by a merge patch; a name the
/// deployment does not have is a 400 that writes nothing, on create, in a batch and in a change.
pub async fn a_signing_secret_is_chosen_by_name_shown_and_changed(app: &TestApp) {
    let created = create(
        app,
        json!({"minutes": 30,
               "webhook": {"url": "https://example.com/hook",
                           "signing": {"secret": SIGNING_SECRET}, "keepResponseBody": false},
               "onFailure": {"url": "https://example.com/failed",
                             "signing": {"secret": SIGNING_SECRET}}}),
    )
    .await;
    assert_eq!(
        created["webhook"]["signing"],
        json!({"secret": SIGNING_SECRET})
    );
    assert_eq!(created["webhook"]["keepResponseBody"], false);
    assert_eq!(
        created["onFailure"]["signing"],
        json!({"secret": SIGNING_SECRET})
    );
    assert!(
        created["onFailure"].get("keepResponseBody").is_none(),
        "{created}"
    );
    let uri = format!("/tasks/{}", created["id"].as_str().unwrap());
    let (status, error) = app
        .call(
            "PATCH",
            &uri,
            Some(r#"{"webhook": {"signing": {"secret": "crm"}}}"#),
            &[],
        )
        .await;
    assert_error(status, &error, 400, "unknown_signing_secret");
    assert_eq!(error["error"]["field"], "webhook.signing.secret");
    let (_, unchanged) = app.call("GET", &uri, None, &[]).await;
    assert_eq!(unchanged["webhook"], created["webhook"]);
    let (status, changed) = app
        .call(
            "PATCH",
            &uri,
            Some(r#"{"webhook": {"signing": null, "keepResponseBody": true}}"#),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert!(changed["webhook"].get("signing").is_none(), "{changed}");
    assert!(
        changed["webhook"].get("keepResponseBody").is_none(),
        "{changed}"
    );
    for (body, field) in [
        (
            json!({"minutes": 5, "webhook": {"url": "https://x", "signing": {"secret": "crm"}}}),
            "webhook.signing.secret",
        ),
        (
            json!({"minutes": 5, "onFailure": {"url": "https://x", "signing": {"secret": "crm"}}}),
            "onFailure.signing.secret",
        ),
    ] {
        let (status, error) = app
            .call("POST", "/tasks", Some(&body.to_string()), &[])
            .await;
        assert_error(status, &error, 400, "unknown_signing_secret");
        assert_eq!(error["error"]["field"], field, "{body}");
        let batch = json!({"tasks": [body]});
        let (status, answer) = app
            .call("POST", "/tasks/batch", Some(&batch.to_string()), &[])
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["results"][0]["error"]["code"],
            "unknown_signing_secret"
        );
    }
    assert_eq!(app.stored().await, 1);
}
