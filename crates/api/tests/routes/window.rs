//! `GET /tasks?from=...&to=...`: a window on the tasks' time.

use crate::app::TestApp;
use serde_json::{json, Value};

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Tasks at whole seconds 10, 20, 30 and 40 minutes ahead; their times, as created.
async fn four_tasks(app: &TestApp) -> Vec<String> {
    let base =
        chrono::DurationRound::duration_trunc(chrono::Utc::now(), chrono::Duration::seconds(1))
            .unwrap();
    let mut times = Vec::new();
    for minutes in [10, 20, 30, 40] {
        let at = (base + chrono::Duration::minutes(minutes))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let body = json!({ "timestamp": at }).to_string();
        let (status, created) = app.call("POST", "/tasks", Some(&body), &[]).await;
        assert_eq!(status, 201, "{created}");
        times.push(created["timestamp"].as_str().unwrap().to_string());
    }
    times
}

/// Every page of a listing, followed through nextToken.
async fn all_times(app: &TestApp, query: &str) -> Vec<String> {
    let mut times = Vec::new();
    let mut uri = format!("/tasks?{query}");
    loop {
        let (status, page) = app.call("GET", &uri, None, &[]).await;
        assert_eq!(status, 200, "{uri}: {page}");
        times.extend(
            page["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|task| task["timestamp"].as_str().unwrap().to_string()),
        );
        match page["nextToken"].as_str() {
            Some(token) => uri = format!("/tasks?{query}&nextToken={}", encode(token)),
            None => return times,
        }
    }
}

pub async fn list_reads_a_window_of_task_times_both_ends_included(app: &TestApp) {
    let t = four_tasks(app).await;
    let window = |from: &str, to: &str| format!("from={}&to={}&limit=1", encode(from), encode(to));
    assert_eq!(
        all_times(app, &window(&t[1], &t[2])).await,
        [t[2].clone(), t[1].clone()]
    );
    assert_eq!(all_times(app, &window(&t[1], &t[1])).await, [t[1].clone()]);
    assert_eq!(
        all_times(app, &format!("from={}&limit=2", encode(&t[2]))).await,
        [t[3].clone(), t[2].clone()]
    );
    assert_eq!(
        all_times(app, &format!("to={}", encode(&t[1]))).await,
        [t[1].clone(), t[0].clone()]
    );
    // Any offset names the same instant.
    let t1 = chrono::DateTime::parse_from_rfc3339(&t[1]).unwrap();
    let offset = t1
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339();
    assert_eq!(
        all_times(app, &window(&offset, &t[1])).await,
        [t[1].clone()]
    );
    // One second off each end leaves the task out.
    let second = chrono::Duration::seconds(1);
    let before = (t1 - second).to_rfc3339();
    let after = (t1 + second).to_rfc3339();
    assert_eq!(all_times(app, &window(&after, &t[2])).await, [t[2].clone()]);
    assert_eq!(
        all_times(app, &window(&t[0], &before)).await,
        [t[0].clone()]
    );
    let (_, cancelled) = app
        .call(
            "GET",
            &format!("/tasks?status=CANCELLED&{}", window(&t[0], &t[3])),
            None,
            &[],
        )
        .await;
    assert_eq!(cancelled["tasks"], json!([]));
}

pub async fn list_rejects_a_bad_window(app: &TestApp) {
    let t = four_tasks(app).await;
    for (query, field) in [
        ("from=tomorrow".to_string(), "from"),
        ("to=2030-01-01".into(), "to"),
        ("from=2030-01-01T12:00:00".into(), "from"),
        (format!("from={}&to={}", encode(&t[1]), encode(&t[0])), "to"),
    ] {
        let (status, body) = app.call("GET", &format!("/tasks?{query}"), None, &[]).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    // A page token belongs to its window: one from outside another window is refused.
    let (_, page) = app.call("GET", "/tasks?limit=1", None, &[]).await;
    let token = page["nextToken"].as_str().unwrap();
    let (_, first) = app.call("GET", "/tasks?limit=1", None, &[]).await;
    assert_eq!(first["tasks"][0]["timestamp"], Value::from(t[3].clone()));
    let uri = format!("/tasks?to={}&nextToken={}", encode(&t[0]), encode(token));
    let (status, body) = app.call("GET", &uri, None, &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "nextToken", "{body}");
}

/// The horizon: ten years (3,653 days) ahead is accepted and stored, one second more is not.
pub async fn a_task_may_be_scheduled_ten_years_ahead_and_not_a_second_more(app: &TestApp) {
    let horizon = 3653 * 86400;
    let (status, created) = app
        .call(
            "POST",
            "/tasks",
            Some(&json!({"seconds": horizon}).to_string()),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (_, fetched) = app.call("GET", &format!("/tasks/{id}"), None, &[]).await;
    assert_eq!(fetched["timestamp"], created["timestamp"]);
    // An absolute time a second short of the limit: the request takes far less than that second.
    let at = chrono::Utc::now() + chrono::Duration::seconds(horizon - 1);
    let body = json!({ "timestamp": at.to_rfc3339() }).to_string();
    let (status, created) = app.call("POST", "/tasks", Some(&body), &[]).await;
    assert_eq!(status, 201, "{created}");
    for beyond in [
        json!({"seconds": horizon + 1}),
        json!({"timestamp": (chrono::Utc::now() + chrono::Duration::seconds(horizon + 1)).to_rfc3339()}),
    ] {
        let (status, body) = app
            .call("POST", "/tasks", Some(&beyond.to_string()), &[])
            .await;
        assert_eq!(status, 400, "{beyond}: {body}");
        assert_eq!(body["error"]["code"], "time_too_far");
        assert_eq!(body["error"]["field"], "timestamp");
    }
    assert_eq!(app.stored().await, 2);
}
