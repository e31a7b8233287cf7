//! `POST /tasks/batch` and `POST /tasks/cancel`.

use crate::app::TestApp;
use serde_json::{json, Value};

fn ts(seconds_from_now: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds_from_now))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn batch(app: &TestApp, tasks: Value) -> Vec<Value> {
    let body = json!({ "tasks": tasks }).to_string();
    let (status, answer) = app.call("POST", "/tasks/batch", Some(&body), &[]).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap().clone();
    for (index, result) in results.iter().enumerate() {
        assert_eq!(
            result["index"], index,
            "results come in item order: {answer}"
        );
    }
    results
}

fn assert_item_error(result: &Value, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(result["status"], status, "{result}");
    assert_eq!(result["error"]["code"], code, "{result}");
    assert!(result["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(result["error"]["field"].as_str(), field, "{result}");
    assert!(result.get("task").is_none(), "{result}");
}

pub async fn batch_create_answers_each_item_as_post_tasks_would(app: &TestApp) {
    let results = batch(
        app,
        json!([
            {"minutes": 10, "payload": {"n": 0}},
            {"minutes": "ten"},
            {"seconds": 10},
            {"timestamp": ts(600), "idempotencyKey": "invoice-7"},
            7,
            {"minutes": 5, "idempotencyKey": 5},
            {"minutes": 5, "payload": "x".repeat(300 * 1024)},
            {"minutes": 5, "colour": "red"},
            {"days": 1},
        ]),
    )
    .await;
    assert_eq!(results.len(), 9);
    assert_eq!(results[0]["status"], 201);
    assert_eq!(results[0]["task"]["status"], "SCHEDULED");
    assert_eq!(results[0]["task"]["payload"], json!({"n": 0}));
    assert!(results[0].get("error").is_none());
    assert_item_error(&results[1], 400, "invalid_field", Some("minutes"));
    assert_eq!(results[2]["status"], 201);
    assert_eq!(results[2]["task"]["status"], "QUEUED", "handed off at once");
    assert_eq!(results[3]["status"], 201);
    assert_item_error(&results[4], 400, "invalid_body", None);
    assert_item_error(
        &results[5],
        400,
        "invalid_idempotency_key",
        Some("idempotencyKey"),
    );
    assert_item_error(&results[6], 413, "payload_too_large", None);
    assert_item_error(&results[7], 400, "unknown_field", Some("colour"));
    assert_item_error(&results[8], 400, "unknown_field", Some("days"));
    assert_eq!(app.stored().await, 3, "only the valid items are stored");
    assert_eq!(
        app.queued().await,
        vec![results[2]["task"]["id"].as_str().unwrap().to_string()]
    );
    let id = results[0]["task"]["id"].as_str().unwrap();
    let (status, fetched) = app.call("GET", &format!("/tasks/{id}"), None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, results[0]["task"]);

    // The key of an item is a POST's Idempotency-Key: the same request replays, another conflicts.
    let first = &results[3]["task"];
    let again = batch(
        app,
        json!([
            {"timestamp": first["timestamp"], "idempotencyKey": "invoice-7"},
            {"timestamp": ts(700), "idempotencyKey": "invoice-7"},
            {"timestamp": first["timestamp"], "idempotencyKey": ""},
        ]),
    )
    .await;
    assert_eq!(again[0]["status"], 200);
    assert_eq!(again[0]["task"]["id"], first["id"]);
    assert_item_error(&again[1], 409, "idempotency_conflict", None);
    assert_item_error(
        &again[2],
        400,
        "invalid_idempotency_key",
        Some("idempotencyKey"),
    );
    let body = json!({"timestamp": first["timestamp"]}).to_string();
    let (status, single) = app
        .call(
            "POST",
            "/tasks",
            Some(&body),
            &[("Idempotency-Key", "invoice-7")],
        )
        .await;
    assert_eq!(status, 200, "a batch item and a POST share keys: {single}");
    assert_eq!(single["id"], first["id"]);
    assert_eq!(app.stored().await, 3);
}

pub async fn batch_create_takes_a_hundred_items(app: &TestApp) {
    let tasks: Vec<Value> = (1..=100).map(|n| json!({"minutes": 10 + n})).collect();
    let results = batch(app, json!(tasks)).await;
    assert!(results.iter().all(|result| result["status"] == 201));
    assert_eq!(app.stored().await, 100);
}

pub async fn a_body_that_is_not_a_batch_is_400_and_writes_nothing(app: &TestApp) {
    let hundred_and_one: Vec<Value> = (0..101).map(|_| json!({"minutes": 5})).collect();
    for body in [
        "{".to_string(),
        "[]".into(),
        "{}".into(),
        json!({"tasks": []}).to_string(),
        json!({"tasks": {"minutes": 5}}).to_string(),
        json!({"tasks": [{"minutes": 5}], "dryRun": true}).to_string(),
        json!({"tasks": hundred_and_one}).to_string(),
    ] {
        let (status, answer) = app.call("POST", "/tasks/batch", Some(&body), &[]).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_batch", "{answer}");
        assert_eq!(answer["error"]["field"], "tasks", "{answer}");
    }
    let item = json!({"minutes": 5, "payload": "x".repeat(200 * 1024)});
    let oversized = json!({ "tasks": vec![item; 21] }).to_string();
    assert!(oversized.len() > 4 * 1024 * 1024);
    let (status, answer) = app
        .call("POST", "/tasks/batch", Some(&oversized), &[])
        .await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    for (method, uri) in [("GET", "/tasks/batch"), ("DELETE", "/tasks/cancel")] {
        let (status, answer) = app.call(method, uri, None, &[]).await;
        assert_eq!(status, 405, "{method} {uri}: {answer}");
    }
    assert_eq!(app.stored().await, 0);
}

pub async fn bulk_cancel_answers_each_id_as_delete_would(app: &TestApp) {
    let created = batch(
        app,
        json!([{"minutes": 30}, {"minutes": 40}, {"seconds": 30}]),
    )
    .await;
    let id = |n: usize| created[n]["task"]["id"].as_str().unwrap().to_string();
    let (status, _) = app
        .call("DELETE", &format!("/tasks/{}", id(1)), None, &[])
        .await;
    assert_eq!(status, 200);
    let long = "x".repeat(2049);
    let ids = json!([
        id(0),
        "6b1f6f4e-0000-4000-8000-000000000000",
        id(1),
        id(2),
        long
    ]);
    let body = json!({ "ids": ids }).to_string();
    let (status, answer) = app.call("POST", "/tasks/cancel", Some(&body), &[]).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for (result, id) in results.iter().zip(ids.as_array().unwrap()) {
        assert_eq!(&result["id"], id, "results come in the order of the ids");
    }
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[0]["task"]["status"], "CANCELLED");
    assert_item_error(&results[1], 404, "task_not_found", None);
    assert_item_error(&results[2], 409, "not_cancellable", None);
    assert_eq!(results[2]["error"]["status"], "CANCELLED");
    assert_eq!(
        results[3]["status"], 200,
        "a QUEUED task is still cancellable"
    );
    assert_eq!(results[3]["task"]["status"], "CANCELLED");
    assert_item_error(&results[4], 404, "task_not_found", None);
    let (_, fetched) = app
        .call("GET", &format!("/tasks/{}", id(0)), None, &[])
        .await;
    assert_eq!(fetched["status"], "CANCELLED");
}

pub async fn a_body_that_is_not_a_list_of_ids_is_400(app: &TestApp) {
    let created = batch(app, json!([{"minutes": 30}])).await;
    let id = created[0]["task"]["id"].clone();
    let hundred_and_one: Vec<Value> = (0..101).map(|_| id.clone()).collect();
    for body in [
        "{".to_string(),
        "{}".into(),
        json!({"ids": []}).to_string(),
        json!({"ids": id}).to_string(),
        json!({"ids": [1]}).to_string(),
        json!({"ids": [id], "force": true}).to_string(),
        json!({"ids": hundred_and_one}).to_string(),
    ] {
        let (status, answer) = app.call("POST", "/tasks/cancel", Some(&body), &[]).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_batch", "{answer}");
        assert_eq!(answer["error"]["field"], "ids", "{answer}");
    }
    let (_, fetched) = app
        .call(
            "GET",
            &format!("/tasks/{}", id.as_str().unwrap()),
            None,
            &[],
        )
        .await;
    assert_eq!(
        fetched["status"], "SCHEDULED",
        "a refused request cancels nothing"
    );
}
