//! The adapters against moto over the wire. One moto serves the whole binary; every test makes
//! its own uniquely named resources, so tests run in parallel.

mod bootstrap;
mod dynamodb;
mod sqs;
mod stepfunctions;

use aws_config::SdkConfig;
use std::future::Future;
use std::time::{Duration, Instant};

/// Fails (never skips) when moto is not installed.
async fn emulator() -> SdkConfig {
    let endpoint = local_emulator::shared_endpoint()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tasks_aws::emulator_config(endpoint).await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Polls `probe` until it yields a value, failing the test after `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
