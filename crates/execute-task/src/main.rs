use execute_task::signing::Keyring;
use execute_task::webhook::HttpSender;
use execute_task::{ExecuteTask, Invocation};
use std::sync::Arc;
use std::time::Duration;
use tasks_core::config::{
    env_bool, env_optional, env_required, env_u64, SIGNING_SECRET_ARN, SIGNING_SECRET_PREFIX,
    WEBHOOK_ALLOW_PRIVATE, WEBHOOK_KEEP_ANSWERS, WEBHOOK_TIMEOUT_MS,
};
use tasks_core::request::signing::SigningSecretNames;
use tasks_core::{Pacing, SystemClock};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    tasks_lambda::init_logging();
    let config = tasks_aws::load_config().await;
    let secret_arn = env_required(SIGNING_SECRET_ARN)?;
    let named_prefix = env_optional(SIGNING_SECRET_PREFIX).unwrap_or_default();
    let keyring = Keyring::from_secrets_manager(
        &config,
        &secret_arn,
        &named_prefix,
        &SigningSecretNames::from_env()?,
    )
    .await?;
    let sender = HttpSender::new(
        Duration::from_millis(env_u64(WEBHOOK_TIMEOUT_MS, 10_000)?),
        env_bool(WEBHOOK_ALLOW_PRIVATE, false)?,
        keyring,
    )?;
    let sender = if env_bool(WEBHOOK_KEEP_ANSWERS, true)? {
        sender
    } else {
        sender.without_answers()
    };
    let handler = ExecuteTask {
        store: Arc::new(tasks_aws::store_from_env(&config)?),
        sender: Arc::new(sender),
        queue: Arc::new(tasks_aws::queue_from_env(&config)?),
        clock: Arc::new(SystemClock),
        pacing: Pacing::from_env()?,
        metrics: Arc::new(tasks_core::metrics::Stdout),
    };
    tasks_lambda::run(|invocation: Invocation| handler.handle(invocation)).await
}
