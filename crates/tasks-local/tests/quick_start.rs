//! The README's quick start, run against local mode: every request it shows is sent as written
//! (its absolute time moved to a few seconds from now, its receiver to one of this test's, the
//! ids it names to the ones this run created), and each answer must have the README's shape: the
//! same fields, nested alike, with the same `status`, error `code` and `field`. So the README's
//! example outputs stay true as the API changes.

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tasks_local::{start, Settings};

const README: &str = include_str!("../../../README.md");
/// What the README's requests are sent to, and its example receiver.
const README_BASE: &str = "http://127.0.0.1:3000";
const README_RECEIVER: &str = "http://127.0.0.1:8000/";
/// Values compared as they are; every other leaf is compared by its JSON type.
const COMPARED: [&str; 3] = ["status", "code", "field"];

/// One `$ curl …` of the quick start and the answer the README shows for it.
struct Step {
    command: String,
    shown: Value,
}

/// The quick start's commands: the `sh` block after "With `make dev` running".
fn steps() -> Vec<Step> {
    let start = README
        .find("With `make dev` running")
        .expect("the README's quick start");
    let block = &README[start..];
    let block = &block[block.find("```sh\n").expect("its sh block") + 6..];
    let block = &block[..block.find("\n```").expect("the block's end")];
    let mut steps = Vec::new();
    let mut lines = block.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        let Some(first) = line.strip_prefix("$ ") else {
            continue;
        };
        let mut command = first.to_string();
        while command.ends_with('\\') {
            command.pop();
            command.push(' ');
            command.push_str(lines.next().expect("a continued command"));
        }
        let shown = lines.next().expect("the command's answer");
        let shown = serde_json::from_str(shown).unwrap_or_else(|e| {
            panic!("the README's answer to {command} is not JSON ({e}): {shown}")
        });
        steps.push(Step { command, shown });
    }
    assert!(
        steps.len() >= 8,
        "the quick start's commands: {}",
        steps.len()
    );
    steps
}

/// `value` with every leaf replaced by its JSON type, but the [`COMPARED`] ones.
fn shape(value: &Value, key: &str) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, field)| (name.clone(), shape(field, name)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|item| shape(item, key)).collect()),
        Value::String(_) if COMPARED.contains(&key) => value.clone(),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => Value::Null,
    }
}

/// The request a curl command line makes: (method, url, headers, body).
fn request(command: &str) -> (String, String, Vec<(String, String)>, Option<String>) {
    let words = shlex::split(command).expect("a shell command line");
    assert_eq!(words[0], "curl", "{command}");
    let (mut method, mut url, mut headers, mut body) = (None, None, Vec::new(), None);
    let mut words = words.into_iter().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "-s" => {}
            "-X" => method = words.next(),
            "-H" => {
                let header = words.next().expect("a header");
                let (name, value) = header.split_once(':').expect("name: value");
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
            "-d" => body = words.next(),
            _ => url = Some(word),
        }
    }
    let method = method.unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    (method, url.expect("a URL"), headers, body)
}

/// A receiver that answers 200 to everything.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_s_quick_start_answers_as_the_readme_shows() {
    let settings = Settings::isolated_from_env().expect("settings");
    let service = start(settings).await.expect("the local service starts");
    let base = format!("http://{}", service.addr);
    let receiver = receiver().await;
    let http = reqwest::Client::new();
    // The README's ids, as this run's.
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for step in steps() {
        let (method, url, headers, body) = request(&step.command);
        let mut url = url.replace(README_BASE, &base);
        for (shown, real) in &ids {
            url = url.replace(shown.as_str(), real);
        }
        let body = body.map(|body| {
            let mut body: Value = serde_json::from_str(&body).expect("a JSON body");
            // An absolute time in the future (the README's own has passed): a few seconds on.
            if let Some(Value::String(time)) = body.get("timestamp") {
                if !time.starts_with("2020") {
                    let soon = Utc::now() + chrono::Duration::seconds(3);
                    body["timestamp"] = soon.to_rfc3339_opts(SecondsFormat::Millis, true).into();
                }
            }
            body.to_string().replace(README_RECEIVER, &receiver)
        });
        let shown_status = step.shown["status"].as_str().map(str::to_string);
        // A task the README shows COMPLETED a few seconds later: wait for its time to pass.
        let deadline = Instant::now() + Duration::from_secs(20);
        let answer = loop {
            let mut sent = http.request(method.parse().unwrap(), &url);
            for (name, value) in &headers {
                sent = sent.header(name, value);
            }
            if let Some(body) = &body {
                sent = sent.body(body.clone());
            }
            let answer: Value = sent.send().await.unwrap().json().await.unwrap();
            let waiting = method == "GET"
                && shown_status.as_deref() == Some("COMPLETED")
                && answer["status"] != "COMPLETED";
            if !waiting || Instant::now() > deadline {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        if let (Some(shown), Some(real)) = (step.shown["id"].as_str(), answer["id"].as_str()) {
            ids.insert(shown.to_string(), real.to_string());
        }
        assert_eq!(
            shape(&answer, ""),
            shape(&step.shown, ""),
            "the README's `{}` answers\n{answer}\nwhere it shows\n{}",
            step.command,
            step.shown
        );
    }
}
