//! execute-task against a local webhook receiver, with the task store on the emulator.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use execute_task::signing::{Keyring, SigningKeys};
use execute_task::webhook::HttpSender;
use execute_task::ExecuteTask;
use lambda_runtime::Diagnostic;
use serde_json::json;
use std::sync::{Arc, Mutex};
use tasks_aws::testing::{unique, Resources};
use tasks_core::contracts::AttemptOutcome;
use tasks_core::model::time::rfc3339_millis;
use tasks_core::{ExecutionInput, Pacing, SystemClock, Task, TaskStatus, TaskStore, Webhook};

mod verifier;
use verifier::verify;

#[derive(Clone, Debug)]
struct Arrival {
    at: DateTime<Utc>,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Arrival>>>);

impl Receiver {
    /// Serves `/ok` (204), `/reject` (404), `/fail` (503) and `/slow` (answers after 5 s) on a
    /// free loopback port.
    async fn start() -> (Self, String) {
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/{*path}", any(answer))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, base)
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.0.lock().unwrap().clone()
    }
}

async fn answer(
    State(receiver): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let at = Utc::now();
    let path = uri.path().to_string();
    receiver.0.lock().unwrap().push(Arrival {
        at,
        path: path.clone(),
        headers: headers.clone(),
        body,
    });
    let status = match path.as_str() {
        "/echo" => return (StatusCode::OK, echo(&headers)),
        "/reject" => StatusCode::NOT_FOUND,
        "/fail" => StatusCode::SERVICE_UNAVAILABLE,
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            StatusCode::OK
        }
        _ => StatusCode::NO_CONTENT,
    };
    (status, String::new())
}

/// A receiver that echoes its request's headers, its `Authorization` first and straddling the
/// 256 bytes of an answer that are kept.
fn echo(headers: &HeaderMap) -> String {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let mut text = format!("{}{}\n", "x".repeat(250), value("authorization"));
    for (name, value) in headers {
        text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("")));
    }
    text
}

struct Fixture {
    resources: Resources,
    handler: ExecuteTask,
}

/// A fixed secret, so that a failing test can be reproduced by hand.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn fixture(allow_private: bool) -> Fixture {
    fixture_signing(allow_private, SigningKeys::parse(SECRET).unwrap()).await
}

async fn fixture_signing(allow_private: bool, keys: impl Into<Keyring>) -> Fixture {
    let resources = Resources::create().await;
    let handler = ExecuteTask {
        store: Arc::new(resources.store()),
        sender: Arc::new(
            HttpSender::new(std::time::Duration::from_millis(800), allow_private, keys).unwrap(),
        ),
        queue: Arc::new(resources.queue()),
        clock: Arc::new(SystemClock),
        pacing: Pacing::default(),
        metrics: Arc::new(tasks_core::metrics::Stdout),
    };
    Fixture { resources, handler }
}

impl Fixture {
    /// Stores an IN_PROGRESS task due in `in_ms` with a webhook to `url`; returns its input as
    /// the workflow would pass it at `wakeAt`.
    async fn task(&self, url: &str, in_ms: i64, status: TaskStatus) -> ExecutionInput {
        let webhook = Webhook {
            url: url.to_string(),
            method: "POST".into(),
            headers: [("X-Custom".to_string(), "yes".to_string())].into(),
            body: None,
            signing: None,
            keep_response_body: true,
        };
        self.task_with(webhook, in_ms, status).await
    }

    async fn task_with(&self, webhook: Webhook, in_ms: i64, status: TaskStatus) -> ExecutionInput {
        // A millisecond, as every task's time is (the API truncates it, and the table stores
        // milliseconds): a finer time here would be later than the stored one the service waits
        // for, and a request on time would look early against it.
        let timestamp = rfc3339_millis::truncate(Utc::now() + Duration::milliseconds(in_ms));
        let task = Task {
            task_status: status,
            webhook: Some(webhook),
            payload: Some(serde_json::json!({"order": 7})),
            ..Task::new(
                unique("task"),
                timestamp,
                Pacing::default().lead_time,
                Utc::now(),
            )
        };
        self.resources.store().create(&task).await.unwrap();
        ExecutionInput {
            id: task.id,
            timestamp,
            wake_at: timestamp - Duration::milliseconds(1000),
            series: task.series,
        }
    }

    /// The name of the failure: the error the handler raised, or the one its report gives.
    async fn error_type(&self, input: ExecutionInput) -> String {
        self.error(input).await.error_type
    }

    async fn error(&self, input: ExecutionInput) -> Diagnostic {
        match self.handler.attempt(input.into()).await {
            Err(error) => Diagnostic::from(error),
            Ok(report) => {
                let text = report
                    .record
                    .and_then(|record| record.error)
                    .or(report.error)
                    .unwrap_or_else(|| panic!("{:?}: not a failure", report.outcome));
                let (name, message) = text.split_once(": ").expect("`Name: message`");
                Diagnostic {
                    error_type: name.to_string(),
                    error_message: message.to_string(),
                }
            }
        }
    }
}

#[tokio::test]
async fn a_2xx_answer_is_delivered_once_with_the_idempotency_headers() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/ok"), 0, TaskStatus::InProgress)
        .await;
    let report = fixture.handler.attempt(input.clone().into()).await.unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Delivered);
    assert_eq!(report.status_code, Some(204));
    let arrivals = receiver.arrivals();
    assert_eq!(arrivals.len(), 1);
    let headers = &arrivals[0].headers;
    assert_eq!(headers["idempotency-key"], input.execution_name().as_str());
    assert_eq!(headers["x-task-attempt"], "1");
    assert_eq!(headers["x-custom"], "yes");
    let stored = fixture
        .resources
        .store()
        .get(&input.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.attempts, 1);
}

#[tokio::test]
async fn invoked_at_wake_at_it_sends_just_after_the_second_never_before() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/ok"), 1000, TaskStatus::InProgress)
        .await;
    let report = fixture.handler.attempt(input.clone().into()).await.unwrap();
    let arrival = receiver.arrivals()[0].at;
    let lateness = arrival - input.timestamp;
    assert!(lateness >= Duration::zero(), "arrived {lateness} early");
    assert!(
        lateness < Duration::milliseconds(250),
        "arrived {lateness} late"
    );
    assert!(report.lateness_ms.unwrap() >= 0);
}

#[tokio::test]
async fn woken_minutes_early_it_sends_nothing_and_asks_for_a_retry() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/ok"), 120_000, TaskStatus::InProgress)
        .await;
    assert_eq!(fixture.error_type(input).await, "TaskNotDue");
    assert!(receiver.arrivals().is_empty());
}

#[tokio::test]
async fn a_4xx_is_a_permanent_failure() {
    let (_receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/reject"), 0, TaskStatus::InProgress)
        .await;
    assert_eq!(fixture.error_type(input).await, "WebhookRejected");
}

#[tokio::test]
async fn a_5xx_is_a_retryable_failure_and_each_attempt_is_numbered() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/fail"), 0, TaskStatus::InProgress)
        .await;
    let first = fixture.handler.attempt(input.clone().into()).await.unwrap();
    assert!(first
        .error
        .as_deref()
        .unwrap()
        .starts_with("WebhookServerError"));
    // The state machine's next attempt carries the report of the one before.
    let retry = tasks_core::contracts::AttemptInput {
        previous: Some(first),
        ..input.clone().into()
    };
    let second = fixture.handler.attempt(retry).await.unwrap();
    assert_eq!(second.attempt, 2);
    // The same first attempt run again while the first may be in flight does not send.
    assert_eq!(fixture.error_type(input).await, "TaskNotDue");
    let attempts: Vec<String> = receiver
        .arrivals()
        .iter()
        .map(|a| a.headers["x-task-attempt"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(attempts, vec!["1", "2"]);
}

#[tokio::test]
async fn a_slow_receiver_times_out_as_a_retryable_failure() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/slow"), 0, TaskStatus::InProgress)
        .await;
    assert_eq!(fixture.error_type(input).await, "WebhookTimeout");
    assert_eq!(receiver.arrivals()[0].path, "/slow");
}

#[tokio::test]
async fn a_closed_port_is_a_retryable_connection_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let fixture = fixture(true).await;
    let input = fixture
        .task(
            &format!("http://127.0.0.1:{port}/x"),
            0,
            TaskStatus::InProgress,
        )
        .await;
    assert_eq!(fixture.error_type(input).await, "WebhookConnectionError");
}

#[tokio::test]
async fn a_cancelled_task_is_skipped_without_a_request() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/ok"), 0, TaskStatus::Cancelled)
        .await;
    let report = fixture.handler.attempt(input.into()).await.unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Skipped);
    assert!(receiver.arrivals().is_empty());
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let (receiver, base) = Receiver::start().await;
    let port = base.rsplit(':').next().unwrap();
    let fixture = fixture(false).await;
    for url in [
        format!("{base}/ok"),
        "http://10.1.2.3/hook".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://[::1]:{port}/ok"),
        format!("http://localhost:{port}/ok"),
    ] {
        let input = fixture.task(&url, 0, TaskStatus::InProgress).await;
        assert_eq!(
            fixture.error_type(input.clone()).await,
            "WebhookRefused",
            "{url}"
        );
        let stored = fixture
            .resources
            .store()
            .get(&input.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.attempts, 0, "{url}: no attempt may begin");
    }
    assert!(receiver.arrivals().is_empty());
}

#[tokio::test]
async fn every_request_is_signed_and_verifies_with_the_reference_implementation() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let input = fixture
        .task(&format!("{base}/ok"), 0, TaskStatus::InProgress)
        .await;
    let before = Utc::now().timestamp();
    fixture.handler.attempt(input.clone().into()).await.unwrap();
    let arrival = &receiver.arrivals()[0];
    let headers = &arrival.headers;
    assert_eq!(headers["webhook-id"], input.execution_name().as_str());
    let timestamp: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((before..=Utc::now().timestamp()).contains(&timestamp));
    assert!(headers["webhook-signature"]
        .to_str()
        .unwrap()
        .starts_with("v1,"));
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(verify(SECRET, headers, &arrival.body), Ok(()));
    let mut tampered = arrival.body.to_vec();
    tampered.extend_from_slice(b" ");
    let refused = verify(SECRET, headers, &tampered).unwrap_err();
    assert!(refused.contains("No matching signature"), "{refused}");
    let other = SigningKeys::generate().unwrap().secrets()[0].clone();
    assert!(verify(&other, headers, &arrival.body).is_err());
}

#[tokio::test]
async fn with_two_secrets_a_receiver_holding_either_one_verifies() {
    let (receiver, base) = Receiver::start().await;
    let new = SigningKeys::generate().unwrap().secrets()[0].clone();
    let keys = SigningKeys::parse(&format!("{new},{SECRET}")).unwrap();
    let fixture = fixture_signing(true, keys).await;
    let input = fixture
        .task(&format!("{base}/ok"), 0, TaskStatus::InProgress)
        .await;
    fixture.handler.attempt(input.into()).await.unwrap();
    let arrival = &receiver.arrivals()[0];
    let signature = arrival.headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    assert_eq!(verify(&new, &arrival.headers, &arrival.body), Ok(()));
    assert_eq!(verify(SECRET, &arrival.headers, &arrival.body), Ok(()));
}

#[tokio::test]
async fn a_stale_timestamp_is_refused_by_the_reference_implementation() {
    let keys = SigningKeys::parse(SECRET).unwrap();
    let body = br#"{"id":"t"}"#;
    let signed_at = |timestamp: i64| {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", "t".parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        let signature = keys.signature("t", timestamp, std::str::from_utf8(body).unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    };
    let now = Utc::now().timestamp();
    assert_eq!(verify(SECRET, &signed_at(now), body), Ok(()));
    let refused = verify(SECRET, &signed_at(now - 600), body).unwrap_err();
    assert!(refused.contains("too old"), "{refused}");
}

#[tokio::test]
async fn string_bodies_and_bodiless_requests_are_signed_as_sent() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    for (method, body) in [("PUT", Some(json!("plain text, as is"))), ("GET", None)] {
        let webhook = Webhook {
            url: format!("{base}/ok"),
            method: method.into(),
            headers: Default::default(),
            body,
            signing: None,
            keep_response_body: true,
        };
        let input = fixture.task_with(webhook, 0, TaskStatus::InProgress).await;
        fixture.handler.attempt(input.into()).await.unwrap();
    }
    let arrivals = receiver.arrivals();
    assert_eq!(&arrivals[0].body[..], b"plain text, as is");
    assert!(arrivals[0].headers.get("content-type").is_none());
    assert!(arrivals[1].body.is_empty());
    for arrival in &arrivals {
        assert_eq!(verify(SECRET, &arrival.headers, &arrival.body), Ok(()));
    }
}

#[tokio::test]
async fn a_stored_task_cannot_override_the_service_s_headers() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let webhook = Webhook {
        url: format!("{base}/ok"),
        method: "POST".into(),
        headers: [
            ("idempotency-key".to_string(), "forged".to_string()),
            ("Webhook-Signature".to_string(), "v1,forged".to_string()),
            ("X-Task-Attempt".to_string(), "99".to_string()),
        ]
        .into(),
        body: None,
        signing: None,
        keep_response_body: true,
    };
    let input = fixture.task_with(webhook, 0, TaskStatus::InProgress).await;
    fixture.handler.attempt(input.clone().into()).await.unwrap();
    let headers = &receiver.arrivals()[0].headers;
    for name in ["idempotency-key", "webhook-signature", "x-task-attempt"] {
        assert_eq!(headers.get_all(name).iter().count(), 1, "{name}");
    }
    assert_eq!(headers["idempotency-key"], input.execution_name().as_str());
    assert_eq!(headers["x-task-attempt"], "1");
}

#[tokio::test]
async fn error_texts_never_carry_the_url_or_its_query() {
    let (_receiver, base) = Receiver::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let fixture = fixture(true).await;
    for (url, error_type) in [
        (
            format!("http://127.0.0.1:{closed}/x?token=SECRET-TOKEN"),
            "WebhookConnectionError",
        ),
        (format!("{base}/slow?token=SECRET-TOKEN"), "WebhookTimeout"),
        (
            "http://no-such-host.invalid/hook?token=SECRET-TOKEN".to_string(),
            "WebhookConnectionError",
        ),
    ] {
        let input = fixture.task(&url, 0, TaskStatus::InProgress).await;
        let error = fixture.error(input).await;
        assert_eq!(
            error.error_type, error_type,
            "{url}: {}",
            error.error_message
        );
        for secret in ["SECRET-TOKEN", "?token", "/x", "/slow", "/hook"] {
            assert!(
                !error.error_message.contains(secret),
                "{url}: the error tells `{secret}`: {}",
                error.error_message
            );
        }
    }
}

#[tokio::test]
async fn a_refusal_does_not_tell_what_a_name_resolves_to() {
    let fixture = fixture(false).await;
    let input = fixture
        .task("http://localhost:9/hook", 0, TaskStatus::InProgress)
        .await;
    let error = fixture.error(input).await;
    assert_eq!(error.error_type, "WebhookRefused");
    for address in ["127.0.0.1", "::1"] {
        assert!(
            !error.error_message.contains(address),
            "{}",
            error.error_message
        );
    }
}

#[tokio::test]
async fn special_purpose_literal_targets_are_refused_before_any_attempt() {
    let fixture = fixture(false).await;
    for url in [
        "http://198.18.0.1/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[2002:7f00:1::1]/hook",
        "http://[::127.0.0.1]/hook",
        "http://[::ffff:a9fe:a9fe]/hook",
    ] {
        let input = fixture.task(url, 0, TaskStatus::InProgress).await;
        assert_eq!(
            fixture.error_type(input.clone()).await,
            "WebhookRefused",
            "{url}"
        );
        let stored = fixture
            .resources
            .store()
            .get(&input.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.attempts, 0, "{url}");
    }
}

#[tokio::test]
async fn the_signing_secret_is_read_from_secrets_manager() {
    let config = tasks_aws::testing::emulator_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let bare = SECRET.strip_prefix("whsec_").unwrap();
    let created = client
        .create_secret()
        .name(unique("signing"))
        .secret_string(bare)
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap();
    let keys = SigningKeys::from_secrets_manager(&config, arn)
        .await
        .unwrap();
    assert_eq!(keys.secrets(), vec![SECRET.to_string()]);
    let missing = SigningKeys::from_secrets_manager(&config, "no-such-secret").await;
    assert!(missing.is_err());
}

/// The deployment's secret and one the operator created for the receiver `billing`.
fn keyring() -> (Keyring, String) {
    let billing = SigningKeys::generate().unwrap();
    let secret = billing.secrets()[0].clone();
    let named = [("billing".to_string(), billing)].into();
    (
        Keyring::new(SigningKeys::parse(SECRET).unwrap(), named),
        secret,
    )
}

fn signed_with(url: String, name: &str) -> Webhook {
    Webhook {
        signing: Some(tasks_core::Signing {
            secret: name.to_string(),
        }),
        ..Webhook::new(url, "POST")
    }
}

/// A task that names a signing secret is signed with it alone: its receiver verifies with its own
/// secret, and a receiver holding the deployment's (or another's) cannot accept it, nor can the
/// named secret's holder accept the deployment's requests.
#[tokio::test]
async fn a_task_s_own_signing_secret_signs_it_and_no_other_secret_verifies_it() {
    let (receiver, base) = Receiver::start().await;
    let (keys, billing) = keyring();
    let fixture = fixture_signing(true, keys).await;
    let named = signed_with(format!("{base}/billing"), "billing");
    let input = fixture.task_with(named, 0, TaskStatus::InProgress).await;
    fixture.handler.attempt(input.into()).await.unwrap();
    let input = fixture
        .task(&format!("{base}/ok"), 0, TaskStatus::InProgress)
        .await;
    fixture.handler.attempt(input.into()).await.unwrap();
    let arrivals = receiver.arrivals();
    let (to_billing, to_other) = (&arrivals[0], &arrivals[1]);
    assert_eq!(to_billing.path, "/billing");
    assert_eq!(
        verify(&billing, &to_billing.headers, &to_billing.body),
        Ok(())
    );
    assert!(verify(SECRET, &to_billing.headers, &to_billing.body).is_err());
    assert_eq!(verify(SECRET, &to_other.headers, &to_other.body), Ok(()));
    assert!(verify(&billing, &to_other.headers, &to_other.body).is_err());
}

/// A name the deployment no longer has is a failed attempt that sends nothing: a request is
/// never signed with another secret in its place.
#[tokio::test]
async fn a_signing_secret_the_deployment_does_not_have_sends_nothing() {
    let (receiver, base) = Receiver::start().await;
    let (keys, _) = keyring();
    let fixture = fixture_signing(true, keys).await;
    let removed = signed_with(format!("{base}/ok"), "crm");
    let input = fixture.task_with(removed, 0, TaskStatus::InProgress).await;
    let error = fixture.error(input).await;
    assert_eq!(error.error_type, "WebhookInvalid");
    assert!(
        error.error_message.contains("`crm`"),
        "{}",
        error.error_message
    );
    assert!(receiver.arrivals().is_empty());
}

/// Each named secret rotates on its own: during a rotation its value holds the new secret and
/// the previous one, and a receiver holding either verifies.
#[tokio::test]
async fn a_named_secret_rotates_on_its_own() {
    let (receiver, base) = Receiver::start().await;
    let old = SigningKeys::generate().unwrap().secrets()[0].clone();
    let new = SigningKeys::generate().unwrap().secrets()[0].clone();
    let named = Keyring::parse_named(&format!("billing={new},{old}")).unwrap();
    let fixture = fixture_signing(
        true,
        Keyring::new(SigningKeys::parse(SECRET).unwrap(), named),
    )
    .await;
    let input = fixture
        .task_with(
            signed_with(format!("{base}/ok"), "billing"),
            0,
            TaskStatus::InProgress,
        )
        .await;
    fixture.handler.attempt(input.into()).await.unwrap();
    let arrival = &receiver.arrivals()[0];
    for secret in [&new, &old] {
        assert_eq!(verify(secret, &arrival.headers, &arrival.body), Ok(()));
    }
    assert!(verify(SECRET, &arrival.headers, &arrival.body).is_err());
}

/// execute-task reads the deployment's secret and each named one (`<prefix><name>`) from
/// Secrets Manager; a named secret that is missing stops the start, naming it.
#[tokio::test]
async fn named_signing_secrets_are_read_from_secrets_manager_under_their_prefix() {
    let config = tasks_aws::testing::emulator_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let prefix = format!("{}/signing/", unique("tasks"));
    let deployment = unique("signing");
    let billing = SigningKeys::generate().unwrap().secrets()[0].clone();
    for (name, value) in [
        (deployment.clone(), SECRET.strip_prefix("whsec_").unwrap()),
        (format!("{prefix}billing"), billing.as_str()),
    ] {
        client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
    let names = tasks_core::request::signing::SigningSecretNames::parse("billing").unwrap();
    let keyring = Keyring::from_secrets_manager(&config, &deployment, &prefix, &names)
        .await
        .unwrap();
    assert_eq!(keyring.names().iter().collect::<Vec<_>>(), vec!["billing"]);
    let expected = Keyring::new(
        SigningKeys::parse(SECRET).unwrap(),
        Keyring::parse_named(&format!("billing={billing}")).unwrap(),
    );
    assert_eq!(keyring, expected);
    let missing = tasks_core::request::signing::SigningSecretNames::parse("billing,crm").unwrap();
    let error = Keyring::from_secrets_manager(&config, &deployment, &prefix, &missing)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("`crm`"), "{error}");
}

/// A task that keeps no answers (`keepResponseBody: false`) keeps the status only, whatever the
/// deployment keeps.
#[tokio::test]
async fn a_task_that_keeps_no_answers_keeps_the_status_only() {
    let (_receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let webhook = Webhook {
        keep_response_body: false,
        ..Webhook::new(format!("{base}/echo"), "POST")
    };
    let input = fixture.task_with(webhook, 0, TaskStatus::InProgress).await;
    let record = fixture
        .handler
        .attempt(input.into())
        .await
        .unwrap()
        .record
        .unwrap();
    assert_eq!(
        (record.status_code, record.response_body),
        (Some(200), None)
    );
}

#[tokio::test]
async fn the_failure_callback_is_signed_as_its_own_message_and_tells_no_secret() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let now = Utc::now();
    let task = Task {
        task_status: TaskStatus::Failed,
        series: 2,
        attempts: 4,
        last_error: Some("WebhookServerError: the receiver answered HTTP 503".into()),
        webhook: Some(Webhook {
            url: format!("{base}/hook?token=WEBHOOK-SECRET"),
            method: "POST".into(),
            headers: [(
                "Authorization".to_string(),
                "Bearer WEBHOOK-SECRET".to_string(),
            )]
            .into(),
            body: None,
            signing: None,
            keep_response_body: true,
        }),
        on_failure: Some(Webhook {
            url: format!("{base}/failed"),
            method: "POST".into(),
            headers: [("X-Callback-Key".to_string(), "CALLBACK-SECRET".to_string())].into(),
            body: None,
            signing: None,
            keep_response_body: true,
        }),
        payload: Some(serde_json::json!({"order": 7})),
        ..Task::new(unique("task"), now, Pacing::default().lead_time, now)
    };
    fixture.resources.store().create(&task).await.unwrap();
    let input = tasks_core::contracts::AttemptInput {
        notify: Some(tasks_core::contracts::Notice::OnFailure),
        ..ExecutionInput {
            id: task.id.clone(),
            timestamp: task.timestamp,
            wake_at: task.timestamp,
            series: 2,
        }
        .into()
    };
    let report = fixture.handler.attempt(input).await.unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Delivered);
    let arrivals = receiver.arrivals();
    assert_eq!(arrivals.len(), 1);
    let arrival = &arrivals[0];
    assert_eq!(arrival.path, "/failed");
    let headers = &arrival.headers;
    let message_id = format!("{}-failed-2", task.id);
    assert_eq!(headers["webhook-id"], message_id.as_str());
    assert_eq!(headers["idempotency-key"], message_id.as_str());
    assert_eq!(headers["x-task-id"], task.id.as_str());
    assert_eq!(headers["x-callback-key"], "CALLBACK-SECRET");
    assert_eq!(verify(SECRET, headers, &arrival.body), Ok(()));
    let body: serde_json::Value = serde_json::from_slice(&arrival.body).unwrap();
    assert_eq!(body["type"], "task.failed");
    assert_eq!(body["attempts"], 4);
    assert_eq!(body["payload"], serde_json::json!({"order": 7}));
    let text = String::from_utf8_lossy(&arrival.body);
    for secret in ["WEBHOOK-SECRET", "CALLBACK-SECRET", "/hook"] {
        assert!(
            !text.contains(secret),
            "the callback tells {secret}: {text}"
        );
    }
}

/// A receiver that echoes its request's headers hands nothing secret back: the kept start of its
/// answer has every stored header value and the signature redacted, redacted before the cut so
/// that not even a prefix of a secret straddling it survives.
#[tokio::test]
async fn an_echoing_receiver_s_answer_is_kept_without_the_request_s_secrets() {
    let (receiver, base) = Receiver::start().await;
    let fixture = fixture(true).await;
    let secret = "tok_9f8e7d6c5b4a3210";
    let webhook = Webhook {
        url: format!("{base}/echo"),
        method: "POST".into(),
        headers: [
            ("Authorization".to_string(), secret.to_string()),
            ("X-Api-Key".to_string(), "k3y-value-77".to_string()),
        ]
        .into(),
        body: None,
        signing: None,
        keep_response_body: true,
    };
    let input = fixture.task_with(webhook, 0, TaskStatus::InProgress).await;
    let report = fixture.handler.attempt(input.into()).await.unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Delivered);
    let kept = report.record.unwrap().response_body.unwrap();
    assert_eq!(kept.len(), 256, "{kept}");
    assert!(kept.ends_with("<redac"), "{kept}");
    for leaked in [&secret[..6], "k3y-value"] {
        assert!(!kept.contains(leaked), "{leaked} in {kept}");
    }
    let signature = receiver.arrivals()[0].headers["webhook-signature"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!kept.contains(&signature[..12]), "{kept}");
}

/// A deployment that keeps no answers (`WEBHOOK_KEEP_ANSWERS=false`) keeps the status only.
#[tokio::test]
async fn a_deployment_that_keeps_no_answers_keeps_the_status_only() {
    let (_receiver, base) = Receiver::start().await;
    let mut fixture = fixture(true).await;
    fixture.handler.sender = Arc::new(
        HttpSender::new(
            std::time::Duration::from_millis(800),
            true,
            SigningKeys::parse(SECRET).unwrap(),
        )
        .unwrap()
        .without_answers(),
    );
    let input = fixture
        .task(&format!("{base}/echo"), 0, TaskStatus::InProgress)
        .await;
    let report = fixture.handler.attempt(input.into()).await.unwrap();
    let record = report.record.unwrap();
    assert_eq!(
        (record.status_code, record.response_body),
        (Some(200), None)
    );
}
