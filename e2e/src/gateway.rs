//! What the service answers before any handler runs, in its own `{"error": {"code", "message"}}`
//! shape: an unknown route and a method a route does not take (on a deployed stack API Gateway
//! passes both to the api, whose router answers 404 and 405) and, when an API key is given, a
//! request without it and one with a wrong key (API Gateway's own answer, through the stack's
//! gateway responses).

use crate::config::Config;
use serde_json::Value;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Returns why a check failed, as `Err`.
pub async fn run(config: &Config) -> Result<(), String> {
    // A client of its own: the shared one sends the configured key on every request.
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let base = &config.api_url;
    let unknown = format!("{base}/no-such-route");
    let mut request = client.get(&unknown);
    if let Some(key) = &config.api_key {
        request = request.header("x-api-key", key);
    }
    expect(request, &unknown, 404, "not_found").await?;
    let tasks = format!("{base}/tasks");
    let mut request = client.put(&tasks);
    if let Some(key) = &config.api_key {
        request = request.header("x-api-key", key);
    }
    expect(request, "PUT /tasks", 405, "method_not_allowed").await?;
    if config.api_key.is_some() {
        let tasks = format!("{base}/tasks?status=SCHEDULED");
        expect(
            client.get(&tasks),
            "GET /tasks without a key",
            403,
            "forbidden",
        )
        .await?;
        let wrong = client.get(&tasks).header("x-api-key", "not-the-key");
        expect(wrong, "GET /tasks with a wrong key", 403, "forbidden").await?;
    }
    Ok(())
}

/// Sends `request` and checks its status and that its body is the service's error shape with
/// `code`.
async fn expect(
    request: reqwest::RequestBuilder,
    what: &str,
    status: u16,
    code: &str,
) -> Result<(), String> {
    let response = request.send().await.map_err(|e| format!("{what}: {e}"))?;
    let got = response.status().as_u16();
    let text = response.text().await.map_err(|e| format!("{what}: {e}"))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|_| format!("{what}: answered {got} with a body that is not JSON: {text:?}"))?;
    let error = &body["error"];
    let shaped = error["code"] == code && error["message"].as_str().is_some_and(|m| !m.is_empty());
    if got != status || !shaped {
        return Err(format!(
            "{what}: expected {status} {{\"error\": {{\"code\": \"{code}\", \"message\"}}}}, got {got} {text}"
        ));
    }
    println!("error shape: {what} -> {got} {}", error["code"]);
    Ok(())
}
