//! The api run as a Lambda process behind API Gateway (REST, v1 proxy events through the stage
//! `Prod`): proxy responses, the stage in `Location`, and the errorType of a malformed event.

use lambda_harness::events;
use lambda_harness::Function;
use serde_json::{json, Value};
use tasks_aws::testing::Resources;

fn header<'a>(response: &'a Value, name: &str) -> Option<&'a str> {
    response["headers"]
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, value)| value.as_str())
        .or_else(|| {
            response["multiValueHeaders"]
                .as_object()?
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .and_then(|(_, values)| values[0].as_str())
        })
}

/// The api on the emulator with the stack's table, queue and state machine, as the template wires it.
async fn api_function(resources: &Resources) -> Function {
    Function::on_emulator("api", env!("CARGO_BIN_EXE_api"))
        .await
        .env("TABLE_NAME", &resources.table_name)
        .env("QUEUE_URL", &resources.queue_url)
        .env(
            "STATE_MACHINE_ARN",
            resources.workflow().state_machine_arn(),
        )
        .env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true")
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().expect("a text body")).expect("a JSON body")
}

#[tokio::test]
async fn answers_api_gateway_proxy_events() {
    let resources = Resources::create().await;
    let function = api_function(&resources).await;
    let process = function.spawn();

    let created = function
        .invoke(&events::api_post_tasks(&json!({"hours": 1})))
        .await
        .response();
    assert_eq!(created["statusCode"], 201, "{created}");
    assert_eq!(created["isBase64Encoded"], false);
    let task = body(&created);
    let id = task["id"].as_str().expect("the new task's id");
    assert_eq!(task["status"], "SCHEDULED");
    // A client following Location from the stage's URL stays on the stage.
    assert_eq!(
        header(&created, "location"),
        Some(format!("/Prod/tasks/{id}").as_str())
    );
    assert_eq!(header(&created, "content-type"), Some("application/json"));

    let handed_off = function
        .invoke(&events::api_post_tasks(&json!({"seconds": 30})))
        .await
        .response();
    assert_eq!(handed_off["statusCode"], 201, "{handed_off}");
    assert_eq!(body(&handed_off)["status"], "QUEUED");

    let fetched = function
        .invoke(&events::api_request("GET", &format!("/tasks/{id}")))
        .await
        .response();
    assert_eq!(fetched["statusCode"], 200, "{fetched}");
    assert_eq!(body(&fetched)["id"], id);

    let invalid = function
        .invoke(&events::api_post_tasks(&json!({"hours": "soon"})))
        .await
        .response();
    assert_eq!(invalid["statusCode"], 400, "{invalid}");
    assert!(body(&invalid)["error"]["code"].is_string(), "{invalid}");

    let malformed = function
        .invoke(&json!({"not": "an API Gateway event"}))
        .await;
    assert_eq!(
        malformed.error_type(),
        Some("InvalidInput"),
        "{malformed:?}"
    );
    process.stop().await;
}

/// The Lambda runtime logs every raw event at TRACE, a request's headers and webhook headers
/// included: the function filters it out whatever `RUST_LOG` says.
#[tokio::test]
async fn at_trace_the_raw_event_and_its_secrets_are_never_logged() {
    let resources = Resources::create().await;
    let secret = format!("Bearer {}", uuid::Uuid::new_v4().simple());
    let function = api_function(&resources).await;
    let event = events::api_post_tasks(&json!({"hours": 1, "webhook": {
        "url": "https://example.com/hook", "headers": {"Authorization": secret}}}));
    lambda_harness::assert_event_never_logged(function, &event, &secret).await;
}
