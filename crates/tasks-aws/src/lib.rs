//! The `tasks-core` ports on AWS: tasks in DynamoDB, dispatch through SQS, one Step Functions
//! execution per task. The same code runs against a local emulator: aws-config reads
//! `AWS_ENDPOINT_URL`, so nothing here branches on where it runs.

pub mod bootstrap;
pub mod dynamodb;
#[cfg(feature = "testing")]
pub mod fault_proxy;
pub mod reshard;
pub mod sqs;
pub mod stepfunctions;
#[cfg(feature = "testing")]
pub mod testing;

pub use bootstrap::local_resources;
pub use dynamodb::{DynamoDbStore, SHARD_ATTRIBUTE, STATUS_INDEX};
pub use sqs::{ReceivedMessage, SqsQueue};
pub use stepfunctions::StepFunctionsWorkflow;

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use std::error::Error as _;
use std::time::Duration;
use tasks_core::config::{
    env_required, env_u64, ConfigError, QUEUE_URL, RETENTION_DAYS, STATE_MACHINE_ARN, TABLE_NAME,
};
use tasks_core::rules::timing::STORE_CALL_TIMEOUT;

/// The SDK configuration from the environment (region, credentials, endpoints). Clients made
/// from it retry throttling and transient errors (standard mode, 3 attempts), and give up on a
/// call, retries included, after `STORE_CALL_TIMEOUT`: execute-task's worst case must fit its
/// Lambda timeout (`tasks_core::timing`). Those timeouts already bound a stalled call, so the
/// SDK's stalled-stream protection, which wraps every request and response body in a throughput
/// monitor (4 % of the api's instructions per POST, 7 % of the cron's per task), is off.
pub async fn load_config() -> SdkConfig {
    let call_timeout = STORE_CALL_TIMEOUT.to_std().unwrap_or_default();
    aws_config::defaults(BehaviorVersion::latest())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(call_timeout)
                .operation_attempt_timeout(call_timeout / 2)
                .build(),
        )
        .load()
        .await
}

/// The SDK configuration for a local emulator at `endpoint`: the dummy credentials and region
/// it accepts, set explicitly rather than through the process environment.
pub async fn emulator_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::from_static("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "emulator"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// The store on the table named by `TABLE_NAME`, as the Lambdas are configured.
pub fn store_from_env(config: &SdkConfig) -> Result<DynamoDbStore, ConfigError> {
    let client = aws_sdk_dynamodb::Client::new(config);
    let retention_days = env_u64(RETENTION_DAYS, 0)?;
    let retention = (retention_days > 0).then(|| Duration::from_secs(retention_days * 86_400));
    Ok(DynamoDbStore::new(client, env_required(TABLE_NAME)?).with_retention(retention))
}

/// The queue at `QUEUE_URL`.
pub fn queue_from_env(config: &SdkConfig) -> Result<SqsQueue, ConfigError> {
    let client = aws_sdk_sqs::Client::new(config);
    Ok(SqsQueue::new(client, env_required(QUEUE_URL)?))
}

/// The state machine at `STATE_MACHINE_ARN`.
pub fn workflow_from_env(config: &SdkConfig) -> Result<StepFunctionsWorkflow, ConfigError> {
    let client = aws_sdk_sfn::Client::new(config);
    Ok(StepFunctionsWorkflow::new(
        client,
        env_required(STATE_MACHINE_ARN)?,
    ))
}

/// A service error as `Code: message`; any other failure (connection, timeout) with its causes.
/// (`DisplayErrorContext` would add the whole raw response.)
fn error_message<E>(error: &SdkError<E>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    if let Some(code) = error.code() {
        return format!("{code}: {}", error.message().unwrap_or("no message"));
    }
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
