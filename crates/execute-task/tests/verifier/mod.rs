//! Checks a request's signature with an independent implementation: the Standard Webhooks
//! Python package pinned in infra/requirements.txt, from the repository's .venv.

use axum::http::HeaderMap;
use std::io::Write;
use std::process::{Command, Stdio};

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
request = json.load(sys.stdin)
try:
    Webhook(request["secret"]).verify(request["body"], request["headers"], json_parse=False)
    print("ok")
except Exception as error:
    print(f"{type(error).__name__}: {error}")
"#;

/// `Ok` if `secret` verifies the request, else the verifier's reason.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    assert!(
        std::path::Path::new(python).exists(),
        "{python} is missing: run `make venv` (the signature tests verify with the \
         standardwebhooks package from infra/requirements.txt)"
    );
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().into()))
        .collect();
    let request = serde_json::json!({
        "secret": secret,
        "headers": headers,
        "body": std::str::from_utf8(body).expect("webhook bodies are UTF-8"),
    });
    let mut child = Command::new(python)
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {python}: {error}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the verifier failed (is standardwebhooks installed? run `make venv`): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    match String::from_utf8_lossy(&output.stdout).trim() {
        "ok" => Ok(()),
        reason => Err(reason.to_string()),
    }
}
