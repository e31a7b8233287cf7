//! Property test over `POST /tasks`: whatever the body and headers, the answer is a 2xx, or a 4xx
//! with the error JSON; never a 5xx or a panic; and a refused request writes nothing.
//! Runs a bounded number of cases (`FUZZ_CASES`, default 2,000) against the in-memory adapters.

use crate::app::TestApp;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        select(vec![
            1e200, -1e200, 1e-200, 1e125, 1e126, 1e-130, 1e-131, 0.0
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(any::<String>(), inner, 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Nested arrays and objects around the store's depth limit.
fn deep() -> impl Strategy<Value = Value> {
    (25..40usize, any::<bool>()).prop_map(|(levels, objects)| {
        (0..levels).fold(Value::from(1), |inner, _| {
            if objects {
                serde_json::json!({ "n": inner })
            } else {
                Value::Array(vec![inner])
            }
        })
    })
}

fn time() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-100_000i64..40_000_000).prop_map(|offset| {
            let at = chrono::Utc::now() + chrono::Duration::seconds(offset);
            Value::from(at.to_rfc3339())
        }),
        any::<String>().prop_map(Value::from),
        json(),
    ]
}

fn amount() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (0u64..200_000).prop_map(Value::from),
        1 => json(),
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "X-Ok", "Authorization", "Content-Type", "Idempotency-Key", "x-task-id", "X-Task-Attempt",
            "Host", "Content-Length", "Webhook-Signature", "webhook-id", "Bad Name", "", "X-Ü",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "Bearer s3cret",
            "a\r\nInjected: 1",
            "tab\there",
            "",
            "\u{7f}"
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ]
}

fn webhook() -> impl Strategy<Value = Value> {
    let url = prop_oneof![
        3 => select(vec![
            "https://example.com/hook", "http://user:pw@example.com/", "https://t@example.com",
            "ftp://example.com/x", "not a url", "https://[::1]/x", "http://10.0.0.1/x?token=a", "",
            "http://example.com:99999/",
        ])
        .prop_map(Value::from),
        1 => json(),
    ];
    let method = prop_oneof![
        select(vec![
            "GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "get", ""
        ])
        .prop_map(Value::from),
        json(),
    ];
    let headers = prop_oneof![
        3 => btree_map(header_name(), header_value(), 0..5)
            .prop_map(|headers| Value::Object(headers.into_iter().map(|(k, v)| (k, v.into())).collect())),
        1 => json(),
    ];
    let body = prop_oneof![json(), deep()];
    prop_oneof![
        4 => (url, option::of(method), option::of(headers), option::of(body)).prop_map(
            |(url, method, headers, body)| {
                let mut webhook = Map::new();
                webhook.insert("url".into(), url);
                for (name, value) in [("method", method), ("headers", headers), ("body", body)] {
                    if let Some(value) = value {
                        webhook.insert(name.into(), value);
                    }
                }
                Value::Object(webhook)
            }
        ),
        1 => json(),
    ]
}

/// A create request body: mostly the fields the API knows, with any values; sometimes any JSON
/// or any bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let fields = (
        option::of(time()),
        option::of(amount()),
        option::of(amount()),
        option::of(amount()),
        option::of(webhook()),
        option::of(prop_oneof![json(), deep()]),
        option::of((any::<String>(), json())),
    )
        .prop_map(
            |(timestamp, hours, minutes, seconds, webhook, payload, extra)| {
                let mut body = Map::new();
                for (name, value) in [
                    ("timestamp", timestamp),
                    ("hours", hours),
                    ("minutes", minutes),
                    ("seconds", seconds),
                    ("webhook", webhook),
                    ("payload", payload),
                ] {
                    if let Some(value) = value {
                        body.insert(name.into(), value);
                    }
                }
                if let Some((name, value)) = extra {
                    body.insert(name, value);
                }
                Value::Object(body).to_string().into_bytes()
            },
        );
    prop_oneof![
        8 => fields,
        1 => json().prop_map(|value| value.to_string().into_bytes()),
        1 => vec(any::<u8>(), 0..64),
    ]
}

fn idempotency_key() -> impl Strategy<Value = Option<String>> {
    option::of(prop_oneof![
        3 => select(vec!["invoice-7", "k", " ", "x".repeat(256).leak()]).prop_map(str::to_string),
        1 => any::<String>().prop_filter("a header value", |key| {
            axum::http::HeaderValue::from_str(key).is_ok()
        }),
    ])
}

async fn post(app: &TestApp, body: &[u8], key: Option<&str>) -> Result<u16, TestCaseError> {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    let before = (app.stored().await, app.queued().await.len());
    let text = String::from_utf8_lossy(body);
    let (status, answer) = app.call("POST", "/tasks", Some(&text), &headers).await;
    prop_assert!(
        (200..300).contains(&status) || (400..500).contains(&status),
        "{status} for {text}: {answer}"
    );
    if status >= 400 {
        for part in ["code", "message"] {
            prop_assert!(
                answer["error"][part]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{status} without error.{part} for {text}: {answer}"
            );
        }
        let after = (app.stored().await, app.queued().await.len());
        prop_assert_eq!(after, before, "a refused request wrote: {}", text);
    }
    Ok(status)
}

#[test]
fn any_create_request_is_a_2xx_or_a_4xx_and_a_refusal_writes_nothing() {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(body(), idempotency_key()), |(body, key)| {
            runtime.block_on(async {
                let app = TestApp::memory().await;
                let first = post(&app, &body, key.as_deref()).await?;
                // The same again: a replay (200) with a key, another task without, the same
                // refusal if the first was refused.
                let again = post(&app, &body, key.as_deref()).await?;
                match (first, key.is_some()) {
                    (400.., _) => prop_assert_eq!(again, first),
                    (_, true) => prop_assert_eq!(again, 200),
                    (_, false) => prop_assert_eq!(again, 201),
                }
                Ok(())
            })
        })
        .unwrap();
}
