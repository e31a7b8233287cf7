//! Write-only secrets, black-box against the whole service in local mode (this process's
//! `tasks-local` with its own emulator) and two receivers of their own origin on this machine.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::Router;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tasks_local::{start, Settings};

#[path = "../../execute-task/tests/verifier/mod.rs"]
mod verifier;

const SECRET: &str = "Bearer local-s3cret-7a1c";

/// A receiver on a free loopback port (an origin of its own) that keeps each request's headers
/// and answers with them all, as an echo service does.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/{*path}", any(echo))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, base)
    }

    fn requests(&self) -> Vec<HeaderMap> {
        self.signed()
            .into_iter()
            .map(|(headers, _)| headers)
            .collect()
    }

    /// Each request's headers and body: what its signature covers.
    fn signed(&self) -> Vec<(HeaderMap, Bytes)> {
        self.0.lock().unwrap().clone()
    }
}

async fn echo(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let text = headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap_or("")))
        .collect();
    receiver.0.lock().unwrap().push((headers, body));
    (StatusCode::OK, text)
}

async fn call(http: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> Value {
    let mut request = http.request(method.parse().unwrap(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{method} {url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

async fn completed(http: &reqwest::Client, base: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let task = call(http, "GET", &format!("{base}/tasks/{id}"), None).await;
        if task["status"] == "COMPLETED" {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "the task did not complete: {task}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every API route that shows something of the task, as one text.
async fn everything_shown(http: &reqwest::Client, base: &str, id: &str) -> String {
    let mut shown = String::new();
    for route in [
        format!("{base}/tasks/{id}"),
        format!("{base}/tasks/{id}/attempts"),
        format!("{base}/tasks?status=COMPLETED"),
    ] {
        shown.push_str(&call(http, "GET", &route, None).await.to_string());
    }
    shown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_never_follows_its_task_to_another_receiver_nor_comes_back_out() {
    let settings = Settings::isolated_from_env().expect("settings");
    let service = start(settings).await.expect("the local service starts");
    let base = format!("http://{}", service.addr);
    let http = reqwest::Client::new();
    let (first, first_url) = Receiver::start().await;
    let (second, second_url) = Receiver::start().await;

    // Created for the first receiver, then moved to the second (another port: another origin)
    // and run: the second never sees the value, and the answer says what was left behind.
    let created = call(
        &http,
        "POST",
        &format!("{base}/tasks"),
        Some(
            json!({"minutes": 30, "webhook": {"url": format!("{first_url}/hook"),
                    "headers": {"Authorization": SECRET}}}),
        ),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let moved = call(
        &http,
        "PATCH",
        &format!("{base}/tasks/{id}"),
        Some(json!({"webhook": {"url": format!("{second_url}/hook")}})),
    )
    .await;
    assert_eq!(
        moved["droppedHeaders"],
        json!(["webhook.headers.Authorization"])
    );
    call(&http, "POST", &format!("{base}/tasks/{id}/run"), None).await;
    completed(&http, &base, &id).await;
    assert!(first.requests().is_empty());
    let received = second.requests();
    assert_eq!(received.len(), 1);
    assert!(received[0].get("authorization").is_none(), "{received:?}");

    // A task that keeps its secret, sent to the echoing receiver: the value reached it, and no
    // API route hands it back out (its answer is kept redacted).
    let kept = call(
        &http,
        "POST",
        &format!("{base}/tasks"),
        Some(
            json!({"seconds": 1, "webhook": {"url": format!("{second_url}/echo"),
                    "headers": {"Authorization": SECRET}}}),
        ),
    )
    .await;
    let kept_id = kept["id"].as_str().unwrap();
    completed(&http, &base, kept_id).await;
    assert!(second
        .requests()
        .iter()
        .any(|headers| headers.get("authorization").is_some_and(|v| v == SECRET)));
    let shown = everything_shown(&http, &base, kept_id).await;
    assert!(shown.contains("<redacted>"), "{shown}");
    for leaked in [SECRET, "local-s3cret"] {
        assert!(!shown.contains(leaked), "{leaked} shown: {shown}");
    }
}

/// A receiver given a signing secret of its own (`WEBHOOK_NAMED_SIGNING_SECRETS`) gets requests
/// only its secret verifies, by the specification's own verifier; the other receiver's requests,
/// signed with the deployment's secret, do not verify with it. The API shows the name, never a
/// value, and refuses a name the deployment does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_s_own_signing_secret_verifies_its_requests_and_no_other_s() {
    let billing = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let settings = Settings {
        named_signing_keys: execute_task::signing::Keyring::parse_named(&format!(
            "billing={billing}"
        ))
        .unwrap(),
        ..Settings::isolated_from_env().expect("settings")
    };
    let deployment = settings.signing_keys.secrets()[0].clone();
    let service = start(settings).await.expect("the local service starts");
    let base = format!("http://{}", service.addr);
    let http = reqwest::Client::new();
    let (other, other_url) = Receiver::start().await;
    let (own, own_url) = Receiver::start().await;

    let refused = http
        .post(format!("{base}/tasks"))
        .json(
            &json!({"seconds": 1, "webhook": {"url": format!("{own_url}/hook"),
                      "signing": {"secret": "crm"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unknown_signing_secret", "{error}");

    let signed = call(
        &http,
        "POST",
        &format!("{base}/tasks"),
        Some(
            json!({"seconds": 1, "webhook": {"url": format!("{own_url}/hook"),
                    "signing": {"secret": "billing"}}}),
        ),
    )
    .await;
    assert_eq!(signed["webhook"]["signing"], json!({"secret": "billing"}));
    let unsigned = call(
        &http,
        "POST",
        &format!("{base}/tasks"),
        Some(json!({"seconds": 1, "webhook": {"url": format!("{other_url}/hook")}})),
    )
    .await;
    for task in [&signed, &unsigned] {
        let id = task["id"].as_str().unwrap();
        completed(&http, &base, id).await;
        let shown = everything_shown(&http, &base, id).await;
        assert!(!shown.contains(&billing[6..]), "{shown}");
    }
    let (own_request, own_body) = own.signed().remove(0);
    let (other_request, other_body) = other.signed().remove(0);
    assert_eq!(verifier::verify(billing, &own_request, &own_body), Ok(()));
    assert!(verifier::verify(&deployment, &own_request, &own_body).is_err());
    assert_eq!(
        verifier::verify(&deployment, &other_request, &other_body),
        Ok(())
    );
    assert!(verifier::verify(billing, &other_request, &other_body).is_err());
}
