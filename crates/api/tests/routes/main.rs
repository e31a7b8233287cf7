//! Every route and every bad-input class, run against the in-memory adapters and against
//! DynamoDB / SQS / Step Functions on the emulator.

mod app;
mod bulk;
mod cases;
mod fuzz;
mod gateway;
mod window;

macro_rules! backend_tests {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let app = crate::app::TestApp::$backend().await;
                    crate::cases::$case(&app).await;
                }
            )*
        }
    };
}

macro_rules! all_backends {
    ($($case:ident),* $(,)?) => {
        backend_tests!(memory: $($case),*);
        backend_tests!(emulator: $($case),*);
    };
}

all_backends!(
    create_with_relative_time_answers_201_and_can_be_read_back,
    create_with_absolute_time_and_webhook_hides_header_and_query_values,
    a_task_due_within_the_hand_off_window_is_queued_at_once,
    a_task_due_later_in_the_lead_time_waits_for_the_cron,
    idempotency_key_replays_or_conflicts,
    unknown_task_is_404,
    list_pages_newest_due_first_with_next_token,
    list_rejects_bad_parameters,
    cancel_a_scheduled_task_then_conflict,
    health_and_openapi_answer,
    unknown_routes_and_methods_answer_json,
    every_bad_body_is_a_4xx_naming_the_field_and_writes_nothing,
    an_oversized_body_is_413_and_writes_nothing,
    the_deepest_payload_the_store_takes_is_accepted,
    batch_create_answers_each_item_as_post_tasks_would,
    batch_create_takes_a_hundred_items,
    a_body_that_is_not_a_batch_is_400_and_writes_nothing,
    bulk_cancel_answers_each_id_as_delete_would,
    a_body_that_is_not_a_list_of_ids_is_400,
    list_reads_a_window_of_task_times_both_ends_included,
    list_rejects_a_bad_window,
    a_task_may_be_scheduled_ten_years_ahead_and_not_a_second_more,
    patch_moves_a_task_and_hands_it_off_inside_the_lead_time,
    patch_and_run_refuse_bad_input_missing_and_begun_tasks,
    run_now_and_retry_a_failed_task,
    a_task_s_retry_policy_is_checked_shown_and_changed,
    attempts_are_listed_newest_first,
    a_failure_callback_is_checked_shown_redacted_and_changed,
    a_signing_secret_is_chosen_by_name_shown_and_changed,
);

#[tokio::test]
async fn a_store_outage_is_503_with_a_request_id() {
    let app = app::TestApp::memory().await;
    app.memory_store().set_unavailable(true);
    let (status, body) = app.call("GET", "/tasks/abc", None, &[]).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert!(body["error"]["requestId"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    let (status, _) = app
        .call("POST", "/tasks", Some(r#"{"minutes": 5}"#), &[])
        .await;
    assert_eq!(status, 503);
    // In a batch the outage is each item's: the answer still says which were not done.
    let (status, body) = app
        .call(
            "POST",
            "/tasks/batch",
            Some(r#"{"tasks": [{"minutes": 5}]}"#),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["status"], 503);
    assert!(body["results"][0]["error"]["requestId"].is_string());
    let (status, body) = app
        .call("POST", "/tasks/cancel", Some(r#"{"ids": ["abc"]}"#), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["status"], 503);
}

#[tokio::test]
async fn with_api_keys_every_task_route_needs_one_and_health_stays_open() {
    let app = app::TestApp::memory()
        .await
        .with_api_keys(&["key-one", "key-two"]);
    let body = Some(r#"{"minutes": 5}"#);
    for key in [
        None,
        Some(""),
        Some("key-on"),
        Some("key-one "),
        Some("KEY-ONE"),
    ] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        for (method, uri, body) in [
            ("POST", "/tasks", body),
            (
                "POST",
                "/tasks/batch",
                Some(r#"{"tasks": [{"minutes": 5}]}"#),
            ),
            ("POST", "/tasks/cancel", Some(r#"{"ids": ["abc"]}"#)),
            ("GET", "/tasks", None),
            ("GET", "/tasks/abc", None),
            ("DELETE", "/tasks/abc", None),
            ("PATCH", "/tasks/abc", body),
            ("POST", "/tasks/abc/run", None),
            ("POST", "/tasks/abc/retry", None),
            ("GET", "/tasks/abc/attempts", None),
            ("GET", "/nope", None),
        ] {
            let (status, error) = app.call(method, uri, body, &headers).await;
            assert_eq!(status, 403, "{method} {uri} with {key:?}: {error}");
            assert_eq!(error["error"]["code"], "forbidden");
        }
    }
    assert_eq!(app.stored().await, 0, "a refused request changes nothing");
    for path in ["/health", "/openapi.json"] {
        let (status, _) = app.call("GET", path, None, &[]).await;
        assert_eq!(status, 200, "{path}");
    }
    for key in ["key-one", "key-two"] {
        let (status, created) = app
            .call("POST", "/tasks", body, &[("x-api-key", key)])
            .await;
        assert_eq!(status, 201, "{created}");
    }
    assert_eq!(app.stored().await, 2);
}

#[tokio::test]
async fn without_api_keys_the_api_is_open() {
    let app = app::TestApp::memory().await.with_api_keys(&[]);
    let (status, _) = app
        .call("POST", "/tasks", Some(r#"{"minutes": 5}"#), &[])
        .await;
    assert_eq!(status, 201);
}

/// Every operation in `openapi.json` is routed, and each documented status is produced by a request.
#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let spec: serde_json::Value = serde_json::from_str(api::OPENAPI).unwrap();
    let app = app::TestApp::memory().await;
    let (_, created) = app
        .call("POST", "/tasks", Some(r#"{"minutes": 5}"#), &[])
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let (_, finished) = app
        .call("POST", "/tasks", Some(r#"{"minutes": 6}"#), &[])
        .await;
    let finished = finished["id"].as_str().unwrap().to_string();
    app.call("DELETE", &format!("/tasks/{finished}"), None, &[])
        .await;
    let (_, runnable) = app
        .call("POST", "/tasks", Some(r#"{"hours": 2}"#), &[])
        .await;
    let runnable = runnable["id"].as_str().unwrap().to_string();
    let failed = tasks_core::Task {
        task_status: tasks_core::TaskStatus::Failed,
        ..tasks_core::Task::new(
            "failed",
            chrono::Utc::now(),
            tasks_core::Pacing::default().lead_time,
            chrono::Utc::now(),
        )
    };
    app.memory_store().put(failed);
    let big = format!(
        r#"{{"minutes": 1, "payload": "{}"}}"#,
        "x".repeat(300 * 1024)
    );
    let huge_batch = format!(r#"{{"tasks": [], "padding": "{}"}}"#, "x".repeat(5 << 20));
    let key = [("Idempotency-Key", "spec-check")];
    // (documented method, documented path, uri, body, headers, expected status)
    type Example<'a> = (
        &'a str,
        &'a str,
        String,
        Option<String>,
        &'a [(&'a str, &'a str)],
        u16,
    );
    let examples: Vec<Example> = vec![
        (
            "post",
            "/tasks",
            "/tasks".into(),
            Some(r#"{"minutes": 5}"#.into()),
            &key,
            201,
        ),
        (
            "post",
            "/tasks",
            "/tasks".into(),
            Some(r#"{"minutes": 5}"#.into()),
            &key,
            200,
        ),
        (
            "post",
            "/tasks",
            "/tasks".into(),
            Some(r#"{"minutes": 7}"#.into()),
            &key,
            409,
        ),
        (
            "post",
            "/tasks",
            "/tasks".into(),
            Some("{".into()),
            &[],
            400,
        ),
        ("post", "/tasks", "/tasks".into(), Some(big), &[], 413),
        ("get", "/tasks", "/tasks?limit=5".into(), None, &[], 200),
        ("get", "/tasks", "/tasks?limit=0".into(), None, &[], 400),
        ("get", "/tasks/{id}", format!("/tasks/{id}"), None, &[], 200),
        (
            "patch",
            "/tasks/{id}",
            format!("/tasks/{id}"),
            Some(r#"{"minutes": 8}"#.into()),
            &[],
            200,
        ),
        (
            "patch",
            "/tasks/{id}",
            format!("/tasks/{id}"),
            Some("{}".into()),
            &[],
            400,
        ),
        (
            "patch",
            "/tasks/{id}",
            "/tasks/missing".into(),
            Some(r#"{"minutes": 8}"#.into()),
            &[],
            404,
        ),
        (
            "patch",
            "/tasks/{id}",
            format!("/tasks/{finished}"),
            Some(r#"{"minutes": 8}"#.into()),
            &[],
            409,
        ),
        (
            "get",
            "/tasks/{id}/attempts",
            format!("/tasks/{id}/attempts"),
            None,
            &[],
            200,
        ),
        (
            "get",
            "/tasks/{id}/attempts",
            "/tasks/missing/attempts".into(),
            None,
            &[],
            404,
        ),
        (
            "post",
            "/tasks/{id}/run",
            "/tasks/missing/run".into(),
            None,
            &[],
            404,
        ),
        (
            "post",
            "/tasks/{id}/run",
            format!("/tasks/{finished}/run"),
            None,
            &[],
            409,
        ),
        (
            "post",
            "/tasks/{id}/retry",
            "/tasks/failed/retry".into(),
            Some("[]".into()),
            &[],
            400,
        ),
        (
            "post",
            "/tasks/{id}/retry",
            "/tasks/failed/retry".into(),
            None,
            &[],
            200,
        ),
        (
            "post",
            "/tasks/{id}/retry",
            "/tasks/missing/retry".into(),
            None,
            &[],
            404,
        ),
        (
            "post",
            "/tasks/{id}/retry",
            format!("/tasks/{finished}/retry"),
            None,
            &[],
            409,
        ),
        (
            "get",
            "/tasks/{id}",
            "/tasks/missing".into(),
            None,
            &[],
            404,
        ),
        (
            "delete",
            "/tasks/{id}",
            format!("/tasks/{id}"),
            None,
            &[],
            200,
        ),
        (
            "delete",
            "/tasks/{id}",
            "/tasks/missing".into(),
            None,
            &[],
            404,
        ),
        (
            "delete",
            "/tasks/{id}",
            format!("/tasks/{finished}"),
            None,
            &[],
            409,
        ),
        (
            "post",
            "/tasks/batch",
            "/tasks/batch".into(),
            Some(r#"{"tasks": [{"minutes": 5}, {"minutes": -1}]}"#.into()),
            &[],
            200,
        ),
        (
            "post",
            "/tasks/batch",
            "/tasks/batch".into(),
            Some(r#"{"tasks": []}"#.into()),
            &[],
            400,
        ),
        (
            "post",
            "/tasks/batch",
            "/tasks/batch".into(),
            Some(huge_batch),
            &[],
            413,
        ),
        (
            "post",
            "/tasks/cancel",
            "/tasks/cancel".into(),
            Some(format!(r#"{{"ids": ["{id}", "missing"]}}"#)),
            &[],
            200,
        ),
        (
            "post",
            "/tasks/cancel",
            "/tasks/cancel".into(),
            Some(r#"{"ids": []}"#.into()),
            &[],
            400,
        ),
        (
            "post",
            "/tasks/{id}/run",
            format!("/tasks/{runnable}/run"),
            None,
            &[],
            200,
        ),
        ("get", "/health", "/health".into(), None, &[], 200),
        (
            "get",
            "/openapi.json",
            "/openapi.json".into(),
            None,
            &[],
            200,
        ),
    ];
    let mut produced = std::collections::BTreeSet::new();
    for (method, path, uri, body, headers, expected) in &examples {
        let (status, body) = app
            .call(&method.to_uppercase(), uri, body.as_deref(), headers)
            .await;
        assert_eq!(status, *expected, "{method} {uri}: {body}");
        produced.insert((method.to_string(), path.to_string(), status.to_string()));
    }
    app.memory_store().set_unavailable(true);
    for (method, path, uri) in [
        ("post", "/tasks", "/tasks".to_string()),
        ("get", "/tasks", "/tasks".into()),
        ("get", "/tasks/{id}", format!("/tasks/{id}")),
        ("delete", "/tasks/{id}", format!("/tasks/{id}")),
        ("patch", "/tasks/{id}", format!("/tasks/{id}")),
        ("post", "/tasks/{id}/run", format!("/tasks/{id}/run")),
        ("post", "/tasks/{id}/retry", "/tasks/failed/retry".into()),
        (
            "get",
            "/tasks/{id}/attempts",
            format!("/tasks/{id}/attempts"),
        ),
    ] {
        let body = matches!(method, "post" | "patch").then_some(r#"{"minutes": 5}"#);
        let (status, _) = app.call(&method.to_uppercase(), &uri, body, &[]).await;
        assert_eq!(status, 503);
        produced.insert((method.to_string(), path.to_string(), "503".into()));
    }
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            for status in operation["responses"].as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone(), status.clone()));
            }
        }
    }
    assert_eq!(documented, produced);
}
